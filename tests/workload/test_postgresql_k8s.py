"""The charm on PostgreSQL as postgresql-k8s 16 and 14 serve it, with a real Synapse.

Each set-up is its own PostgreSQL cluster (tests/workload/postgresql_k8s.py reproduces the
providers' catalogues with plain SQL):

- 16: collate C / ctype C.UTF-8; a user without CREATEDB whose sessions run as
  `charmed_<db>_owner`. Synapse runs on the provided database with allow_unsafe_locale.
- 14: a cluster whose databases are not C-collated (so the charm needs `<db>_c`); a user with
  CREATEDB; pg_hba lists only the provided database until the test refreshes it.
- en_US.UTF-8 collate and ctype: with a 16-like user (`<db>_c` created as
  charmed_databases_owner), and with a plain user in tests/workload/test_database_switch.py.

In each, Synapse becomes healthy on the charm's config, users register and log in, and the
unit ends Active. Then the relation is re-created with a new user: the charm runs on the
same database, or names the owner and the statements that fix it.
"""

import dataclasses
import typing
from collections.abc import Iterator

import ops
import pytest
import yaml
from ops import testing

from constants import CONFIG_PATH, DATA_DIR, DATABASE_ENDPOINT, PEER_DATABASE_KEY, PEER_RELATION
from state import DatabaseRecord
from tests.workload import harness
from tests.workload.conftest import DriverFactory
from tests.workload.postgres import PostgresError, PostgresServer, Role, unique_name
from tests.workload.postgresql_k8s import DATABASES_OWNER, OPERATOR, Track14, Track16, database_owner_role

SERVER_NAME = "pgk8s.test"
PROVIDER = "postgresql-k8s"
PASSWORD = "a long password for alice"


# --- helpers ------------------------------------------------------------------------------


def provider_data(server: PostgresServer, role: Role, database: str, version: str) -> dict[str, str]:
    """The v0 answer postgresql-k8s writes (plain credentials)."""
    return {
        "endpoints": f"{server.host}:{server.port}",
        "username": role.name,
        "password": role.password,
        "database": database,
        "version": version,
    }


def add_relation(driver: harness.CharmDriver, data: dict[str, str]) -> int:
    """Add a `database` relation already answered by the provider to the state (no hook)."""
    relation = testing.Relation(
        DATABASE_ENDPOINT, interface="postgresql_client", remote_app_name=PROVIDER, remote_app_data=data
    )
    driver.state = dataclasses.replace(driver.state, relations=frozenset({*driver.state.relations, relation}))
    return relation.id


def relate(driver: harness.CharmDriver, data: dict[str, str]) -> int:
    """Add a `database` relation already answered by the provider; run relation-changed."""
    relation_id = add_relation(driver, data)
    driver.run(driver.ctx.on.relation_changed(driver.state.get_relation(relation_id), remote_unit=0))
    return relation_id


def unrelate(driver: harness.CharmDriver, relation_id: int) -> None:
    """Remove the relation: relation-broken, then Juju forgets it."""
    driver.run(driver.ctx.on.relation_broken(driver.state.get_relation(relation_id)))
    driver.state = dataclasses.replace(
        driver.state, relations=frozenset(rel for rel in driver.state.relations if rel.id != relation_id)
    )


def status(driver: harness.CharmDriver) -> ops.StatusBase:
    """The unit status after the last hook."""
    return typing.cast(ops.StatusBase, driver.state.unit_status)


def database_section(driver: harness.CharmDriver) -> dict[str, typing.Any]:
    """homeserver.yaml's `database` section."""
    path = driver.data_dir / CONFIG_PATH.relative_to(DATA_DIR)
    return typing.cast(dict[str, typing.Any], yaml.safe_load(path.read_text())["database"])


def record(driver: harness.CharmDriver) -> DatabaseRecord | None:
    """The leader's database record in peer data."""
    peer = next(rel for rel in driver.state.relations if rel.endpoint == PEER_RELATION)
    return DatabaseRecord.from_peer_data(typing.cast(dict[str, str], peer.local_app_data).get(PEER_DATABASE_KEY))


