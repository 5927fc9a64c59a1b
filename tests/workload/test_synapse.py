"""The charm's rendered config and Pebble layer, run as a real Synapse.

One Synapse (module scope) serves most tests, in file order: lifecycle, HTTP, config,
files, register-user, then the no-op and restart checks, then the container wipe. The
last test runs tools/run_local.py, which needs the port, so it stops whatever still runs.
"""

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from ops import testing

from constants import (
    CONFIG_PATH,
    DATA_DIR,
    FORM_SECRET_PATH,
    MACAROON_SECRET_PATH,
    REGISTRATION_SECRET_PATH,
    SECRET_LABEL,
    SECRETS_DIR,
    SERVICE_NAME,
    SIGNING_KEY_PATH,
    SYNAPSE_GID,
    SYNAPSE_UID,
    SYNAPSE_VERSION,
)
from tests.workload import harness
from tests.workload.conftest import DriverFactory

SERVER_NAME = "test.local"
CONFIG = {
    "server_name": SERVER_NAME,
    "federation_domain_whitelist": "matrix.org,example.com",
    "trusted_key_servers": "example.org",
}
SECRET_FILES = (SIGNING_KEY_PATH, REGISTRATION_SECRET_PATH, MACAROON_SECRET_PATH, FORM_SECRET_PATH)

# Run by the venv's python as Synapse: Synapse's own parser loads the charm's homeserver.yaml.
PARSE_CONFIG = f"""
import json
from synapse.config.homeserver import HomeServerConfig
config = HomeServerConfig.load_config("synapse", ["--config-path", "{CONFIG_PATH}"])
print(json.dumps({{
    "server_name": config.server.server_name,
    "federation_domain_whitelist": sorted(config.federation.federation_domain_whitelist or []),
    "key_servers": [server.server_name for server in config.key.key_servers],
}}))
"""


def host_path(driver: harness.CharmDriver, path: PurePosixPath) -> Path:
    """Where a path of the container's /data lives on the host."""
    return driver.data_dir / path.relative_to(DATA_DIR)


def server_secret_values(driver: harness.CharmDriver) -> list[str]:
    """The secret strings the charm holds in its Juju secret (the signing key's seed, not its name)."""
    secret = next(s for s in driver.state.secrets if s.label == SECRET_LABEL)
    content: dict[str, str] = dict(secret.tracked_content)
    return [value.split()[-1] for value in content.values()]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, synapse_venv: Path) -> Iterator[harness.CharmDriver]:
    """A unit taken through install, leader-elected and pebble-ready, with its real Synapse."""
    base = tmp_path_factory.mktemp("deployed")
    driver = harness.CharmDriver(base / "data", CONFIG, venv=synapse_venv, log_path=base / "synapse.log")
    try:
        for event in ("install", "leader_elected", "pebble_ready"):
            driver.run(event)
        yield driver
    finally:
        driver.stop()


def test_lifecycle_runs_a_healthy_synapse(deployed: harness.CharmDriver) -> None:
    assert deployed.process.is_alive()
    assert harness.is_healthy()
    assert deployed.starts == 1
    assert sum(calls.count("replan") for calls in deployed.history) == 1

    state = deployed.run("update_status")

    assert state.unit_status == testing.ActiveStatus()
    assert state.workload_version == SYNAPSE_VERSION


def test_synapse_runs_exactly_as_the_layer_says(deployed: harness.CharmDriver) -> None:
    service = deployed.container.plan.services[SERVICE_NAME]
    proc = Path("/proc") / str(deployed.process.pid)

    cmdline = (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    environ = dict(item.split("=", 1) for item in (proc / "environ").read_text().split("\0") if item)
    uids = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("Uid:"))
    gids = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("Gid:"))

    assert [arg.decode() for arg in cmdline] == shlex.split(service.command)
    assert service.environment.items() <= environ.items()
    assert uids.split()[1:] == [str(SYNAPSE_UID)] * 4
    assert gids.split()[1:] == [str(SYNAPSE_GID)] * 4
    assert os.readlink(proc / "cwd") == service.working_dir
    # `python` resolved through PATH to the venv: Synapse's Rust extension is mapped from it.
    assert f"{deployed.process.venv}/lib/" in (proc / "maps").read_text()


