"""The charm on a real PostgreSQL with a real Synapse: collation, the switch from SQLite, removal.

The PostgreSQL server is the session's `postgres_server` (default locale not 'C', as a
database postgresql-k8s creates). The charm's `container.exec` calls (the collation
check, the background-updates check and synapse_port_db) run for real in Synapse's
namespace layout. Tests run in file order; the last ones share one unit (module scope)
that moves from SQLite to PostgreSQL, so they must stay at the end of the file: only one
Synapse can listen on its port.
"""

import dataclasses
import itertools
import logging
import sqlite3
import time
import typing
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import ops
import pytest
import yaml
from ops import testing

from constants import (
    CONFIG_PATH,
    DATA_DIR,
    DATABASE_ENDPOINT,
    PEER_DATABASE_KEY,
    PEER_RELATION,
    PORT_CONFIG_PATH,
    SQLITE_PATH,
)
from state import DatabaseRecord
from tests.workload import harness
from tests.workload.conftest import DriverFactory
from tests.workload.postgres import PostgresServer, Role, unique_name

SERVER_NAME = "switch.test"
CONFIG = {"server_name": SERVER_NAME}
PROVIDER = "postgresql-k8s"
# How long the charm may wait for Synapse to finish its SQLite background updates (a fresh
# SQLite database takes Synapse about two minutes), and the pause between update-status hooks.
PENDING_UPDATES_TIMEOUT = 400.0
PENDING_UPDATES_PAUSE = 3.0

logger = logging.getLogger(__name__)


# --- helpers ------------------------------------------------------------------------------


def use_real_exec(driver: harness.CharmDriver) -> list[list[str]]:
    """The commands the charm runs through `container.exec` (the harness runs them for real)."""
    return driver.execs


def ported(commands: list[list[str]]) -> int:
    """How many times synapse_port_db ran."""
    return sum(1 for command in commands if command[0] == "synapse_port_db")


def provider_data(server: PostgresServer, role: Role, database: str) -> dict[str, str]:
    """The v0 answer postgresql-k8s gives (plain credentials) for this server, role and database."""
    return {
        "endpoints": f"{server.host}:{server.port}",
        "username": role.name,
        "password": role.password,
        "database": database,
        "version": str(server.version),
    }


def relate(driver: harness.CharmDriver, data: dict[str, str]) -> testing.Relation:
    """Add a `database` relation (a new relation id) with the provider's databag; run relation-created."""
    relation = testing.Relation(
        DATABASE_ENDPOINT, interface="postgresql_client", remote_app_name=PROVIDER, remote_app_data=data
    )
    driver.state = dataclasses.replace(driver.state, relations=frozenset({*driver.state.relations, relation}))
    driver.run(driver.ctx.on.relation_created(driver.state.get_relation(relation.id)))
    return relation


def provider_answers(driver: harness.CharmDriver, relation_id: int, data: dict[str, str]) -> None:
    """The provider writes its answer: relation-changed."""
    current = typing.cast(testing.Relation, driver.state.get_relation(relation_id))
    relation = dataclasses.replace(current, remote_app_data=data)
    others = {rel for rel in driver.state.relations if rel.id != relation_id}
    driver.state = dataclasses.replace(driver.state, relations=frozenset({*others, relation}))
    driver.run(driver.ctx.on.relation_changed(relation, remote_unit=0))


def unrelate(driver: harness.CharmDriver, relation_id: int) -> None:
    """Remove the relation: relation-broken, then Juju forgets it."""
    driver.run(driver.ctx.on.relation_broken(driver.state.get_relation(relation_id)))
    driver.state = dataclasses.replace(
        driver.state, relations=frozenset(rel for rel in driver.state.relations if rel.id != relation_id)
    )


def host_path(driver: harness.CharmDriver, path: PurePosixPath) -> Path:
    """Where a container path under /data is on the host."""
    return driver.data_dir / path.relative_to(DATA_DIR)


def database_section(driver: harness.CharmDriver) -> dict[str, typing.Any]:
    """homeserver.yaml's `database` section."""
    return typing.cast(dict[str, typing.Any], yaml.safe_load(host_path(driver, CONFIG_PATH).read_text())["database"])


def status(driver: harness.CharmDriver) -> ops.StatusBase:
    """The unit status after the last hook."""
    return typing.cast(ops.StatusBase, driver.state.unit_status)