def register_and_log_in(driver: harness.CharmDriver, username: str) -> str:
    """Register a user through the charm's action; return its user ID after a real login."""
    user_id = str(driver.run_action("register-user", {"username": username, "password": PASSWORD})["user-id"])
    assert harness.token_for(user_id, PASSWORD)
    return user_id


def assert_active(driver: harness.CharmDriver) -> None:
    """Synapse is healthy and the unit goes Active on the next hook."""
    assert driver.process.is_alive(), driver.process.log_tail()
    assert harness.is_healthy()
    driver.run("update_status")
    assert status(driver) == ops.ActiveStatus()


def table_owners(server: PostgresServer, database: str) -> set[str]:
    """The owners of the tables in the public schema."""
    rows = server.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'", dbname=database)
    return {row[0] for row in rows}


def cluster(locale: str, collate: str | None = None, ctype: str | None = None) -> Iterator[PostgresServer]:
    """A started PostgreSQL cluster with the given initdb locale settings, removed afterwards."""
    server = PostgresServer(locale, collate=collate, ctype=ctype)
    try:
        server.start()
    except PostgresError as exc:
        server.cleanup()
        pytest.fail(f"cannot start PostgreSQL with locale {locale} (`sudo bash tools/dev.sh setup` makes it): {exc}")
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def c_utf8_server() -> Iterator[PostgresServer]:
    """A cluster like postgresql-k8s's: collate C, ctype C.UTF-8."""
    yield from cluster(locale="C.UTF-8", collate="C", ctype="C.UTF-8")


@pytest.fixture
def en_us_server() -> Iterator[PostgresServer]:
    """A cluster whose databases have collate and ctype en_US.UTF-8 (tools/dev.sh generates it)."""
    yield from cluster(locale="en_US.UTF-8")


# --- 16: C / C.UTF-8, CREATEDB through charmed_databases_owner -------------------------------


def test_track16_runs_on_the_provided_database_and_survives_a_recreated_relation(
    make_driver: DriverFactory, c_utf8_server: PostgresServer
) -> None:
    server = c_utf8_server
    database = unique_name("synapse")
    provider = Track16(server, database)
    first = provider.relation_user("relation_id_5")
    assert server.database_locale(database) == ("C", "C.UTF-8")
    driver = make_driver({"server_name": SERVER_NAME})
    relation_id = add_relation(driver, provider_data(server, first, database, "16.6"))

    driver.deploy()

    section = database_section(driver)
    assert section["allow_unsafe_locale"] is True
    assert section["args"]["dbname"] == database
    assert section["args"]["user"] == first.name
    assert f"{database}_c" not in server.databases()
    assert record(driver) == DatabaseRecord(
        source=f"{DATABASE_ENDPOINT}:{relation_id}", use=database, state="ready", allow_unsafe_locale=True
    )
    assert_active(driver)
    alice = register_and_log_in(driver, "alice")
    # Synapse's tables belong to the role its sessions run as, not to the relation user.
    assert table_owners(server, database) == {database_owner_role(database)}

    # The relation is removed (its user dropped) and re-created with a new user.
    unrelate(driver, relation_id)
    assert not driver.process.is_alive()
    provider.remove(first)
    second = provider.relation_user("relation_id_6")
    relate(driver, provider_data(server, second, database, "16.6"))

    assert database_section(driver)["args"] == {**section["args"], "user": second.name, "password": second.password}
    assert_active(driver)
    assert harness.token_for(alice, PASSWORD)
    register_and_log_in(driver, "bob")


