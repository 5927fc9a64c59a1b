"""Backups to a real S3 server (moto on 127.0.0.1), with a real Synapse on the charm's files.

In file order: a server gets users, a room, messages and media; create-backup and
list-backups; a wrong passphrase changes nothing; a killed upload is never listed; then the
container and the Juju identity are lost, a new unit restores the backup (same signing key
and secrets, users log in, messages and every media file come back bit-identical); last,
delete-backup.
"""

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops import testing

from constants import BACKUP_ENDPOINT, DATA_DIR, SECRET_LABEL, SIGNING_KEY_PATH, SQLITE_PATH
from tests.workload import harness
from tests.workload.conftest import DriverFactory
from tests.workload.s3 import MotoServer, moto_server  # noqa: F401 (fixture)
from workload.backup import SCRIPT_PATH

SERVER_NAME = "backup.test"
PASSPHRASE = "correct horse battery staple"
BUCKET = "synapse-backups-test"
PASSWORD = "a long enough password"


@dataclasses.dataclass
class Server:
    """What the first server held when it was backed up."""

    driver: harness.CharmDriver
    s3: MotoServer
    relation: testing.Relation
    passphrase: testing.Secret
    users: dict[str, str] = dataclasses.field(default_factory=dict)
    room_id: str = ""
    messages: list[str] = dataclasses.field(default_factory=list)
    media: dict[str, bytes] = dataclasses.field(default_factory=dict)
    backup_id: str = ""
    signing_key: str = ""
    identity: dict[str, str] = dataclasses.field(default_factory=dict)


def with_backup(driver: harness.CharmDriver, relation: testing.Relation, *secrets: testing.Secret) -> None:
    """Add the backup relation and user secrets to the driver's State."""
    driver.state = dataclasses.replace(
        driver.state,
        relations=frozenset({*driver.state.relations, relation}),
        secrets=frozenset({*driver.state.secrets, *secrets}),
    )


def server_identity(driver: harness.CharmDriver) -> dict[str, str]:
    """The server's identity in its Juju secret: all of its content but the worker replication
    secret (which authenticates this deployment's processes to each other, and is not backed up).
    """
    for secret in driver.state.secrets:
        if secret.label == SECRET_LABEL:
            content: dict[str, str] = dict(secret.latest_content or secret.tracked_content)
            assert content.pop("worker-replication-secret")
            return content
    raise AssertionError("no server secret")