def record(driver: harness.CharmDriver) -> DatabaseRecord | None:
    """The leader's database record in peer data."""
    peer = next(rel for rel in driver.state.relations if rel.endpoint == PEER_RELATION)
    return DatabaseRecord.from_peer_data(typing.cast(dict[str, str], peer.local_app_data).get(PEER_DATABASE_KEY))


def send_message(token: str, room_id: str, body: str) -> str:
    """Send an m.room.message; return its event ID."""
    txn = f"txn-{time.monotonic_ns()}"
    path = f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}"
    code, answer = harness.http_json("PUT", path, {"msgtype": "m.text", "body": body}, token=token)
    assert code == 200, answer
    return str(answer["event_id"])


def message_bodies(token: str, room_id: str) -> list[str]:
    """The room's text messages, oldest first, read back page by page (newest first, dir=b)."""
    bodies: list[str] = []
    path = f"/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=10"
    for _ in range(20):
        code, page = harness.http_json("GET", path, token=token)
        assert code == 200, page
        bodies += [event["content"]["body"] for event in page["chunk"] if event["type"] == "m.room.message"]
        if "end" not in page or not page["chunk"]:
            break
        path = f"/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=10&from={page['end']}"
    return list(reversed(bodies))


def run_until_not_waiting_for_updates(driver: harness.CharmDriver) -> int:
    """While the charm waits for SQLite background updates, run update-status a few seconds apart.

    Returns how many update-status hooks were needed.
    """
    deadline = time.monotonic() + PENDING_UPDATES_TIMEOUT
    for hooks in itertools.count():
        if "background updates" not in status(driver).message:
            return hooks
        assert isinstance(status(driver), ops.WaitingStatus), status(driver)
        assert driver.process.is_alive()  # Synapse keeps running (and updating) on SQLite meanwhile
        assert driver.last_calls.calls == []
        if time.monotonic() > deadline:
            break
        time.sleep(PENDING_UPDATES_PAUSE)
        driver.run("update_status")
    pytest.fail(f"still {status(driver).message!r} after {PENDING_UPDATES_TIMEOUT:.0f} s of update-status hooks")


def pg_users(server: PostgresServer, database: str) -> list[str]:
    """User IDs in Synapse's users table of a PostgreSQL database."""
    return sorted(row[0] for row in server.execute("SELECT name FROM users", dbname=database))


def sqlite_users(driver: harness.CharmDriver) -> list[str]:
    """User IDs in the SQLite database file, read on the host."""
    conn = sqlite3.connect(f"file:{host_path(driver, SQLITE_PATH)}?mode=ro", uri=True)
    try:
        return sorted(row[0] for row in conn.execute("SELECT name FROM users"))
    finally:
        conn.close()


def provided(server: PostgresServer, *, createdb: bool = True) -> tuple[Role, str]:
    """A relation user and the database postgresql-k8s would create for it (default locale)."""
    role = server.create_role(unique_name("relation_id"), createdb=createdb)
    database = unique_name("synapse")
    server.provider_database(database, role)
    return role, database


# --- a fresh unit related from the start -----------------------------------------------------


def test_fresh_deploy_runs_on_a_c_database_the_charm_creates(
    make_driver: DriverFactory, postgres_server: PostgresServer
) -> None:
    role, database = provided(postgres_server)
    assert postgres_server.database_locale(database) != ("C", "C")
    driver = make_driver(CONFIG)
    commands = use_real_exec(driver)
    relation = testing.Relation(
        DATABASE_ENDPOINT, remote_app_name=PROVIDER, remote_app_data=provider_data(postgres_server, role, database)
    )
    driver.state = dataclasses.replace(driver.state, relations=frozenset({*driver.state.relations, relation}))

    driver.deploy()

    assert driver.process.is_alive()
    assert harness.is_healthy()
    assert driver.starts == 1
    used = f"{database}_c"
    section = database_section(driver)
    assert section["name"] == "psycopg2"
    assert {key: section["args"][key] for key in ("dbname", "host", "port", "user")} == {
        "dbname": used,
        "host": postgres_server.host,
        "port": postgres_server.port,
        "user": role.name,
    }
    assert postgres_server.database_locale(used) == ("C", "C")
    assert postgres_server.database_owner(used) == role.name
    assert ported(commands) == 0
    assert not host_path(driver, SQLITE_PATH).exists()
    assert record(driver) == DatabaseRecord(source=f"{DATABASE_ENDPOINT}:{relation.id}", use=used, state="ready")

    driver.run("update_status")
    assert status(driver) == ops.ActiveStatus()

    # Synapse writes where the charm says: a registered user lands in the C database.
    user_id = driver.run_action("register-user", {"username": "carol", "password": "carol's password"})["user-id"]
    assert user_id in pg_users(postgres_server, used)
    assert harness.token_for(user_id, "carol's password")
    assert postgres_server.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", dbname=database) == [
        ["0"]
    ]


