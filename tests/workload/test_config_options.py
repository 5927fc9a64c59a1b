"""The server options (src/config_options.py) in Synapse's own config loader and on a running Synapse.

1. A pairwise matrix of option combinations: every pair of values of any two options is in
   at least one rendered homeserver.yaml, and Synapse's `HomeServerConfig.load_config` loads
   each one (one subprocess for all) and reads back what the charm meant.
2. A running Synapse: TURN credentials derived from the shared secret in the operator's Juju
   secret, a URL preview of a loopback address refused without a connection, and a message
   rate limit that takes effect after exactly one restart.
"""

import base64
import dataclasses
import hashlib
import hmac
import http.server
import itertools
import json
import subprocess
import threading
import time
import typing
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops import testing

from config_options import TURN_SECRET_KEY, duration_seconds
from constants import CONFIG_PATH, DATA_DIR, SERVICE_NAME, SYNAPSE_GID, SYNAPSE_UID
from server_secrets import ServerSecrets
from state import CharmConfig, CharmState
from tests.rendered_configs.server_options import FACTORS, ROWS, TURN_SECRET, TURN_SECRET_ID, pairwise
from tests.workload import harness
from workload.service import pebble_layer, render_files

CASES_DIR = DATA_DIR / "cases"


# Run by the venv's python as Synapse: load every case and report what Synapse understood.
LOAD_CASES = """
import json, sys
from synapse.config.homeserver import HomeServerConfig
results = []
for path in sys.argv[1:]:
    try:
        c = HomeServerConfig.load_config("synapse", ["--config-path", path])
    except BaseException as exc:
        results.append({"path": path, "error": f"{type(exc).__name__}: {exc}"})
        continue
    rl = c.ratelimiting
    media = c.media
    results.append({
        "path": path,
        "server_name": c.server.server_name,
        "turn_uris": list(c.voip.turn_uris),
        "turn_secret": c.voip.turn_shared_secret,
        "turn_lifetime_ms": c.voip.turn_user_lifetime,
        "turn_allow_guests": c.voip.turn_allow_guests,
        "rc_message": [rl.rc_message.per_second, rl.rc_message.burst_count],
        "rc_login_failed": [rl.rc_login_failed_attempts.per_second, rl.rc_login_failed_attempts.burst_count],
        "rc_joins_remote": [rl.rc_joins_remote.per_second, rl.rc_joins_remote.burst_count],
        "url_previews": media.url_preview_enabled,
        "blocked": sorted(
            ip for ip in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fe80::1", "fd00::1", "8.8.4.4",
                          "2606:4700::1", "8.8.8.8")
            if media.url_preview_enabled and ip in media.url_preview_ip_range_blocklist
        ),
        "max_spider_size": media.max_spider_size,
        "retention": [c.retention.retention_enabled, c.retention.retention_default_min_lifetime,
                      c.retention.retention_default_max_lifetime],
        "media_retention": [media.media_retention_local_media_lifetime_ms,
                            media.media_retention_remote_media_lifetime_ms],
        "presence": c.server.presence_enabled,
        "limit_remote_rooms": [c.server.limit_remote_rooms.enabled, c.server.limit_remote_rooms.complexity],
        "require_auth_for_profile_requests": c.server.require_auth_for_profile_requests,
        "allow_profile_lookup_over_federation": c.federation.allow_profile_lookup_over_federation,
        "publish": [
            c.roomdirectory.is_publishing_room_allowed(user, "!room:example.com", [])
            for user in ("@alice:chat.example.co.uk", "@bob:other.example.org:8448", "@bob:other.example.org",
                         "@eve:chat.example.co.uk")
        ],
        "admin_contact": c.server.admin_contact,
        "auto_join_rooms": list(c.registration.auto_join_rooms),
        "room_version": c.server.default_room_version.identifier,
    })
print(json.dumps(results))
"""


