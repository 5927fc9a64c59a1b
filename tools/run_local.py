#!/usr/bin/env python3
"""Run the Synapse charm locally against a real Synapse on SQLite (needs root).

The charm runs its hooks under ops.testing; the workload harness starts the Pebble layer's
command as a real Synapse on 127.0.0.1:8008 with the files the charm rendered, then an
admin user is registered through the charm's register-user action.

Everything lives in --data-dir (default <repo>/.local-synapse):
  data/             what the container's /data holds (homeserver.yaml, secrets, database)
  juju-state.json   the Juju secrets and peer data, so a re-run keeps the server's identity (0600)
  admin-password    the admin's generated password (0600)
  synapse.log       Synapse's output

Usage: python tools/run_local.py [--server-name localhost] [--admin-user admin] [--once]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
for _path in (REPO_ROOT / "src", REPO_ROOT / "lib", REPO_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from ops import testing  # noqa: E402

from tests.workload import harness  # noqa: E402

IDENTITY_FILE = "juju-state.json"
PASSWORD_FILE = "admin-password"  # noqa: S105 (a file name)
LOG_FILE = "synapse.log"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Run the Synapse charm locally against a real Synapse.")
    parser.add_argument("--server-name", default="localhost", help="the Matrix server name (default: localhost)")
    parser.add_argument("--admin-user", default="admin", help="localpart of the admin user (default: admin)")
    parser.add_argument(
        "--data-dir", type=Path, default=REPO_ROOT / ".local-synapse", help="where data and state are kept"
    )
    parser.add_argument("--once", action="store_true", help="set up, prove a login works, stop and exit")
    return parser.parse_args(argv)


def write_private(path: Path, content: str) -> None:
    """Write `content` to a file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(content)
    os.chmod(path, 0o600)


def load_identity(base: Path) -> harness.Identity | None:
    """The Juju secrets and peer data kept by an earlier run, if any."""
    path = base / IDENTITY_FILE
    if not path.exists():
        return None
    return harness.Identity.from_json(json.loads(path.read_text()))


def register_admin(driver: harness.CharmDriver, base: Path, username: str) -> tuple[str, str | None, bool]:
    """Register the admin through the charm's action: (user ID, password or None, newly created)."""
    password_file = base / PASSWORD_FILE
    try:
        results = driver.run_action("register-user", {"username": username, "admin": True})
    except testing.ActionFailed as exc:
        if "already exists" not in exc.message:
            raise SystemExit(f"register-user failed: {exc.message}") from None
        user_id = f"@{username}:{driver.state.config['server_name']}"
        password = password_file.read_text().strip() if password_file.exists() else None
        return user_id, password, False
    write_private(password_file, results["password"] + "\n")
    return results["user-id"], results["password"], True


def prove_login(user_id: str, password: str) -> bool:
    """Log in with the password, as a Matrix client would."""
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": password}
    status, answer = harness.http_json("POST", "/_matrix/client/v3/login", body)
    return status == 200 and answer.get("user_id") == user_id


def wait_for_interrupt(driver: harness.CharmDriver) -> int:
    """Keep Synapse in the foreground until Ctrl-C (or SIGTERM), or until it exits by itself."""

    def _terminate(_signum: int, _frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt

    # Also SIGINT: a shell starting this in the background makes Python ignore it otherwise.
    signal.signal(signal.SIGINT, _terminate)
    signal.signal(signal.SIGTERM, _terminate)
    print("Synapse runs in the foreground; press Ctrl-C to stop it.", flush=True)
    try:
        while driver.process.is_alive():
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping Synapse")
        return 0
    print(f"Synapse exited by itself; see {driver.process.log_path}", file=sys.stderr)
    return 1


def start(args: argparse.Namespace, base: Path) -> harness.CharmDriver:
    """Drive the charm through its first hooks with the real Synapse behind it."""
    venv = harness.ensure_synapse_venv()
    driver = harness.CharmDriver(
        base / "data",
        {"server_name": args.server_name},
        venv=venv,
        log_path=base / LOG_FILE,
        identity=load_identity(base),
    )
    for event in ("install", "leader_elected", "config_changed", "pebble_ready"):
        driver.run(event)
    write_private(base / IDENTITY_FILE, json.dumps(driver.identity().to_json(), indent=2) + "\n")
    driver.run("update_status")
    return driver


def main(argv: list[str] | None = None) -> int:
    """Run the charm and Synapse locally; see the module docstring."""
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("run_local.py needs root (it uses unshare, mount, setpriv and chown)", file=sys.stderr)
        return 2
    base = args.data_dir.resolve()
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    try:
        driver = start(args, base)
    except harness.WorkloadError as exc:
        print(f"Synapse did not start: {exc}", file=sys.stderr)
        return 1
    try:
        if not driver.process.is_alive():
            print(f"the charm did not start Synapse: {driver.state.unit_status}", file=sys.stderr)
            return 1
        user_id, password, created = register_admin(driver, base, args.admin_user)
        print(f"Synapse {driver.state.workload_version} is up ({driver.state.unit_status.name}).")
        print(f"  homeserver URL: {harness.BASE_URL}")
        print(f"  user ID:        {user_id}")
        if not created:
            print(f"  ({user_id} already exists; its password is kept in {base / PASSWORD_FILE})")
        print(f"  password:       {password or '(unknown: not registered by this tool)'}", flush=True)
        if args.once:
            if password is None or not prove_login(user_id, password):
                print(f"login as {user_id} failed", file=sys.stderr)
                return 1
            print(f"login OK as {user_id}")
            return 0
        return wait_for_interrupt(driver)
    finally:
        driver.stop()


if __name__ == "__main__":
    sys.exit(main())