def test_without_createdb_blocks_until_the_operator_runs_the_statement(
    make_driver: DriverFactory, postgres_server: PostgresServer
) -> None:
    role, database = provided(postgres_server, createdb=False)
    driver = make_driver(CONFIG)
    commands = use_real_exec(driver)
    relation = testing.Relation(
        DATABASE_ENDPOINT, remote_app_name=PROVIDER, remote_app_data=provider_data(postgres_server, role, database)
    )
    driver.state = dataclasses.replace(driver.state, relations=frozenset({*driver.state.relations, relation}))

    driver.deploy()

    assert isinstance(status(driver), ops.BlockedStatus)
    message = status(driver).message
    statement = (
        f'CREATE DATABASE "{database}_c" OWNER "{role.name}" TEMPLATE template0 ENCODING \'UTF8\' '
        "LC_COLLATE 'C' LC_CTYPE 'C'"
    )
    assert message.endswith(f"as a PostgreSQL superuser run: {statement}")
    assert driver.starts == 0
    assert not driver.process.is_alive()
    assert not host_path(driver, CONFIG_PATH).exists()
    assert f"{database}_c" not in postgres_server.databases()
    assert len(commands) == 4  # checked on every hook

    postgres_server.execute(message.split("run: ", 1)[1])
    driver.run("update_status")

    assert driver.process.is_alive()
    assert harness.is_healthy()
    assert database_section(driver)["args"]["dbname"] == f"{database}_c"
    driver.run("update_status")
    assert status(driver) == ops.ActiveStatus()


# --- from SQLite to PostgreSQL (one unit, module scope: keep these tests last) ------------------


@dataclasses.dataclass
class Server:
    """The unit, and what its users did on SQLite."""

    driver: harness.CharmDriver
    commands: list[list[str]]
    passwords: dict[str, str]
    room_id: str
    messages: list[str]


@dataclasses.dataclass
class Switch:
    """The switch to PostgreSQL: the relation, the database used, and what the switching hook did."""

    relation_id: int
    role: Role
    database: str
    provider: dict[str, str]
    hook_calls: list[tuple[str, tuple[str, ...]]]
    update_status_hooks: int
    pid_before: int | None
    waiting_status: ops.StatusBase


@pytest.fixture(scope="module")
def on_sqlite(tmp_path_factory: pytest.TempPathFactory, synapse_venv: Path) -> Iterator[Server]:
    """A unit on SQLite with two users who chatted in a room."""
    base = tmp_path_factory.mktemp("switch")
    driver = harness.CharmDriver(base / "data", CONFIG, venv=synapse_venv, log_path=base / "synapse.log")
    commands = use_real_exec(driver)
    try:
        driver.deploy()
        assert database_section(driver)["name"] == "sqlite3"
        passwords = {"alice": "alice's long password", "bob": "bob-Pa55-word"}
        users = {
            name: driver.run_action("register-user", {"username": name, "password": pw})["user-id"]
            for name, pw in passwords.items()
        }
        alice = harness.token_for(users["alice"], passwords["alice"])
        bob = harness.token_for(users["bob"], passwords["bob"])
        code, room = harness.http_json(
            "POST",
            "/_matrix/client/v3/createRoom",
            {"name": "Before the switch", "invite": [users["bob"]]},
            token=alice,
        )
        assert code == 200, room
        room_id = str(room["room_id"])
        code, joined = harness.http_json("POST", f"/_matrix/client/v3/join/{room_id}", {}, token=bob)
        assert code == 200, joined
        messages = [f"message {n} from {'alice' if n % 2 else 'bob'}: ünïcode ✓" for n in range(1, 8)]
        for n, body in enumerate(messages, start=1):
            send_message(alice if n % 2 else bob, room_id, body)
        assert message_bodies(bob, room_id) == messages
        assert host_path(driver, SQLITE_PATH).exists()
        yield Server(driver, commands, {users[name]: pw for name, pw in passwords.items()}, room_id, messages)
    finally:
        driver.stop()