def test_health_and_client_versions(deployed: harness.CharmDriver) -> None:
    assert harness.http_get("/health") == (200, b"OK")

    status, answer = harness.http_json("GET", "/_matrix/client/versions")

    assert status == 200
    assert "v1.1" in answer["versions"]


def test_metrics_listener_serves_synapse_metrics(deployed: harness.CharmDriver) -> None:
    status, body = harness.http_get("/_synapse/metrics", base_url=harness.METRICS_URL)

    assert status == 200
    assert b"synapse_build_info{" in body
    assert SYNAPSE_VERSION.encode() in body


def test_synapse_loads_the_federation_settings(deployed: harness.CharmDriver) -> None:
    result = deployed.run_in_workload(["python", "-c", PARSE_CONFIG])

    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed == {
        "server_name": SERVER_NAME,
        "federation_domain_whitelist": ["example.com", "matrix.org"],
        "key_servers": ["example.org"],
    }


def test_federation_from_a_server_off_the_whitelist_is_denied(deployed: harness.CharmDriver) -> None:
    # A loopback origin: if the whitelist were not applied Synapse would go on to fetch its
    # keys, and nothing but this machine would be asked.
    origin = "127.0.0.1:9"
    auth = f'X-Matrix origin="{origin}",destination="{SERVER_NAME}",key="ed25519:k",sig="c2ln"'
    path = f"/_matrix/federation/v1/query/profile?user_id=@nobody:{SERVER_NAME}"

    status, answer = harness.http_json("GET", path, headers={"Authorization": auth})

    assert status == 403
    assert answer["errcode"] == "M_FORBIDDEN"
    assert f"Federation denied with {origin}" in answer["error"]


def test_secret_files_are_private_and_config_holds_no_secret(deployed: harness.CharmDriver) -> None:
    for path in SECRET_FILES:
        assert stat.S_IMODE(host_path(deployed, path).stat().st_mode) == 0o600, path
    assert stat.S_IMODE(host_path(deployed, SECRETS_DIR).stat().st_mode) == 0o700
    config = host_path(deployed, CONFIG_PATH).read_text()
    values = server_secret_values(deployed)
    assert len(values) == 5  # signing key, registration, macaroon, form and worker replication secrets
    for value in values:
        assert value not in config
    assert host_path(deployed, SIGNING_KEY_PATH).read_text().split()[-1] in values


def test_register_admin_with_generated_password(deployed: harness.CharmDriver) -> None:
    results = deployed.run_action("register-user", {"username": "alice", "admin": True})

    assert results["user-id"] == f"@alice:{SERVER_NAME}"
    assert len(results["password"]) >= 20
    status, session = harness.login(results["user-id"], results["password"])
    assert status == 200, session
    assert session["user_id"] == results["user-id"]
    status, user = harness.http_json(
        "GET", f"/_synapse/admin/v2/users/{results['user-id']}", token=session["access_token"]
    )
    assert status == 200, user
    assert user["admin"] is True


def test_register_user_with_given_password(deployed: harness.CharmDriver) -> None:
    password = "correct horse battery staple"

    results = deployed.run_action("register-user", {"username": f"@bob:{SERVER_NAME}", "password": password})

    assert results == {"user-id": f"@bob:{SERVER_NAME}"}
    status, session = harness.login(f"@bob:{SERVER_NAME}", password)
    assert status == 200, session
    status, answer = harness.http_json(
        "GET", f"/_synapse/admin/v2/users/@bob:{SERVER_NAME}", token=session["access_token"]
    )
    assert status == 403, answer


def test_register_existing_user_fails(deployed: harness.CharmDriver) -> None:
    deployed.run_action("register-user", {"username": "carol"})

    with pytest.raises(testing.ActionFailed) as failure:
        deployed.run_action("register-user", {"username": "carol", "password": "another one"})

    assert "already exists" in failure.value.message
    assert f"@carol:{SERVER_NAME}" in failure.value.message