def expected(config: CharmConfig) -> dict[str, typing.Any]:
    """What Synapse must read from the homeserver.yaml rendered for `config`."""
    publishers = set(config.room_directory_publishers)

    def may_publish(user: str) -> bool:
        server = user.partition(":")[2]
        return "*" in publishers or user in publishers or f"@*:{server}" in publishers

    def ms(text: str) -> int | None:
        return duration_seconds(text) * 1000 if text else None

    blocked = ["10.1.2.3", "127.0.0.1", "169.254.169.254", "::1", "fd00::1", "fe80::1"]
    if config.url_preview_ip_range_blacklist:
        blocked += ["2606:4700::1", "8.8.4.4"]
    return {
        "server_name": config.server_name,
        "turn_uris": list(config.turn_uris),
        "turn_secret": TURN_SECRET if config.turn_uris else None,
        "turn_lifetime_ms": duration_seconds(config.turn_user_lifetime) * 1000 if config.turn_uris else 3600000,
        "turn_allow_guests": config.turn_allow_guests,
        "rc_message": [config.ratelimit_messages.per_second, config.ratelimit_messages.burst_count],
        "rc_login_failed": [
            config.ratelimit_login_failed_attempts.per_second,
            config.ratelimit_login_failed_attempts.burst_count,
        ],
        "rc_joins_remote": [config.ratelimit_joins_remote.per_second, config.ratelimit_joins_remote.burst_count],
        "url_previews": config.enable_url_previews,
        "blocked": sorted(blocked) if config.enable_url_previews else [],
        "max_spider_size": {"10M": 10 * 1024**2, "1K": 1024, "1G": 1024**3}[config.max_spider_size],
        "retention": [
            bool(config.retention_policy),
            ms(config.retention_min_lifetime),
            ms(config.retention_max_lifetime),
        ],
        "media_retention": [ms(config.media_retention_local_lifetime), ms(config.media_retention_remote_lifetime)],
        "presence": config.enable_presence,
        "limit_remote_rooms": [bool(config.limit_remote_rooms_complexity), config.limit_remote_rooms_complexity or 1.0],
        "require_auth_for_profile_requests": config.require_auth_for_profile_requests,
        "allow_profile_lookup_over_federation": config.allow_profile_lookup_over_federation,
        "publish": [
            may_publish(user)
            for user in (
                "@alice:chat.example.co.uk",
                "@bob:other.example.org:8448",
                "@bob:other.example.org",
                "@eve:chat.example.co.uk",
            )
        ],
        "admin_contact": config.admin_contact or None,
        "auto_join_rooms": list(config.auto_join_rooms),
        "room_version": config.default_room_version or "12",
    }


def test_pairwise_matrix_covers_every_pair() -> None:
    rows = pairwise(FACTORS)
    names = list(FACTORS)
    for a, b in itertools.combinations(names, 2):
        seen = {(json.dumps(row[a], sort_keys=True), json.dumps(row[b], sort_keys=True)) for row in rows}
        assert len(seen) == len(FACTORS[a]) * len(FACTORS[b]), (a, b)
    assert len(rows) < 40


def test_synapse_loads_every_combination(tmp_path: Path, synapse_venv: Path) -> None:
    data_dir = tmp_path / "data"
    secrets = ServerSecrets.generate()
    cases, wanted = [], []
    for index, row in enumerate(ROWS):
        config = CharmConfig.from_juju(row, "synapse")
        state = CharmState(config=config, turn_shared_secret=TURN_SECRET if config.turn_uris else None)
        for path, file in render_files(state, secrets).items():
            target = data_dir / path.relative_to(DATA_DIR)
            if path == CONFIG_PATH:
                target = data_dir / CASES_DIR.relative_to(DATA_DIR) / f"{index}.yaml"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(file.content)
            target.chmod(file.permissions)
        cases.append(str(CASES_DIR / f"{index}.yaml"))
        wanted.append({"path": cases[-1], **expected(config)})
    harness.chown_tree(data_dir, SYNAPSE_UID, SYNAPSE_GID)
    service = pebble_layer()["services"][SERVICE_NAME]
    spec = harness.ServiceSpec(
        command=(), environment=service["environment"], user_id=SYNAPSE_UID, group_id=SYNAPSE_GID, working_dir="/"
    )
    argv = harness.workload_argv(spec, data_dir, synapse_venv, ["python", "-c", LOAD_CASES, *cases])

    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)

    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    for got, want in zip(loaded, wanted, strict=True):
        assert got == want, ROWS[cases.index(got["path"])]


# --- on a running Synapse --------------------------------------------------------------------