@pytest.fixture(scope="module")
def switched(on_sqlite: Server, postgres_server: PostgresServer) -> Switch:
    """Relate PostgreSQL to the unit on SQLite; the provider answers one hook later."""
    driver = on_sqlite.driver
    role, database = provided(postgres_server)
    started = time.monotonic()
    pid_before = driver.process.pid
    relation = relate(driver, {})
    waiting = status(driver)
    assert driver.process.pid == pid_before  # the unanswered relation changes nothing
    assert driver.last_calls.calls == []
    data = provider_data(postgres_server, role, database)
    provider_answers(driver, relation.id, data)
    calls = list(driver.last_calls.calls)
    answered = time.monotonic()
    hooks = run_until_not_waiting_for_updates(driver)
    if hooks:
        calls = list(driver.last_calls.calls)
    done = time.monotonic()
    logger.info(
        "switched to PostgreSQL in %.1f s: %d update-status hooks (%.1f s) waiting for background updates",
        done - started,
        hooks,
        done - answered,
    )
    return Switch(relation.id, role, database, data, calls, hooks, pid_before, waiting)


def test_unanswered_relation_keeps_synapse_on_sqlite(switched: Switch) -> None:
    assert switched.waiting_status == ops.WaitingStatus("waiting for the PostgreSQL database on the database relation")


def test_switch_from_sqlite_keeps_users_and_messages(
    on_sqlite: Server, switched: Switch, postgres_server: PostgresServer
) -> None:
    driver = on_sqlite.driver
    used = f"{switched.database}_c"

    # Synapse was stopped once, ported, and started once on PostgreSQL.
    assert [name for name, _ in switched.hook_calls] == ["stop", "replan"], switched.hook_calls
    assert ported(on_sqlite.commands) == 1
    assert driver.process.is_alive()
    assert driver.process.pid != switched.pid_before
    assert harness.is_healthy()
    section = database_section(driver)
    assert section["name"] == "psycopg2"
    assert section["args"]["dbname"] == used
    assert record(driver) == DatabaseRecord(
        source=f"{DATABASE_ENDPOINT}:{switched.relation_id}", use=used, state="ready"
    )
    driver.run("update_status")
    assert status(driver) == ops.ActiveStatus()

    # The data is in PostgreSQL; the SQLite file is kept as it was; the porter's config is gone.
    assert set(on_sqlite.passwords) <= set(pg_users(postgres_server, used))
    assert sqlite_users(driver) == sorted(on_sqlite.passwords)
    assert not host_path(driver, PORT_CONFIG_PATH).exists()

    # The same users log in with the same passwords and read the same messages.
    tokens = {user: harness.token_for(user, password) for user, password in on_sqlite.passwords.items()}
    for token in tokens.values():
        assert message_bodies(token, on_sqlite.room_id) == on_sqlite.messages

    # New messages go to PostgreSQL.
    before = int(
        postgres_server.execute("SELECT count(*) FROM events WHERE type = 'm.room.message'", dbname=used)[0][0]
    )
    send_message(next(iter(tokens.values())), on_sqlite.room_id, "after the switch")
    after = int(postgres_server.execute("SELECT count(*) FROM events WHERE type = 'm.room.message'", dbname=used)[0][0])
    assert (before, after) == (len(on_sqlite.messages), len(on_sqlite.messages) + 1)
    on_sqlite.messages.append("after the switch")


def test_relation_removed_stops_synapse_and_relating_again_does_not_port_again(
    on_sqlite: Server, switched: Switch, postgres_server: PostgresServer
) -> None:
    driver = on_sqlite.driver
    starts = driver.starts

    unrelate(driver, switched.relation_id)

    assert not driver.process.is_alive()
    assert not harness.is_healthy()
    assert isinstance(status(driver), ops.BlockedStatus)
    assert status(driver).message.startswith("the database relation was removed")
    for event in ("update_status", "config_changed", "pebble_ready"):
        driver.run(event)
    assert not driver.process.is_alive()
    assert driver.starts == starts
    assert database_section(driver)["args"]["dbname"] == f"{switched.database}_c"

    # Related again (a new relation id; here the provider hands out the same user and database).
    relation = relate(driver, switched.provider)

    assert driver.process.is_alive()
    assert harness.is_healthy()
    assert driver.starts == starts + 1
    assert ported(on_sqlite.commands) == 1
    assert record(driver) == DatabaseRecord(
        source=f"{DATABASE_ENDPOINT}:{relation.id}", use=f"{switched.database}_c", state="ready"
    )
    user, password = next(iter(on_sqlite.passwords.items()))
    assert message_bodies(harness.token_for(user, password), on_sqlite.room_id) == on_sqlite.messages
    driver.run("update_status")
    assert status(driver) == ops.ActiveStatus()
