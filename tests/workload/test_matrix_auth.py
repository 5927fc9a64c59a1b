"""matrix-auth against a real Synapse and a real appservice (PyPI mautrix's AppService) on 127.0.0.1.

The bridge is the library-based bridge charm of the unit tests (tests/unit/lib/bridge.py), in
its own ops.testing context; its registration reaches Synapse only through the relation flow
(encrypted with the key the charm granted, decrypted and rendered by the charm). Then the
appservice's bot registers and sends with its as_token, and a user's message in a room the bot
joined reaches the appservice as a transaction.
"""

import asyncio
import json
import random
import secrets
import socket
import subprocess
import typing
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from mautrix.appservice import AppService
from mautrix.appservice.state_store import FileASStateStore
from mautrix.types import Event
from ops import testing

from constants import APPSERVICES_DIR, MATRIX_AUTH_ENDPOINT, SYNAPSE_UID
from relations.matrix_auth import RegistrationError, parse_registration
from tests.unit.lib.bridge import SEEN, Bridge, databag, relation_of, with_relation
from tests.workload import harness
from tests.workload.conftest import DriverFactory

SERVER_NAME = "test.local"
CONFIG = {"server_name": SERVER_NAME, "public_baseurl": f"{harness.BASE_URL}/"}
RELATION_ID = 20
BOT = "mautrixbot"
PASSWORD = "a long enough password"
TRANSACTION_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((harness.HOST, 0))
        return int(sock.getsockname()[1])


def registration(port: int, as_token: str, hs_token: str) -> str:
    return yaml.safe_dump(
        {
            "id": "mautrix-test",
            "url": f"http://{harness.HOST}:{port}",
            "as_token": as_token,
            "hs_token": hs_token,
            "sender_localpart": BOT,
            "rate_limited": False,
            "namespaces": {"users": [{"exclusive": True, "regex": f"@mautrix_.*:{SERVER_NAME}"}]},
        }
    )


def whoami(token: str) -> tuple[int, dict[str, typing.Any]]:
    return harness.http_json("GET", "/_matrix/client/v3/account/whoami", token=token)


async def exchange(
    make_appservice: Callable[[], AppService], port: int, user_token: str
) -> tuple[dict[str, typing.Any], Event]:
    """Start the appservice (made in this event loop); the bot registers, joins the user's room and
    speaks; the user answers.

    Returns the bot's message as the user reads it, and the user's message as the appservice received it.
    """
    appservice = make_appservice()
    received: asyncio.Queue[Event] = asyncio.Queue()

    async def on_event(event: Event) -> None:
        await received.put(event)

    appservice.matrix_event_handler(on_event)
    await appservice.start(host=harness.HOST, port=port)
    try:
        await appservice.intent.ensure_registered()
        bot = f"@{BOT}:{SERVER_NAME}"
        status, room = await asyncio.to_thread(
            harness.http_json, "POST", "/_matrix/client/v3/createRoom", {"invite": [bot]}, token=user_token
        )
        assert status == 200, room
        room_id = room["room_id"]
        await appservice.intent.join_room(room_id)
        bot_event = await appservice.intent.send_text(room_id, "hello from the bridge")
        status, seen = await asyncio.to_thread(
            harness.http_json,
            "GET",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/event/{quote(bot_event)}",
            token=user_token,
        )
        assert status == 200, seen
        status, sent = await asyncio.to_thread(
            harness.http_json,
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/t1",
            {"msgtype": "m.text", "body": "hi bot"},
            token=user_token,
        )
        assert status == 200, sent
        async with asyncio.timeout(TRANSACTION_TIMEOUT):
            while True:
                event = await received.get()
                if str(event.event_id) == sent["event_id"]:
                    return seen, event
    finally:
        await appservice.stop()