class PreviewTarget:
    """A loopback web page a URL preview would show; records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                target.requests.append(self.path)
                body = b'<html><head><meta property="og:title" content="internal page"></head></html>'
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: typing.Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The page's URL."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/internal"


@pytest.fixture
def preview_target() -> Iterator[PreviewTarget]:
    """A loopback page, served while the test runs."""
    target = PreviewTarget()
    target.thread.start()
    yield target
    target.server.shutdown()
    target.server.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, synapse_venv: Path) -> Iterator[harness.CharmDriver]:
    """A Synapse with TURN and URL previews, and a registered normal user."""
    base = tmp_path_factory.mktemp("options")
    config: dict[str, str | bool] = {
        "server_name": "chat.example.co.uk",
        "turn_uris": "turn:turn.example.com:3478?transport=udp,turns:turn.example.com:5349",
        "turn_shared_secret": TURN_SECRET_ID,
        "turn_user_lifetime": "10m",
        "enable_url_previews": True,
    }
    driver = harness.CharmDriver(base / "data", config, venv=synapse_venv, log_path=base / "synapse.log")
    secret = testing.Secret(tracked_content={TURN_SECRET_KEY: TURN_SECRET}, id=TURN_SECRET_ID)
    driver.state = dataclasses.replace(driver.state, secrets=frozenset({*driver.state.secrets, secret}))
    try:
        driver.deploy()
        assert driver.state.unit_status == testing.ActiveStatus() or driver.process.is_alive()
        yield driver
    finally:
        driver.stop()


@pytest.fixture(scope="module")
def token(server: harness.CharmDriver) -> str:
    """An access token of a normal (non-admin) user."""
    results = server.run_action("register-user", {"username": "carol", "password": "correct-horse-battery"})
    return harness.token_for(results["user-id"], "correct-horse-battery")


def test_turn_credentials_derive_from_the_shared_secret(server: harness.CharmDriver, token: str) -> None:
    status, answer = harness.http_json("GET", "/_matrix/client/v3/voip/turnServer", token=token)

    assert status == 200, answer
    assert answer["uris"] == ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"]
    assert answer["ttl"] == 600
    expiry, _, user = answer["username"].partition(":")
    assert user == "@carol:chat.example.co.uk"
    assert 0 < int(expiry) - time.time() <= 601
    mac = hmac.new(TURN_SECRET.encode(), answer["username"].encode(), hashlib.sha1).digest()
    assert answer["password"] == base64.b64encode(mac).decode()


def test_url_preview_of_loopback_is_refused(
    server: harness.CharmDriver, token: str, preview_target: PreviewTarget
) -> None:
    query = urllib.parse.urlencode({"url": preview_target.url})

    status, answer = harness.http_json("GET", f"/_matrix/client/v1/media/preview_url?{query}", token=token)

    assert (status, answer.get("error")) == (403, "IP address blocked"), answer
    assert preview_target.requests == []  # Synapse never connected


def send_until_limited(token: str, room: str, attempts: int) -> tuple[int, dict[str, typing.Any]]:
    """Send messages until Synapse rate-limits one; (messages sent before, the 429 answer)."""
    for sent in range(attempts):
        path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/send/m.room.message/t{time.time_ns()}"
        status, answer = harness.http_json("PUT", path, {"msgtype": "m.text", "body": f"{sent}"}, token=token)
        if status == 429:
            return sent, answer
        assert status == 200, answer
    return attempts, {}


def test_message_rate_limit_takes_effect_after_one_restart(server: harness.CharmDriver, token: str) -> None:
    starts = server.starts
    server.set_config(ratelimit_messages="0.001:3")

    server.run("config_changed")

    assert server.last_calls.calls == [("restart", (SERVICE_NAME,))]
    assert server.starts == starts + 1
    status, room = harness.http_json("POST", "/_matrix/client/v3/createRoom", {}, token=token)
    assert status == 200, room
    sent, limited = send_until_limited(token, room["room_id"], 10)
    # A burst of 3 (creating the room may take one); Synapse's default (burst 10) would have sent 9 or 10.
    assert 2 <= sent <= 3, sent
    assert limited["errcode"] == "M_LIMIT_EXCEEDED"
    assert limited["retry_after_ms"] > 0