def test_register_user_before_synapse_runs_fails_clearly(make_driver: DriverFactory) -> None:
    driver = make_driver({"server_name": SERVER_NAME})

    with pytest.raises(testing.ActionFailed) as failure:
        driver.run_action("register-user", {"username": "dave"})

    assert "not ready" in failure.value.message
    assert driver.starts == 0


def test_no_restart_without_change_then_one_restart_on_change(deployed: harness.CharmDriver) -> None:
    pid, starts, seen = deployed.process.pid, deployed.starts, len(deployed.history)

    for event in ("config_changed", "config_changed", "config_changed", "update_status", "update_status"):
        deployed.run(event)

    calls = deployed.history[seen:]
    assert [call for run in calls for call in run.calls] == []
    assert deployed.process.pid == pid
    assert deployed.starts == starts

    deployed.set_config(log_level="DEBUG")
    deployed.run("config_changed")

    assert deployed.last_calls.calls == [("restart", ("synapse",))]
    assert deployed.starts == starts + 1
    assert deployed.process.pid not in (None, pid)
    assert harness.is_healthy()
    log = deployed.process.log_path.read_text()
    assert " - DEBUG - " in log.rpartition("--- start")[2]
    assert deployed.run("update_status").unit_status == testing.ActiveStatus()


def test_container_wipe_keeps_the_server_identity(deployed: harness.CharmDriver, synapse_venv: Path) -> None:
    status, keys = harness.http_json("GET", "/_matrix/key/v2/server")
    assert status == 200
    verify_keys = keys["verify_keys"]
    assert len(verify_keys) == 1
    identity = deployed.identity()

    deployed.stop()
    harness.wipe(deployed.data_dir)
    assert list(deployed.data_dir.iterdir()) == []
    fresh = harness.CharmDriver(
        deployed.data_dir,
        deployed.state.config,
        venv=synapse_venv,
        identity=identity,
        log_path=deployed.process.log_path,
        context=deployed.ctx,
    )
    try:
        for event in ("install", "leader_elected", "pebble_ready"):
            fresh.run(event)

        assert fresh.starts == 1
        status, keys = harness.http_json("GET", "/_matrix/key/v2/server")
        assert status == 200
        assert keys["verify_keys"] == verify_keys
        assert [s.id for s in fresh.state.secrets] == [s.id for s in identity.secrets]
        # The database really is new: users registered before the wipe are gone.
        status, _ = harness.login(f"@alice:{SERVER_NAME}", "whatever")
        assert status == 403
    finally:
        fresh.stop()


def run_local(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """tools/run_local.py --once, as a user would run it."""
    return subprocess.run(
        [sys.executable, str(harness.REPO_ROOT / "tools" / "run_local.py"), "--once", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=harness.REPO_ROOT,
    )


def test_run_local_once(tmp_path: Path, synapse_venv: Path) -> None:
    harness.stop_all()  # the port is needed
    data_dir = tmp_path / "local"

    first = run_local(data_dir)

    assert first.returncode == 0, first.stdout + first.stderr
    assert "http://127.0.0.1:8008" in first.stdout
    assert "@admin:localhost" in first.stdout
    password = re.search(r"password:\s+(\S+)", first.stdout)
    assert password, first.stdout
    assert "login OK" in first.stdout
    for name in ("juju-state.json", "admin-password"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600
    key = (data_dir / "data" / SIGNING_KEY_PATH.relative_to(DATA_DIR)).read_text()

    second = run_local(data_dir)

    assert second.returncode == 0, second.stdout + second.stderr
    assert "already exists" in second.stdout
    again = re.search(r"password:\s+(\S+)", second.stdout)
    assert again and again.group(1) == password.group(1), second.stdout
    assert "login OK" in second.stdout
    assert (data_dir / "data" / SIGNING_KEY_PATH.relative_to(DATA_DIR)).read_text() == key
    assert not harness.is_healthy()