def test_track16_on_a_non_c_server_creates_the_c_database_as_charmed_databases_owner(
    make_driver: DriverFactory, en_us_server: PostgresServer
) -> None:
    server = en_us_server
    database = unique_name("synapse")
    used = f"{database}_c"
    provider = Track16(server, database)
    first = provider.relation_user("relation_id_5")
    driver = make_driver({"server_name": SERVER_NAME})
    relation_id = add_relation(driver, provider_data(server, first, database, "16.6"))

    driver.deploy()

    assert database_section(driver)["args"]["dbname"] == used
    assert "allow_unsafe_locale" not in database_section(driver)
    assert server.database_locale(used) == ("C", "C")
    assert server.database_owner(used) == DATABASES_OWNER
    assert_active(driver)
    alice = register_and_log_in(driver, "alice")
    assert table_owners(server, used) == {DATABASES_OWNER}

    # Re-created: the new user (also a member) runs on the same tables; the old one could be dropped.
    unrelate(driver, relation_id)
    provider.remove(first)
    second = provider.relation_user("relation_id_6")
    relate(driver, provider_data(server, second, database, "16.6"))

    assert database_section(driver)["args"]["dbname"] == used
    assert database_section(driver)["args"]["user"] == second.name
    assert_active(driver)
    assert harness.token_for(alice, PASSWORD)


# --- 14: CREATEDB attribute, pg_hba refreshed by a poller ------------------------------------


def test_track14_waits_for_pg_hba_and_names_the_fix_after_a_recreated_relation(
    make_driver: DriverFactory, en_us_server: PostgresServer
) -> None:
    server = en_us_server
    database = unique_name("synapse")
    used = f"{database}_c"
    provider = Track14(server, database)
    first = provider.relation_user("relation_id_3")
    driver = make_driver({"server_name": SERVER_NAME})
    relation_id = add_relation(driver, provider_data(server, first, database, "14.15"))

    driver.deploy()

    # The charm created <db>_c (C/C, no PUBLIC privileges) but pg_hba does not list it yet.
    assert status(driver) == ops.WaitingStatus(
        f"waiting for PostgreSQL to allow connections to {used} (its pg_hba.conf has no entry for it yet; "
        "postgresql-k8s 14 adds one within a minute)"
    )
    assert not driver.process.is_alive()
    assert server.database_locale(used) == ("C", "C")
    assert server.database_owner(used) == first.name
    acl = server.execute("SELECT datacl::text FROM pg_database WHERE datname = :'db'", db=used)[0][0]
    assert "=Tc/" not in acl and not acl.startswith("{=")  # nothing granted to PUBLIC
    driver.run("update_status")  # still refused: checked again, still waiting
    assert isinstance(status(driver), ops.WaitingStatus)

    provider.allow(first.name, used)
    provider.refresh()
    driver.run("update_status")

    section = database_section(driver)
    assert section["args"]["dbname"] == used
    assert "allow_unsafe_locale" not in section
    assert_active(driver)
    alice = register_and_log_in(driver, "alice")

    # Removed: the provider gives the user's objects to `operator` and drops it. Re-created.
    unrelate(driver, relation_id)
    provider.remove(first, [database, used])
    assert table_owners(server, used) == {OPERATOR}
    second = provider.relation_user("relation_id_4")
    relate(driver, provider_data(server, second, database, "14.15"))
    assert isinstance(status(driver), ops.WaitingStatus)  # pg_hba: the new user is not listed on <db>_c yet
    provider.allow(second.name, used)
    provider.refresh()
    driver.run("update_status")

    # The server stays on its database; the new user cannot use it: Blocked, naming the owner and the fix.
    message = status(driver).message
    assert isinstance(status(driver), ops.BlockedStatus), message
    assert message.startswith(
        f"user {second.name} may not connect to database {used}, which belongs to {OPERATOR} (a re-created "
        "relation gets a new user); "
    )
    assert not driver.process.is_alive()  # stopped: no crash loop on the old user's credentials
    marker = f"as a PostgreSQL superuser, connected to {used}, run: "
    assert marker in message
    server.execute(message.split(marker, 1)[1], dbname=used)
    driver.run("update_status")

    assert database_section(driver)["args"]["dbname"] == used
    assert database_section(driver)["args"]["user"] == second.name
    assert_active(driver)
    assert table_owners(server, used) == {second.name}
    assert harness.token_for(alice, PASSWORD)
    register_and_log_in(driver, "bob")