def test_an_appservice_registered_through_the_relation_works(make_driver: DriverFactory, tmp_path: Path) -> None:
    driver = make_driver(CONFIG)
    driver.state = with_relation(
        driver.state, testing.Relation(MATRIX_AUTH_ENDPOINT, id=RELATION_ID, remote_app_name="mautrix")
    )
    driver.deploy()
    port, as_token, hs_token = free_port(), secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    assert whoami(as_token)[0] == 401

    bridge = Bridge(RELATION_ID, registration(port, as_token, hs_token))
    bridge.receive(driver.state)
    provider_data = SEEN[-1]
    assert provider_data.homeserver == harness.BASE_URL
    assert databag(bridge.state, RELATION_ID)["registration_secret"]
    driver.state = bridge.send(driver.state)
    starts = driver.starts
    driver.run(driver.ctx.on.relation_changed(relation_of(driver.state, RELATION_ID)))
    assert driver.starts == starts + 1, "the registration must restart Synapse exactly once"
    installed = driver.data_dir / APPSERVICES_DIR.relative_to("/data") / f"matrix-auth-{RELATION_ID}.yaml"
    assert installed.stat().st_mode & 0o777 == 0o600 and installed.stat().st_uid == SYNAPSE_UID
    status, answer = whoami(as_token)
    assert (status, answer.get("user_id")) == (200, f"@{BOT}:{SERVER_NAME}"), "Synapse did not load it"

    driver.run(driver.ctx.on.relation_changed(relation_of(driver.state, RELATION_ID)))
    assert driver.starts == starts + 1, "an unchanged registration must not restart Synapse"

    user = driver.run_action("register-user", {"username": "alice", "password": PASSWORD})
    user_token = harness.token_for(user["user-id"], PASSWORD)
    seen, event = asyncio.run(
        exchange(
            lambda: AppService(
                server=provider_data.homeserver,
                domain=SERVER_NAME,
                as_token=as_token,
                hs_token=hs_token,
                bot_localpart=BOT,
                id="mautrix-test",
                loop=asyncio.get_running_loop(),
                state_store=FileASStateStore(tmp_path / "mautrix-state.json", binary=False),
            ),
            port,
            user_token,
        )
    )
    assert (seen["sender"], seen["content"]["body"]) == (f"@{BOT}:{SERVER_NAME}", "hello from the bridge")
    assert (str(event.sender), event.content["body"]) == (user["user-id"], "hi bot")

    driver.run(driver.ctx.on.relation_broken(relation_of(driver.state, RELATION_ID)))
    assert driver.starts == starts + 2
    assert not installed.exists()
    assert whoami(as_token)[0] == 401, "a removed bridge's token must stop working"


# --- Synapse's own loader accepts every registration the charm writes -------------------------

VALUES: list[typing.Any] = [
    None,
    True,
    0,
    "",
    "x",
    "a|b",
    "Bad Bot",
    "http://10.0.0.1:8080",
    "https://bridge.example.com/path/",
    "ftp://x",
    "(",
    ".*",
    "@irc_.*:test\\.local",
    "\u2028",
    "10.0.0.0/8",
    [],
    ["irc"],
    [{"exclusive": True, "regex": "@x_.*"}],
    [{"exclusive": "yes", "regex": "@x_.*"}],
    {"users": [{"exclusive": False, "regex": "#.*"}]},
]
FIELDS = [
    "id",
    "url",
    "as_token",
    "hs_token",
    "sender_localpart",
    "namespaces",
    "rate_limited",
    "protocols",
    "receive_ephemeral",
    "de.sorunome.msc2409.push_ephemeral",
    "org.matrix.msc3202",
    "io.element.msc4190",
    "ip_range_whitelist",
]
LOAD_SCRIPT = """
import json, sys, yaml
from synapse.config.appservice import _load_appservice
failures = []
for path in sys.argv[2:]:
    try:
        _load_appservice(sys.argv[1], yaml.safe_load(open(path)), path)
    except Exception as exc:
        failures.append(f"{path}: {type(exc).__name__}: {exc}")
print(json.dumps(failures))
"""


def test_synapse_loads_every_registration_the_parser_accepts(synapse_venv: Path, tmp_path: Path) -> None:
    rng = random.Random(12)  # noqa: S311 (a reproducible sample, not a secret)
    base = yaml.safe_load(registration(29333, "as-token-value", "hs-token-value"))
    accepted: list[Path] = []
    for index in range(1500):
        document = dict(base)
        for name in rng.sample(FIELDS, rng.randint(1, 2)):
            document[name] = rng.choice(VALUES)
        try:
            parsed = parse_registration(yaml.safe_dump(document))
        except RegistrationError:
            continue
        path = tmp_path / f"registration-{index}.yaml"
        path.write_text(parsed.to_yaml())
        accepted.append(path)
    assert len(accepted) >= 60, "the sample must exercise accepted registrations"
    done = subprocess.run(
        [str(synapse_venv / "bin" / "python"), "-c", LOAD_SCRIPT, SERVER_NAME, *map(str, accepted)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.fixture(autouse=True)
def _forget_seen() -> None:
    SEEN.clear()