def upload(token: str, content: bytes, name: str) -> str:
    """Upload media; its mxc:// URI."""
    request = urllib.request.Request(  # noqa: S310 (local http)
        f"{harness.BASE_URL}/_matrix/media/v3/upload?filename={name}",
        data=content,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (local http)
        return str(json.loads(response.read())["content_uri"])


def download(token: str, mxc: str) -> bytes:
    """Download media by its mxc:// URI (authenticated media API)."""
    server, media_id = mxc.removeprefix("mxc://").split("/")
    request = urllib.request.Request(  # noqa: S310 (local http)
        f"{harness.BASE_URL}/_matrix/client/v1/media/download/{server}/{media_id}",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (local http)
        return bytes(response.read())


def read_messages(token: str, room_id: str) -> list[str]:
    """The text messages of a room, oldest first."""
    status, answer = harness.http_json(
        "GET", f"/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=100", token=token
    )
    assert status == 200, answer
    return [event["content"]["body"] for event in reversed(answer["chunk"]) if event.get("type") == "m.room.message"]


def fill(found: Server) -> None:
    """Users, a room with messages, and media (one file over a multipart part) on the server."""
    driver = found.driver
    for name in ("alice", "bob"):
        driver.run_action("register-user", {"username": name, "password": PASSWORD})
        found.users[name] = f"@{name}:{SERVER_NAME}"
    token = harness.token_for(found.users["alice"], PASSWORD)
    status, answer = harness.http_json("POST", "/_matrix/client/v3/createRoom", {"name": "backups"}, token=token)
    assert status == 200, answer
    found.room_id = answer["room_id"]
    for n in range(3):
        text = f"message {n} before the backup"
        status, answer = harness.http_json(
            "PUT",
            f"/_matrix/client/v3/rooms/{found.room_id}/send/m.room.message/t{n}",
            {"msgtype": "m.text", "body": text},
            token=token,
        )
        assert status == 200, answer
        found.messages.append(text)
    for name, size in (("small.bin", 1000), ("large.bin", 9 * 1024 * 1024 + 123)):
        content = os.urandom(size)
        found.media[upload(token, content, name)] = content


def check_restored(found: Server, driver: harness.CharmDriver) -> None:
    """The restored server is the backed-up one: identity, logins, messages, media bit for bit."""
    assert harness.is_healthy()
    assert (driver.data_dir / SIGNING_KEY_PATH.relative_to(DATA_DIR)).read_text() == found.signing_key
    assert server_identity(driver) == found.identity
    assert not (driver.data_dir / ".backup-previous").exists()
    driver.run("update_status")  # the next hook keeps the restored identity
    assert (driver.data_dir / SIGNING_KEY_PATH.relative_to(DATA_DIR)).read_text() == found.signing_key
    for user in found.users.values():
        assert harness.login(user, PASSWORD)[0] == 200
    token = harness.token_for(found.users["alice"], PASSWORD)
    assert read_messages(token, found.room_id)[-3:] == found.messages
    for mxc, content in found.media.items():
        assert hashlib.sha256(download(token, mxc)).digest() == hashlib.sha256(content).digest()


def restore_on_a_new_unit(found: Server, make_driver: DriverFactory) -> harness.CharmDriver:
    """Lose the container and the Juju identity, then restore the backup on a new unit."""
    found.driver.stop()
    harness.wipe(found.driver.data_dir)
    # A new unit: new Juju secrets (a new identity), an empty container, the same bucket.
    driver = make_driver({"server_name": SERVER_NAME, "backup_passphrase": found.passphrase.id})
    with_backup(driver, found.relation, found.passphrase)
    driver.deploy()
    assert server_identity(driver) != found.identity
    results = driver.run_action("restore-backup", {"id": found.backup_id})
    assert results["restored"] == found.backup_id
    return driver


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, synapse_venv: Path, moto_server: MotoServer) -> Iterator[Server]:  # noqa: F811
    """A charm-configured Synapse with users, a room, messages and media, related to the bucket."""
    passphrase = testing.Secret({"passphrase": PASSPHRASE})
    relation = testing.Relation(BACKUP_ENDPOINT, remote_app_data=moto_server.relation_data(BUCKET))
    base = tmp_path_factory.mktemp("backup-server")
    driver = harness.CharmDriver(
        base / "data",
        {"server_name": SERVER_NAME, "backup_passphrase": passphrase.id},
        venv=synapse_venv,
        log_path=base / "synapse.log",
    )
    with_backup(driver, relation, passphrase)
    driver.deploy()
    found = Server(driver, moto_server, relation, passphrase)
    fill(found)
    yield found
    driver.stop()


def test_create_backup_while_synapse_serves(server: Server) -> None:
    starts = server.driver.starts
    results = server.driver.run_action("create-backup")
    server.backup_id = results["id"]
    assert results["server-name"] == SERVER_NAME
    assert results["database"] == "sqlite"
    assert set(results["contents"].split(",")) == {"identity", "media_store", "appservices", "sqlite-database"}
    assert int(results["size"]) > 9 * 1024 * 1024  # the media is in it
    assert server.driver.starts == starts and server.driver.process.is_alive()  # Synapse kept serving
    assert harness.is_healthy()
    signing = server.driver.data_dir / SIGNING_KEY_PATH.relative_to(DATA_DIR)
    server.signing_key = signing.read_text()
    server.identity = server_identity(server.driver)
    assert not list((server.driver.data_dir / "db").glob(".backup-*"))  # the snapshot was removed


def test_list_backups(server: Server) -> None:
    results = server.driver.run_action("list-backups")
    ids = [entry["id"] for entry in json.loads(results["backups"])]
    assert server.backup_id in ids
    assert int(results["count"]) == len(ids)


def test_the_archive_is_encrypted(server: Server) -> None:
    """Nothing of the server's files is readable in the bucket."""
    prefix = f"{server.s3.endpoint}/{BUCKET}/synapse/synapse-backups/{server.backup_id}"
    with urllib.request.urlopen(f"{prefix}/archive", timeout=30) as response:  # noqa: S310 (moto accepts anonymous reads)
        archive = response.read()
    assert archive.startswith(b"SYNAPSE-BACKUP\x01")
    assert server.signing_key.split()[-1].encode() not in archive
    assert b"SQLite format 3" not in archive
    for content in server.media.values():
        assert content[:64] not in archive


def test_wrong_passphrase_changes_nothing(server: Server) -> None:
    driver = server.driver
    wrong = testing.Secret({"passphrase": "not the passphrase at all"})
    driver.state = dataclasses.replace(driver.state, secrets=frozenset({*driver.state.secrets, wrong}))
    driver.set_config(backup_passphrase=wrong.id)
    driver.run("config_changed")
    starts, pid = driver.starts, driver.process.pid
    before = {path: path.stat().st_mtime_ns for path in driver.data_dir.rglob("*") if path.is_file()}
    with pytest.raises(testing.ActionFailed, match="passphrase does not decrypt"):
        driver.run_action("restore-backup", {"id": server.backup_id})
    assert driver.starts == starts and driver.process.pid == pid
    after = {path: path.stat().st_mtime_ns for path in driver.data_dir.rglob("*") if path.is_file()}
    assert set(after) - set(before) <= {driver.data_dir / "db" / "homeserver.db-wal"}
    assert not (driver.data_dir / ".backup-restore").exists()
    assert server_identity(driver) == server.identity
    driver.set_config(backup_passphrase=server.passphrase.id)
    driver.run("config_changed")


def test_a_killed_upload_is_never_listed(server: Server) -> None:
    """The backup script killed mid-upload leaves an unfinished multipart upload, not a backup."""
    driver = server.driver
    request = {
        "command": "create",
        "s3": {
            "access_key": server.s3.access_key,
            "secret_key": server.s3.secret_key,
            "bucket": BUCKET,
            "endpoint": server.s3.endpoint,
            "region": "us-east-1",
            "uri_style": "path",
            "ca_chain": [],
        },
        "prefix": "synapse/",
        "passphrase": PASSPHRASE,
        "server_name": SERVER_NAME,
        "secrets": ["signing.key"],
        "directories": ["media_store"],
        "sqlite": str(SQLITE_PATH),
    }
    spec = harness.ServiceSpec(("python",), {}, 991, 991, "/")
    argv = harness.workload_argv(spec, driver.data_dir, driver.process.venv, ["python", "-c", SCRIPT_PATH.read_text()])
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    assert process.stdin is not None
    process.stdin.write(json.dumps(request).encode())
    process.stdin.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _uploads_in_progress(server.s3):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    assert _uploads_in_progress(server.s3), "the script was not killed during its upload"
    listed = json.loads(driver.run_action("list-backups")["backups"])
    assert [entry["id"] for entry in listed] == [server.backup_id]


def _uploads_in_progress(s3: MotoServer) -> list[str]:
    """Keys of unfinished multipart uploads in the bucket."""
    with urllib.request.urlopen(f"{s3.endpoint}/{BUCKET}?uploads", timeout=10) as response:  # noqa: S310
        body = response.read().decode()
    return [part.split("</Key>")[0] for part in body.split("<Key>")[1:]]


def test_restore_on_a_new_unit_after_losing_everything(server: Server, make_driver: DriverFactory) -> None:
    driver = restore_on_a_new_unit(server, make_driver)
    check_restored(server, driver)
    server.driver = driver


def test_delete_backup(server: Server) -> None:
    server.driver.run_action("delete-backup", {"id": server.backup_id})
    assert int(server.driver.run_action("list-backups")["count"]) == 0
    with pytest.raises(testing.ActionFailed, match="there is no backup"):
        server.driver.run_action("delete-backup", {"id": server.backup_id})
