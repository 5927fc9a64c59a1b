"""The charm on PostgreSQL: the `database` and `db` relations as the reconcile uses them (src/database_lifecycle.py).

The relation modules are tested on their own in test_database.py and test_legacy_db.py;
these tests drive the whole charm: what it renders, when it starts, stops or restarts
Synapse, what it records in peer data and which status it shows. The in-container scripts
of postgres_setup are answered by ops.testing Exec mocks with the one JSON line (or exit
status and stderr) the real scripts produce; tests/workload/test_postgres_setup.py runs
the real scripts against a real PostgreSQL.
"""

import contextlib
import dataclasses
import json
import logging
import stat
import typing
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from unittest import mock

import ops
import pytest
import yaml
from ops import testing

from constants import (
    CONFIG_PATH,
    CONTAINER_NAME,
    DATABASE_CA_PATH,
    DATABASE_ENDPOINT,
    LEGACY_DB_ENDPOINT,
    PEER_ADDRESS_KEY,
    PEER_DATABASE_KEY,
    PEER_RELATION,
    PEER_SECRET_ID_KEY,
    PORT_CONFIG_PATH,
    SERVICE_NAME,
    SQLITE_DIR,
    SQLITE_PATH,
)
from relations.database import REQUESTED_ROLES, REQUESTED_SECRETS
from relations.legacy_db import LEGACY_ROLES
from state import KEEPALIVES, DatabaseRecord
from tests.unit.conftest import CharmEnv, record_side_effects
from workload import postgres_setup

ACTIVE = ops.pebble.ServiceStatus.ACTIVE
APP = "synapse"  # metadata.yaml's name: the database the charm asks for
PROVIDER = "postgresql-k8s"
DB_USER = "relation_id_4"
PASSWORD = "Pg-Pa55w0rd-9f3e1c-not-in-logs"
NEW_PASSWORD = "Rotated-Pa55w0rd-77ab2d-not-in-logs"
HOST = "10.152.183.17"
C_DATABASE = f"{APP}_c"
TEST_CA = "-----BEGIN CERTIFICATE-----\nMIIBdatabaseCAforTests\n-----END CERTIFICATE-----"
# ops-lib-pgsql: our unit's egress subnet must be in the server's allowed-subnets.
OUR_EGRESS = "10.1.5.6/32"
LEGACY_MASTER = f"dbname={APP} host={HOST} password={PASSWORD} port=5432 user={DB_USER}"
CREATE_STATEMENT = (
    f'CREATE DATABASE "{C_DATABASE}" OWNER "{DB_USER}" TEMPLATE template0 ENCODING \'UTF8\' '
    "LC_COLLATE 'C' LC_CTYPE 'C'"
)
REMOVED = "the database relation was removed"


# --- what the provider and the in-container scripts answer ---------------------------------


def provider_data(**overrides: str | None) -> dict[str, str]:
    """A v0 answer with plain credentials, as postgresql-k8s sends it without Juju secrets."""
    data: dict[str, str | None] = {
        "endpoints": f"{HOST}:5432",
        "read-only-endpoints": "10.152.183.18:5432",
        "username": DB_USER,
        "password": PASSWORD,
        "database": APP,
        "version": "16.6",
        **overrides,
    }
    return {key: value for key, value in data.items() if value is not None}


def credentials_secret(password: str = PASSWORD) -> testing.Secret:
    """The provider's `secret-user` secret, granted to us."""
    return testing.Secret({"username": DB_USER, "password": password, "uris": "postgresql://..."})


def database_relation(remote_app_data: dict[str, str] | None = None, **kwargs: typing.Any) -> testing.Relation:
    """The `database` relation with the provider's app databag."""
    return testing.Relation(
        DATABASE_ENDPOINT,
        interface="postgresql_client",
        remote_app_name=PROVIDER,
        remote_app_data=remote_app_data or {},
        **kwargs,
    )


def legacy_server_data(master: str = LEGACY_MASTER) -> dict[str, str]:
    """What a pgsql server unit writes once it granted our request (see test_legacy_db.py)."""
    return {
        "database": APP,
        "roles": LEGACY_ROLES,
        "allowed-subnets": f"10.0.0.0/8,{OUR_EGRESS}",
        "master": master,
        "version": "14",
    }


def legacy_relation(answered: bool = True, master: str = LEGACY_MASTER) -> testing.Relation:
    """The legacy `db` relation; `answered`: the server unit has published its master."""
    return testing.Relation(
        LEGACY_DB_ENDPOINT,
        interface="pgsql",
        remote_app_name=PROVIDER,
        local_unit_data={"egress-subnets": OUR_EGRESS, "ingress-address": "10.1.5.6"},
        remote_units_data={0: legacy_server_data(master) if answered else {}},
    )


def collation(answer: dict[str, typing.Any] | None = None, **kwargs: typing.Any) -> testing.Exec:
    """The collation check/creation script, printing one JSON line (default: it created `<db>_c`)."""
    if answer is None:
        answer = {"database": C_DATABASE, "created": True}
    return testing.Exec(["python", "-c", postgres_setup._PREPARE_SCRIPT], stdout=json.dumps(answer) + "\n", **kwargs)


def pending_updates(count: int = 0) -> testing.Exec:
    """The SQLite background-updates check."""
    return testing.Exec(["python", "-c", postgres_setup._PENDING_UPDATES_SCRIPT], stdout=json.dumps({"pending": count}))


def porter(return_code: int = 0, stderr: str = "") -> testing.Exec:
    """synapse_port_db."""
    return testing.Exec(["synapse_port_db"], return_code=return_code, stdout="Done\n", stderr=stderr)


PORT_REFUSED = (
    "Traceback (most recent call last):\n  ...\n"
    "psycopg2.errors.InsufficientPrivilege: permission denied for schema public\n"
    "Failed to port: permission denied for schema public\n"
)


# --- states ----------------------------------------------------------------------------------


def with_execs(state: testing.State, *execs: testing.Exec) -> testing.State:
    """`state` with the container's Exec mocks replaced."""
    container = dataclasses.replace(state.get_container(CONTAINER_NAME), execs=frozenset(execs))
    return dataclasses.replace(state, containers=frozenset({container}))


def with_relations(state: testing.State, *relations: testing.Relation) -> testing.State:
    """`state` with the non-peer relations replaced by `relations`."""
    peers = {rel for rel in state.relations if rel.endpoint == PEER_RELATION}
    return dataclasses.replace(state, relations=frozenset({*peers, *relations}))


def relation_on(state: testing.State, endpoint: str) -> testing.Relation:
    """The one relation on `endpoint` in `state`."""
    (relation,) = [rel for rel in state.relations if rel.endpoint == endpoint]
    return typing.cast(testing.Relation, relation)


def with_remote_data(state: testing.State, endpoint: str, data: dict[str, str]) -> testing.State:
    """`state` with the provider's app databag on `endpoint` replaced."""
    relation = dataclasses.replace(relation_on(state, endpoint), remote_app_data=data)
    others = {rel for rel in state.relations if rel.endpoint != endpoint}
    return dataclasses.replace(state, relations=frozenset({*others, relation}))


def write_sqlite(env: CharmEnv) -> None:
    """The SQLite database file Synapse would have written."""
    env.host_path(SQLITE_DIR).mkdir(parents=True, exist_ok=True)
    env.host_path(SQLITE_PATH).write_bytes(b"SQLite format 3\x00 rows of the server's history")


def on_sqlite(env: CharmEnv) -> testing.State:
    """A leader whose Synapse runs and is ready on SQLite, with data in the SQLite file."""
    state = env.ready(env.started())
    write_sqlite(env)
    return state


def service(state: testing.State) -> ops.pebble.ServiceStatus | None:
    """Synapse's service status in `state`."""
    return state.get_container(CONTAINER_NAME).service_statuses.get(SERVICE_NAME)


def peer_data(state: testing.State) -> dict[str, str]:
    """The application's peer databag."""
    return dict(relation_on(state, PEER_RELATION).local_app_data)


def record(state: testing.State) -> DatabaseRecord | None:
    """The leader's database record in peer data."""
    return DatabaseRecord.from_peer_data(peer_data(state).get(PEER_DATABASE_KEY))


def homeserver(env: CharmEnv) -> dict[str, typing.Any]:
    """The rendered homeserver.yaml."""
    return typing.cast(dict[str, typing.Any], yaml.safe_load(env.read(CONFIG_PATH)))


def database_section(env: CharmEnv) -> dict[str, typing.Any]:
    """homeserver.yaml's `database` section."""
    return typing.cast(dict[str, typing.Any], homeserver(env)["database"])


def expected_args(**overrides: typing.Any) -> dict[str, typing.Any]:
    """The psycopg2 args for the default provider answer, pool defaults and keepalives."""
    args = {
        "user": DB_USER,
        "password": PASSWORD,
        "dbname": C_DATABASE,
        "host": HOST,
        "port": 5432,
        "cp_min": 5,
        "cp_max": 10,
        **KEEPALIVES,
        **overrides,
    }
    return {key: value for key, value in args.items() if value is not None}


def execs_run(env: CharmEnv) -> list[testing.ExecArgs]:
    """The commands the charm ran in the container since the last call (then forgotten)."""
    return env.ctx.exec_history.pop(CONTAINER_NAME, [])


def commands(runs: list[testing.ExecArgs]) -> list[str]:
    """Which script each exec ran: prepare, pending, port, or the command's first word."""
    names = {postgres_setup._PREPARE_SCRIPT: "prepare", postgres_setup._PENDING_UPDATES_SCRIPT: "pending"}
    result = []
    for run in runs:
        if run.command[:2] == ["python", "-c"]:
            result.append(names.get(run.command[2], "python"))
        else:
            result.append("port" if run.command[0] == "synapse_port_db" else run.command[0])
    return result


def mode(env: CharmEnv, path: PurePosixPath) -> int:
    """Permission bits of a container file."""
    return stat.S_IMODE(env.host_path(path).stat().st_mode)


def on_postgresql(env: CharmEnv, *relations: testing.Relation, **kwargs: typing.Any) -> testing.State:
    """A fresh leader deployed with `relations` (default: an answered `database` relation), ready on PostgreSQL."""
    relations = relations or (database_relation(provider_data()),)
    state = with_execs(env.state(relations=relations, **kwargs), collation())
    out = env.ready(env.pebble_ready(state))
    assert database_section(env)["name"] == "psycopg2"
    assert service(out) == ACTIVE
    execs_run(env)
    return out


@contextlib.contextmanager
def port_config_seen(env: CharmEnv) -> Iterator[list[tuple[str, int, bool]]]:
    """When synapse_port_db is called: (its --postgres-config content, mode, Synapse running), per call."""
    seen: list[tuple[str, int, bool]] = []
    original = ops.Container.exec

    def exec_(self: ops.Container, command: list[str], **kwargs: typing.Any) -> typing.Any:
        if command[0] == "synapse_port_db":
            host = env.host_path(PurePosixPath(command[command.index("--postgres-config") + 1]))
            running = self.get_service(SERVICE_NAME).is_running()
            seen.append((host.read_text(), stat.S_IMODE(host.stat().st_mode), running))
        return original(self, command, **kwargs)

    with mock.patch.object(ops.Container, "exec", exec_):
        yield seen


# --- the `database` relation -----------------------------------------------------------------


@pytest.mark.parametrize("credentials", ["plain", "secret-user"])
def test_database_relation_runs_synapse_on_postgresql(env: CharmEnv, credentials: str) -> None:
    secrets: set[testing.Secret] = set()
    data = provider_data()
    if credentials == "secret-user":
        secret = credentials_secret()
        secrets.add(secret)
        data = provider_data(username=None, password=None, **{"secret-user": secret.id})
    state = with_execs(env.state(relations={database_relation(data)}, secrets=secrets), collation())

    out = env.pebble_ready(state)

    assert relation_on(out, DATABASE_ENDPOINT).local_app_data == {
        "database": APP,
        "extra-user-roles": REQUESTED_ROLES,
        "requested-secrets": json.dumps(list(REQUESTED_SECRETS)),
    }
    (check,) = execs_run(env)
    assert commands([check]) == ["prepare"]
    assert PASSWORD not in " ".join(check.command)
    assert (check.user_id, check.group_id) == (991, 991)
    request = json.loads(typing.cast(str, check.stdin))
    assert request["c_database"] == C_DATABASE
    assert request["connect"] == {key: value for key, value in expected_args(dbname=APP).items() if key[:3] != "cp_"}
    assert database_section(env) == {"name": "psycopg2", "args": expected_args()}
    assert mode(env, CONFIG_PATH) == 0o600
    assert record(out) == DatabaseRecord(
        source=f"{DATABASE_ENDPOINT}:{relation_on(out, DATABASE_ENDPOINT).id}", use=C_DATABASE, state="ready"
    )
    assert service(out) == ACTIVE
    assert not env.host_path(SQLITE_PATH).exists()

    out = env.run(env.ctx.on.update_status(), env.ready(out))

    assert out.unit_status == ops.ActiveStatus()
    assert execs_run(env) == []


def test_tls_offered_without_a_ca_requires_encryption(env: CharmEnv) -> None:
    on_postgresql(env, database_relation(provider_data(tls="True")))

    assert database_section(env)["args"] == expected_args(sslmode="require")
    assert not env.host_path(DATABASE_CA_PATH).exists()


def test_tls_with_a_ca_verifies_the_server(env: CharmEnv) -> None:
    state = with_execs(
        env.state(relations={database_relation(provider_data(tls="True", **{"tls-ca": TEST_CA}))}), collation()
    )

    env.pebble_ready(state)

    assert database_section(env)["args"] == expected_args(sslmode="verify-ca", sslrootcert=str(DATABASE_CA_PATH))
    assert env.read(DATABASE_CA_PATH) == TEST_CA
    assert mode(env, DATABASE_CA_PATH) == 0o600
    # The collation check connects the same way (the CA is in place before it runs).
    (check,) = execs_run(env)
    connect = json.loads(typing.cast(str, check.stdin))["connect"]
    assert (connect["sslmode"], connect["sslrootcert"]) == ("verify-ca", str(DATABASE_CA_PATH))


def test_tls_from_the_tls_secret(env: CharmEnv) -> None:
    tls = testing.Secret({"tls": "True", "tls-ca": TEST_CA})
    state = with_execs(
        env.state(relations={database_relation(provider_data(**{"secret-tls": tls.id}))}, secrets={tls}), collation()
    )

    env.pebble_ready(state)

    assert database_section(env)["args"]["sslmode"] == "verify-ca"
    assert env.read(DATABASE_CA_PATH) == TEST_CA


def test_first_of_several_endpoints_is_used(env: CharmEnv) -> None:
    on_postgresql(env, database_relation(provider_data(endpoints=f"{HOST}:6432, 10.152.183.99:5432")))

    assert database_section(env)["args"] == expected_args(port=6432)


def test_provider_echoing_no_database_name_means_the_requested_one(env: CharmEnv) -> None:
    on_postgresql(env, database_relation(provider_data(database=None)))

    assert database_section(env)["args"]["dbname"] == C_DATABASE


# --- the legacy `db` relation -------------------------------------------------------------


def test_legacy_db_relation_gives_the_same_result(env: CharmEnv) -> None:
    relation = legacy_relation(answered=False)
    state = with_execs(env.state(relations={relation}), collation())

    joined = env.run(env.ctx.on.relation_joined(relation, remote_unit=0), state)

    assert relation_on(joined, LEGACY_DB_ENDPOINT).local_app_data == {"database": APP, "roles": LEGACY_ROLES}
    assert joined.unit_status == ops.WaitingStatus("waiting for the PostgreSQL database on the db relation")
    assert service(joined) is None
    assert execs_run(env) == []

    answered = dataclasses.replace(relation_on(joined, LEGACY_DB_ENDPOINT), remote_units_data={0: legacy_server_data()})
    out = env.run(env.ctx.on.relation_changed(answered, remote_unit=0), with_relations(joined, answered))

    assert commands(execs_run(env)) == ["prepare"]
    assert database_section(env) == {"name": "psycopg2", "args": expected_args()}
    assert mode(env, CONFIG_PATH) == 0o600
    assert record(out) == DatabaseRecord(source=f"{LEGACY_DB_ENDPOINT}:{answered.id}", use=C_DATABASE, state="ready")
    assert service(out) == ACTIVE
    out = env.run(env.ctx.on.update_status(), env.ready(out))
    assert out.unit_status == ops.ActiveStatus()


def running_on_legacy_db(env: CharmEnv) -> tuple[testing.State, testing.Relation]:
    """A leader running on the legacy db relation (joined, answered, ready); and that relation."""
    relation = legacy_relation(answered=False)
    joined = env.run(
        env.ctx.on.relation_joined(relation, remote_unit=0), with_execs(env.state(relations={relation}), collation())
    )
    answered = dataclasses.replace(relation_on(joined, LEGACY_DB_ENDPOINT), remote_units_data={0: legacy_server_data()})
    out = env.ready(env.run(env.ctx.on.relation_changed(answered, remote_unit=0), with_relations(joined, answered)))
    execs_run(env)
    return out, answered


def test_legacy_master_change_restarts_once(env: CharmEnv) -> None:
    out, answered = running_on_legacy_db(env)

    moved = dataclasses.replace(
        answered, remote_units_data={0: legacy_server_data(LEGACY_MASTER.replace(HOST, "10.152.183.40"))}
    )
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_changed(moved, remote_unit=0), with_relations(out, moved))

    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]
    assert database_section(env)["args"] == expected_args(host="10.152.183.40")
    assert execs_run(env) == []


def test_both_relations_block_and_leave_synapse_alone(env: CharmEnv) -> None:
    state = on_sqlite(env)
    before = env.read(CONFIG_PATH)
    state = with_execs(
        with_relations(state, database_relation(provider_data()), legacy_relation()),
        collation(),
        pending_updates(),
        porter(),
    )

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.config_changed(), state)

    assert isinstance(out.unit_status, ops.BlockedStatus)
    message = out.unit_status.message
    assert f"both the {DATABASE_ENDPOINT} and {LEGACY_DB_ENDPOINT} relations" in message
    assert f"juju remove-relation {APP}:{LEGACY_DB_ENDPOINT}" in message
    assert effects.pebble.calls == []
    assert execs_run(env) == []
    assert env.read(CONFIG_PATH) == before
    assert service(out) == ACTIVE
    assert record(out) is None


def test_both_relations_on_a_fresh_unit_start_nothing(env: CharmEnv) -> None:
    state = with_execs(env.state(relations={database_relation(provider_data()), legacy_relation()}), collation())

    out = env.pebble_ready(state)

    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert service(out) is None
    assert not env.host_path(CONFIG_PATH).exists()
    assert execs_run(env) == []


# --- before the provider answers -----------------------------------------------------------


@pytest.mark.parametrize(
    "relation",
    [
        pytest.param(database_relation, id="database-empty"),
        pytest.param(
            lambda: database_relation(provider_data(password=None, username=None)), id="database-no-credentials"
        ),
        pytest.param(lambda: database_relation(provider_data(endpoints=None)), id="database-no-endpoints"),
        pytest.param(lambda: legacy_relation(answered=False), id="db-no-master"),
    ],
)
def test_fresh_unit_waits_for_the_provider_and_starts_nothing(
    env: CharmEnv, relation: typing.Callable[[], testing.Relation]
) -> None:
    related = relation()
    state = with_execs(env.state(relations={related}), collation())

    with record_side_effects() as effects:
        out = env.pebble_ready(state)

    assert out.unit_status == ops.WaitingStatus(
        f"waiting for the PostgreSQL database on the {related.endpoint} relation"
    )
    assert effects.pebble.calls == []
    assert service(out) is None
    assert not env.host_path(CONFIG_PATH).exists()
    assert not env.host_path(SQLITE_PATH).exists()
    assert execs_run(env) == []


def test_unit_on_sqlite_keeps_running_while_the_provider_has_not_answered(env: CharmEnv) -> None:
    state = on_sqlite(env)
    before = env.read(CONFIG_PATH)
    relation = database_relation()

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_created(relation), with_execs(with_relations(state, relation), collation()))
        out = env.run(env.ctx.on.update_status(), out)

    assert out.unit_status == ops.WaitingStatus("waiting for the PostgreSQL database on the database relation")
    assert effects.pebble.calls == []
    assert service(out) == ACTIVE
    assert env.read(CONFIG_PATH) == before
    assert execs_run(env) == []
    # The request is out, so the provider can answer.
    assert typing.cast(dict[str, str], relation_on(out, DATABASE_ENDPOINT).local_app_data)["database"] == APP


# --- malformed provider data --------------------------------------------------------------

MALFORMED: dict[str, tuple[typing.Callable[[], testing.Relation], str]] = {
    "garbage-endpoints": (lambda: database_relation(provider_data(endpoints="not an endpoint")), "invalid endpoints"),
    "port-out-of-range": (lambda: database_relation(provider_data(endpoints=f"{HOST}:99999")), "invalid endpoints"),
    "unclosed-ipv6": (lambda: database_relation(provider_data(endpoints="[fd00::1:5432")), "invalid endpoints"),
    "garbage-read-only": (
        lambda: database_relation(provider_data(**{"read-only-endpoints": "a b c:5432"})),
        "invalid read-only-endpoints",
    ),
    "missing-password": (lambda: database_relation(provider_data(password=None)), "lacks password"),
    "missing-username": (lambda: database_relation(provider_data(username="")), "lacks username"),
    "unreadable-secret": (
        lambda: database_relation(
            provider_data(username=None, password=None, **{"secret-user": "secret:cu2kd2hk0q1e3nj0o0ug"})
        ),
        "database credentials secret",
    ),
    "garbage-tls-flag": (lambda: database_relation(provider_data(tls="perhaps")), "invalid tls flag"),
    "db-garbage-master": (lambda: legacy_relation(master="host= 'unterminated"), "invalid connection string"),
    "db-master-without-password": (
        lambda: legacy_relation(master=f"dbname={APP} host={HOST} user={DB_USER}"),
        "invalid connection string",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_provider_data_blocks_a_fresh_unit(env: CharmEnv, case: str) -> None:
    relation, fragment = MALFORMED[case]
    state = with_execs(env.state(relations={relation()}), collation())

    out = env.pebble_ready(state)

    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert fragment in out.unit_status.message
    assert PASSWORD not in out.unit_status.message
    assert service(out) is None
    assert execs_run(env) == []


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_provider_data_leaves_synapse_on_sqlite(env: CharmEnv, case: str) -> None:
    relation, fragment = MALFORMED[case]
    state = on_sqlite(env)
    before = env.read(CONFIG_PATH)

    with record_side_effects() as effects:
        out = env.run(
            env.ctx.on.config_changed(),
            with_execs(with_relations(state, relation()), collation(), pending_updates(), porter()),
        )

    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert fragment in out.unit_status.message
    assert effects.pebble.calls == []
    assert env.read(CONFIG_PATH) == before
    assert service(out) == ACTIVE
    assert execs_run(env) == []


# --- non-leaders ----------------------------------------------------------------------------


def follower_of(leader: testing.State, env: CharmEnv, with_record: bool) -> tuple[testing.State, Path]:
    """A non-leader unit of the leader's application and relation, and its own (empty) volume."""
    server_secret = next(secret for secret in leader.secrets if secret.owner == "app")
    secret = testing.Secret(dict(server_secret.tracked_content), id=server_secret.id)
    app_data = {PEER_SECRET_ID_KEY: peer_data(leader)[PEER_SECRET_ID_KEY]}
    if with_record:
        app_data[PEER_DATABASE_KEY] = peer_data(leader)[PEER_DATABASE_KEY]
    relation = relation_on(leader, DATABASE_ENDPOINT)
    remote = database_relation(dict(relation.remote_app_data), id=relation.id)
    data_dir = env.new_data_dir()
    state = env.state(
        leader=False,
        peer=testing.PeerRelation(PEER_RELATION, local_app_data=app_data),
        secrets={secret},
        relations={remote},
        container=env.container(data_dir=data_dir, execs={collation()}),
    )
    return state, data_dir


def test_non_leader_waits_for_the_leaders_record(env: CharmEnv) -> None:
    leader = on_postgresql(env)
    state, data_dir = follower_of(leader, env, with_record=False)

    with record_side_effects() as effects:
        out = env.pebble_ready(state)

    assert out.unit_status == ops.WaitingStatus("waiting for the main unit to prepare the PostgreSQL database")
    assert effects.pebble.calls == []
    assert effects.relation_writes == [{PEER_ADDRESS_KEY: "192.0.2.0"}]  # its address, nothing else
    assert service(out) is None
    assert not env.host_path(CONFIG_PATH, data_dir).exists()
    assert execs_run(env) == []


def test_non_leader_with_the_record_runs_on_the_same_database(env: CharmEnv) -> None:
    leader = on_postgresql(env)
    leader_database = database_section(env)
    state, data_dir = follower_of(leader, env, with_record=True)

    with record_side_effects() as effects:
        out = env.pebble_ready(state)

    assert yaml.safe_load(env.read(CONFIG_PATH, data_dir))["database"] == leader_database
    assert effects.relation_writes == [{PEER_ADDRESS_KEY: "192.0.2.0"}]  # its address, nothing else
    assert execs_run(env) == []
    # On standby: the same config, ready for a failover, but only the leader runs Synapse.
    assert service(out) != ACTIVE
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert out.unit_status.message.startswith("standby: Synapse's main process runs on ")


# --- collation -----------------------------------------------------------------------------


def test_provider_database_already_c_is_used_as_is(env: CharmEnv) -> None:
    state = with_execs(env.state(relations={database_relation(provider_data())}), collation({"database": APP}))

    out = env.pebble_ready(state)

    assert database_section(env)["args"]["dbname"] == APP
    assert record(out) is not None and record(out).use == APP  # type: ignore[union-attr]


def test_without_createdb_blocks_with_the_statement_then_proceeds(env: CharmEnv) -> None:
    refused = collation({"error": "no-createdb", "locale": ["C.UTF-8", "C.UTF-8"], "user": DB_USER})
    state = with_execs(env.state(relations={database_relation(provider_data())}), refused)

    out = env.pebble_ready(state)
    out = env.run(env.ctx.on.update_status(), out)

    assert isinstance(out.unit_status, ops.BlockedStatus)
    message = out.unit_status.message
    assert f"database {APP} has collation C.UTF-8/C.UTF-8 but Synapse needs C" in message
    assert message.endswith(f"as a PostgreSQL superuser run: {CREATE_STATEMENT}")
    assert service(out) is None
    assert not env.host_path(CONFIG_PATH).exists()
    assert record(out) is None
    assert commands(execs_run(env)) == ["prepare", "prepare"]  # checked again on every hook

    # The operator ran the statement: the next hook finds the C database.
    out = env.run(env.ctx.on.update_status(), with_execs(out, collation({"database": C_DATABASE, "created": False})))

    assert database_section(env)["args"]["dbname"] == C_DATABASE
    assert service(out) == ACTIVE
    assert record(out) is not None


def test_without_createdb_a_unit_on_sqlite_keeps_running(env: CharmEnv) -> None:
    state = on_sqlite(env)
    before = env.read(CONFIG_PATH)
    refused = collation({"error": "no-createdb", "locale": ["en_US.UTF-8", "en_US.UTF-8"], "user": DB_USER})
    relation = database_relation(provider_data())
    state = with_execs(with_relations(state, relation), refused, pending_updates(), porter())

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_changed(relation), state)

    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert CREATE_STATEMENT in out.unit_status.message
    assert effects.pebble.calls == []
    assert commands(execs_run(env)) == ["prepare"]
    assert env.read(CONFIG_PATH) == before


@pytest.mark.parametrize(
    ("script", "fragment"),
    [
        (
            collation({"error": "target-locale", "locale": ["en_US.UTF-8", "en_US.UTF-8"], "user": DB_USER}),
            f"database {C_DATABASE} exists but is not C-collated",
        ),
        (
            collation({"error": "connect", "detail": 'FATAL:  password authentication failed for user "u"'}),
            "cannot connect to the database: FATAL:  password authentication failed",
        ),
        (
            collation({"error": "connect-target", "detail": "FATAL: no pg_hba.conf entry", "user": DB_USER}),
            f"cannot connect to database {C_DATABASE} as {DB_USER} (FATAL: no pg_hba.conf entry); grant {DB_USER} "
            f"CONNECT on {C_DATABASE} and allow it in the PostgreSQL server's pg_hba",
        ),
        (
            collation({"database": C_DATABASE, "error": "foreign-database", "owner": "operator", "user": DB_USER}),
            f"user {DB_USER} may not connect to database {C_DATABASE}, which belongs to operator (a re-created "
            f"relation gets a new user); as a PostgreSQL superuser, connected to {C_DATABASE}, run: ALTER DATABASE "
            f'"{C_DATABASE}" OWNER TO "{DB_USER}"',
        ),
        (
            collation({"unexpected": True}),
            "cannot connect to the database: no answer",
        ),
        (
            testing.Exec(
                ["python", "-c", postgres_setup._PREPARE_SCRIPT],
                return_code=1,
                stderr="Traceback\nModuleNotFoundError: No module named 'psycopg2'\n",
            ),
            "checking the database failed: Traceback ModuleNotFoundError: No module named 'psycopg2'",
        ),
        (
            testing.Exec(["python", "-c", postgres_setup._PREPARE_SCRIPT], stdout="Segmentation fault\n"),
            "unexpected answer from the database check",
        ),
    ],
    ids=[
        "target-not-c",
        "cannot-connect",
        "cannot-connect-target",
        "target-of-another-user",
        "answer-without-database",
        "script-crashed",
        "garbage-output",
    ],
)
def test_database_that_cannot_be_prepared_blocks(env: CharmEnv, script: testing.Exec, fragment: str) -> None:
    state = with_execs(env.state(relations={database_relation(provider_data())}), script)

    out = env.pebble_ready(state)

    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert fragment in out.unit_status.message
    assert service(out) is None
    assert record(out) is None


# The decision table as the charm sees it: what the prepare script answers for each provider
# set-up, and what the unit then runs and shows (the script's own rules: tests/unit/workload/).
TRACKS: dict[str, tuple[dict[str, typing.Any], str | None, bool, type[ops.StatusBase]]] = {
    # collate C / ctype C.UTF-8 (postgresql-k8s 16 and 14): the provided database, allow_unsafe_locale.
    "c-utf8": ({"database": APP, "allow_unsafe_locale": True}, APP, True, ops.ActiveStatus),
    # collate and ctype C: the provided database as is.
    "c": ({"database": APP, "allow_unsafe_locale": False}, APP, False, ops.ActiveStatus),
    # not C, CREATEDB by attribute (14) or through charmed_databases_owner (16): <db>_c.
    "en-us-createdb": ({"database": C_DATABASE, "created": True}, C_DATABASE, False, ops.ActiveStatus),
    # not C, <db>_c created but 14's pg_hba does not list it yet.
    "en-us-pg-hba-pending": (
        {"database": C_DATABASE, "error": "hba-pending", "detail": "FATAL:  no pg_hba.conf entry"},
        None,
        False,
        ops.WaitingStatus,
    ),
    # not C, no way to create a database: the statement to run.
    "en-us-no-createdb": (
        {"error": "no-createdb", "locale": ["en_US.UTF-8", "en_US.UTF-8"], "user": DB_USER},
        None,
        False,
        ops.BlockedStatus,
    ),
}


@pytest.mark.parametrize("track", list(TRACKS))
def test_decision_table_database_flag_and_status(env: CharmEnv, track: str) -> None:
    answer, used, unsafe, status_type = TRACKS[track]
    state = with_execs(env.state(relations={database_relation(provider_data())}), collation(answer))

    out = env.pebble_ready(state)
    out = env.run(env.ctx.on.update_status(), env.ready(out) if used else out)

    assert isinstance(out.unit_status, status_type), out.unit_status
    if used is None:
        assert service(out) is None
        assert record(out) is None
        return
    section = database_section(env)
    assert section["args"]["dbname"] == used
    assert section.get("allow_unsafe_locale", False) is unsafe
    assert record(out) == DatabaseRecord(
        source=f"{DATABASE_ENDPOINT}:{relation_on(out, DATABASE_ENDPOINT).id}",
        use=used,
        state="ready",
        allow_unsafe_locale=unsafe,
    )
    assert service(out) == ACTIVE


def test_allow_unsafe_locale_is_logged_and_kept_from_the_record(
    env: CharmEnv, caplog: pytest.LogCaptureFixture
) -> None:
    state = with_execs(env.state(relations={database_relation(provider_data())}), collation(TRACKS["c-utf8"][0]))
    with caplog.at_level(logging.INFO):
        out = env.ready(env.pebble_ready(state))
    assert "has collation C and ctype C.UTF-8: Synapse runs on it with allow_unsafe_locale" in caplog.text
    execs_run(env)

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.config_changed(), out)

    assert execs_run(env) == []  # the record decides: no second check
    assert effects.pebble.calls == []
    assert database_section(env)["allow_unsafe_locale"] is True


def test_pg_hba_pending_waits_then_runs_on_a_later_hook(env: CharmEnv) -> None:
    pending = collation(TRACKS["en-us-pg-hba-pending"][0])
    state = with_execs(env.state(relations={database_relation(provider_data())}), pending)
    out = env.pebble_ready(state)
    assert out.unit_status == ops.WaitingStatus(
        f"waiting for PostgreSQL to allow connections to {C_DATABASE} (its pg_hba.conf has no entry for it yet; "
        "postgresql-k8s 14 adds one within a minute)"
    )

    out = env.run(env.ctx.on.update_status(), with_execs(out, collation({"database": C_DATABASE})))

    assert database_section(env)["args"]["dbname"] == C_DATABASE
    assert service(out) == ACTIVE


def recreated(env: CharmEnv, answer: dict[str, typing.Any]) -> tuple[testing.State, testing.Relation]:
    """A server on PostgreSQL whose relation was removed and added again (a new relation id)."""
    out = on_postgresql(env)
    old = relation_on(out, DATABASE_ENDPOINT)
    out = with_relations(env.run(env.ctx.on.relation_broken(old), out))
    assert service(out) != ACTIVE
    again = database_relation(provider_data(username="relation_id_9"))
    return with_execs(with_relations(out, again), collation(answer)), again


def test_recreated_relation_keeps_the_database_in_use(env: CharmEnv) -> None:
    state, again = recreated(env, {"database": C_DATABASE})

    out = env.run(env.ctx.on.relation_changed(again), state)

    (run,) = execs_run(env)
    assert json.loads(typing.cast(str, run.stdin))["keep"] == C_DATABASE
    assert database_section(env)["args"] == expected_args(user="relation_id_9")
    assert service(out) == ACTIVE
    assert record(out) == DatabaseRecord(source=f"{DATABASE_ENDPOINT}:{again.id}", use=C_DATABASE, state="ready")


def test_recreated_relation_whose_user_cannot_use_the_tables_blocks_with_synapse_stopped(env: CharmEnv) -> None:
    unusable = {
        "database": C_DATABASE,
        "error": "unusable",
        "user": "relation_id_9",
        "role": "relation_id_9",
        "owners": [["operator", 230]],
    }
    state, again = recreated(env, unusable)
    before = env.read(CONFIG_PATH)

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_changed(again), state)

    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert out.unit_status.message.startswith(
        f"user relation_id_9 cannot use database {C_DATABASE}: it does not own the tables already there (230 owned "
        "by operator;"
    )
    # The old relation's files stay, and Synapse is not started on them: no crash loop.
    assert env.read(CONFIG_PATH) == before
    assert ("replan", ()) not in effects.pebble.calls
    assert service(out) != ACTIVE


# --- porting SQLite -------------------------------------------------------------------------


def test_sqlite_is_ported_with_synapse_stopped_then_started_on_postgresql(env: CharmEnv) -> None:
    state = on_sqlite(env)
    sqlite_before = env.host_path(SQLITE_PATH).read_bytes()
    relation = database_relation(provider_data())
    state = with_execs(with_relations(state, relation), collation(), pending_updates(0), porter())

    with record_side_effects() as effects, port_config_seen(env) as seen:
        out = env.run(env.ctx.on.relation_changed(relation), state)

    assert effects.pebble.calls == [("stop", (SERVICE_NAME,)), ("replan", ())]
    runs = execs_run(env)
    assert commands(runs) == ["prepare", "pending", "port"]
    assert runs[1].command[3:] == [str(SQLITE_PATH)]
    assert runs[2].command == [
        "synapse_port_db", "--sqlite-database", str(SQLITE_PATH), "--postgres-config", str(PORT_CONFIG_PATH)
    ]  # fmt: skip
    assert (runs[2].user_id, runs[2].group_id) == (991, 991)
    assert all(PASSWORD not in " ".join(run.command) for run in runs)
    # The porter read the PostgreSQL config Synapse then started on, private, with Synapse stopped.
    ((content, port_mode, running),) = seen
    assert content == env.read(CONFIG_PATH)
    assert port_mode == 0o600
    assert running is False
    assert database_section(env) == {"name": "psycopg2", "args": expected_args()}
    assert env.host_path(SQLITE_PATH).read_bytes() == sqlite_before
    assert not env.host_path(PORT_CONFIG_PATH).exists()
    assert record(out) == DatabaseRecord(source=f"{DATABASE_ENDPOINT}:{relation.id}", use=C_DATABASE, state="ready")
    assert service(out) == ACTIVE

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.update_status(), env.ready(out))
    assert effects.nothing, effects
    assert execs_run(env) == []
    assert out.unit_status == ops.ActiveStatus()


def test_pending_background_updates_wait_with_synapse_untouched(env: CharmEnv) -> None:
    state = on_sqlite(env)
    before = env.read(CONFIG_PATH)
    relation = database_relation(provider_data())
    state = with_execs(with_relations(state, relation), collation(), pending_updates(3), porter())

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_changed(relation), state)

    assert out.unit_status == ops.WaitingStatus(
        "waiting for Synapse to finish 3 background updates on SQLite before moving to PostgreSQL"
    )
    assert effects.pebble.calls == []
    assert effects.pushes == []
    assert commands(execs_run(env)) == ["prepare", "pending"]
    assert env.read(CONFIG_PATH) == before
    assert record(out) is None
    assert service(out) == ACTIVE

    # Synapse finished them: the next hook ports.
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.update_status(), with_execs(out, collation(), pending_updates(0), porter()))
    assert effects.pebble.calls == [("stop", (SERVICE_NAME,)), ("replan", ())]
    assert commands(execs_run(env)) == ["prepare", "pending", "port"]
    assert database_section(env)["name"] == "psycopg2"


def test_unreadable_sqlite_blocks_without_stopping(env: CharmEnv) -> None:
    state = on_sqlite(env)
    failing = testing.Exec(
        ["python", "-c", postgres_setup._PENDING_UPDATES_SCRIPT],
        return_code=1,
        stderr="sqlite3.DatabaseError: file is not a database\n",
    )
    state = with_execs(with_relations(state, database_relation(provider_data())), collation(), failing, porter())

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.config_changed(), state)

    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert (
        "reading the SQLite database failed: sqlite3.DatabaseError: file is not a database" in out.unit_status.message
    )
    assert effects.pebble.calls == []
    assert commands(execs_run(env)) == ["prepare", "pending"]


def port_failed(env: CharmEnv) -> tuple[testing.State, str]:
    """A unit on SQLite whose port failed; and the SQLite homeserver.yaml."""
    state = on_sqlite(env)
    before = env.read(CONFIG_PATH)
    relation = database_relation(provider_data())
    state = with_execs(with_relations(state, relation), collation(), pending_updates(0), porter(1, PORT_REFUSED))
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_changed(relation), state)
    assert effects.pebble.calls == [("stop", (SERVICE_NAME,)), ("replan", ())]
    return out, before


def test_failed_port_leaves_synapse_on_sqlite_and_blocks(env: CharmEnv) -> None:
    out, before = port_failed(env)

    assert env.read(CONFIG_PATH) == before
    assert database_section(env)["name"] == "sqlite3"
    assert service(out) == ACTIVE
    assert env.host_path(SQLITE_PATH).exists()
    assert not env.host_path(PORT_CONFIG_PATH).exists()
    assert isinstance(out.unit_status, ops.BlockedStatus)
    reason = "porting SQLite to PostgreSQL failed: psycopg2.errors.InsufficientPrivilege: permission denied for schema public Failed to port: permission denied for schema public"  # noqa: E501
    assert out.unit_status.message.startswith(reason)
    assert "Synapse keeps running on SQLite" in out.unit_status.message
    assert "remove and re-add the database relation to retry" in out.unit_status.message
    assert record(out) == DatabaseRecord(
        source=f"{DATABASE_ENDPOINT}:{relation_on(out, DATABASE_ENDPOINT).id}",
        use=C_DATABASE,
        state="port-failed",
        reason=reason,
    )


def test_failed_port_is_not_retried_on_the_next_hooks(env: CharmEnv) -> None:
    out, before = port_failed(env)
    execs_run(env)

    with record_side_effects() as effects:
        for event in (env.ctx.on.update_status(), env.ctx.on.config_changed()):
            out = env.run(event, env.ready(out))

    assert effects.pebble.calls == []
    assert execs_run(env) == []
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "porting SQLite to PostgreSQL failed" in out.unit_status.message
    assert env.read(CONFIG_PATH) == before
    assert service(out) == ACTIVE


def test_relating_again_retries_the_port(env: CharmEnv) -> None:
    out, _ = port_failed(env)
    execs_run(env)
    again = database_relation(provider_data())
    assert again.id != relation_on(out, DATABASE_ENDPOINT).id
    state = with_execs(with_relations(env.ready(out), again), collation(), pending_updates(0), porter())

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_changed(again), state)

    assert effects.pebble.calls == [("stop", (SERVICE_NAME,)), ("replan", ())]
    assert commands(execs_run(env)) == ["prepare", "pending", "port"]
    assert database_section(env) == {"name": "psycopg2", "args": expected_args()}
    assert record(out) == DatabaseRecord(source=f"{DATABASE_ENDPOINT}:{again.id}", use=C_DATABASE, state="ready")


def test_removing_the_relation_after_a_failed_port_keeps_synapse_on_sqlite(env: CharmEnv) -> None:
    out, before = port_failed(env)
    relation = relation_on(out, DATABASE_ENDPOINT)

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_broken(relation), env.ready(out))

    assert effects.pebble.calls == []
    assert service(out) == ACTIVE
    assert env.read(CONFIG_PATH) == before


# --- relation removed -------------------------------------------------------------------------


def test_relation_removed_stops_synapse_and_blocks(env: CharmEnv) -> None:
    out = on_postgresql(env)
    relation = relation_on(out, DATABASE_ENDPOINT)

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_broken(relation), out)

    assert effects.pebble.calls == [("stop", (SERVICE_NAME,))]
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert out.unit_status.message.startswith(REMOVED)
    assert f"juju integrate {APP} postgresql-k8s" in out.unit_status.message
    assert service(out) != ACTIVE
    assert not env.host_path(SQLITE_PATH).exists()

    # Juju forgets the relation; later hooks keep Synapse stopped.
    out = with_relations(out)
    with record_side_effects() as effects:
        for event in (env.ctx.on.update_status(), env.ctx.on.config_changed(), env.ctx.on.upgrade_charm()):
            out = env.run(event, out)
    assert effects.pebble.calls == []
    assert out.unit_status.message.startswith(REMOVED)
    assert database_section(env)["name"] == "psycopg2"
    assert not env.host_path(SQLITE_PATH).exists()


def test_legacy_relation_removed_stops_synapse(env: CharmEnv) -> None:
    relation = legacy_relation(answered=False)
    joined = env.run(
        env.ctx.on.relation_joined(relation, remote_unit=0), with_execs(env.state(relations={relation}), collation())
    )
    answered = dataclasses.replace(relation_on(joined, LEGACY_DB_ENDPOINT), remote_units_data={0: legacy_server_data()})
    out = env.run(env.ctx.on.relation_changed(answered, remote_unit=0), with_relations(joined, answered))
    assert service(out) == ACTIVE

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_broken(answered), out)

    assert effects.pebble.calls == [("stop", (SERVICE_NAME,))]
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert out.unit_status.message.startswith(REMOVED)


def test_fresh_unit_of_an_app_on_postgresql_does_not_start_on_sqlite(env: CharmEnv) -> None:
    leader = on_postgresql(env)
    peer = relation_on(leader, PEER_RELATION)
    fresh_dir = env.new_data_dir()
    state = dataclasses.replace(
        with_relations(leader),
        containers=frozenset({env.container(data_dir=fresh_dir)}),
    )
    assert peer in state.relations

    with record_side_effects() as effects:
        out = env.pebble_ready(state)

    assert effects.pebble.calls == []
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert out.unit_status.message.startswith(REMOVED)
    assert service(out) is None
    assert not (fresh_dir / CONFIG_PATH.relative_to("/data")).exists()
    assert not (fresh_dir / SQLITE_PATH.relative_to("/data")).exists()


def test_restarted_pod_without_the_relation_stays_stopped(env: CharmEnv) -> None:
    out = on_postgresql(env)
    container = dataclasses.replace(
        out.get_container(CONTAINER_NAME), service_statuses={SERVICE_NAME: ops.pebble.ServiceStatus.INACTIVE}
    )
    state = dataclasses.replace(with_relations(out), containers=frozenset({container}))

    with record_side_effects() as effects:
        out = env.pebble_ready(state)

    assert effects.pebble.calls == []
    assert out.unit_status.message.startswith(REMOVED)


# --- changes while running on PostgreSQL -------------------------------------------------------


def test_endpoint_change_rerenders_and_restarts_once(env: CharmEnv) -> None:
    out = on_postgresql(env)
    moved = with_remote_data(out, DATABASE_ENDPOINT, provider_data(endpoints="10.152.183.40:5432,10.152.183.41:5432"))

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_changed(relation_on(moved, DATABASE_ENDPOINT)), moved)
        out = env.run(env.ctx.on.update_status(), env.ready(out))

    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]
    assert effects.pushes == [str(CONFIG_PATH)]
    assert database_section(env)["args"] == expected_args(host="10.152.183.40")
    assert execs_run(env) == []  # the database itself was prepared already
    assert out.unit_status == ops.ActiveStatus()


def test_credential_rotation_restarts_once(env: CharmEnv) -> None:
    secret = credentials_secret()
    data = provider_data(username=None, password=None, **{"secret-user": secret.id})
    out = on_postgresql(env, database_relation(data), secrets={secret})
    (tracked,) = [s for s in out.secrets if s.id == secret.id]
    rotated = dataclasses.replace(tracked, latest_content={"username": DB_USER, "password": NEW_PASSWORD})
    state = dataclasses.replace(out, secrets=frozenset({*(s for s in out.secrets if s.id != secret.id), rotated}))

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.secret_changed(rotated), state)
        out = env.run(env.ctx.on.update_status(), env.ready(out))

    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]
    assert database_section(env)["args"] == expected_args(password=NEW_PASSWORD)
    assert PASSWORD not in env.read(CONFIG_PATH)
    assert execs_run(env) == []


def test_no_op_hooks_change_nothing(env: CharmEnv) -> None:
    secret = credentials_secret()
    data = provider_data(username=None, password=None, **{"secret-user": secret.id})
    out = on_postgresql(env, database_relation(data), secrets={secret})
    relation = relation_on(out, DATABASE_ENDPOINT)
    files = env.read(CONFIG_PATH)

    with record_side_effects() as effects:
        for event in (
            env.ctx.on.update_status(),
            env.ctx.on.config_changed(),
            env.ctx.on.relation_changed(relation),
            env.ctx.on.secret_changed(secret),
            env.ctx.on.leader_elected(),
            env.ctx.on.upgrade_charm(),
            env.ctx.on.pebble_ready(out.get_container(CONTAINER_NAME)),
            env.ctx.on.update_status(),
        ):
            out = env.run(event, out)

    assert effects.pebble.calls == []
    assert effects.pushes == []
    assert effects.layers == []
    assert effects.relation_writes == []
    assert execs_run(env) == []
    assert env.read(CONFIG_PATH) == files
    assert out.unit_status == ops.ActiveStatus()


def test_legacy_no_op_hooks_change_nothing(env: CharmEnv) -> None:
    out, _ = running_on_legacy_db(env)

    with record_side_effects() as effects:
        for event in (env.ctx.on.update_status(), env.ctx.on.config_changed(), env.ctx.on.upgrade_charm()):
            out = env.run(event, out)

    assert effects.nothing, effects
    assert execs_run(env) == []
    assert out.unit_status == ops.ActiveStatus()


# --- pool settings ----------------------------------------------------------------------------


def test_pool_settings_from_config(env: CharmEnv) -> None:
    out = on_postgresql(env, config={"database_pool_min": 2, "database_pool_max": 25})

    assert database_section(env)["args"] == expected_args(cp_min=2, cp_max=25)

    with record_side_effects() as effects:
        env.run(env.ctx.on.config_changed(), env.with_config(out, database_pool_max=40))
    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]
    assert database_section(env)["args"] == expected_args(cp_min=2, cp_max=40)


def test_pool_min_above_max_blocks_naming_both_options(env: CharmEnv) -> None:
    out = on_postgresql(env)
    before = env.read(CONFIG_PATH)

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.config_changed(), env.with_config(out, database_pool_min=30, database_pool_max=20))

    assert isinstance(out.unit_status, ops.BlockedStatus)
    message = out.unit_status.message
    assert "database_pool_min=30" in message and "database_pool_max=20" in message
    assert f"juju config {APP} database_pool_min=... database_pool_max=..." in message
    assert effects.pebble.calls == []
    assert env.read(CONFIG_PATH) == before
    assert service(out) == ACTIVE


# --- credentials stay private ---------------------------------------------------------------


def test_credentials_never_in_the_plan_logs_or_readable_files(env: CharmEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = credentials_secret()
    relation = database_relation()
    state = on_sqlite(env)
    state = dataclasses.replace(state, secrets=frozenset({*state.secrets, secret}))

    # Relate, answer with a secret, port (first refused), relate again, rotate, remove.
    out = env.run(
        env.ctx.on.relation_created(relation),
        with_execs(with_relations(state, relation), collation(), pending_updates(), porter(1, PORT_REFUSED)),
    )
    answered = with_remote_data(
        out, DATABASE_ENDPOINT, provider_data(username=None, password=None, **{"secret-user": secret.id})
    )
    out = env.run(env.ctx.on.relation_changed(relation_on(answered, DATABASE_ENDPOINT)), answered)
    assert isinstance(out.unit_status, ops.BlockedStatus)
    again = database_relation(dict(relation_on(out, DATABASE_ENDPOINT).remote_app_data))
    out = env.run(
        env.ctx.on.relation_changed(again),
        with_execs(with_relations(out, again), collation(), pending_updates(), porter()),
    )
    assert database_section(env)["args"]["password"] == PASSWORD
    config_mode = mode(env, CONFIG_PATH)
    (tracked,) = [s for s in out.secrets if s.id == secret.id]
    rotated = dataclasses.replace(tracked, latest_content={"username": DB_USER, "password": NEW_PASSWORD})
    out = env.run(
        env.ctx.on.secret_changed(rotated),
        dataclasses.replace(out, secrets=frozenset({*(s for s in out.secrets if s.id != secret.id), rotated})),
    )
    assert database_section(env)["args"]["password"] == NEW_PASSWORD
    plan = out.get_container(CONTAINER_NAME).plan.to_dict()
    out = env.run(env.ctx.on.relation_broken(relation_on(out, DATABASE_ENDPOINT)), env.ready(out))
    assert out.unit_status.message.startswith(REMOVED)

    assert config_mode == 0o600
    assert mode(env, CONFIG_PATH) == 0o600
    logged = [record.getMessage() for record in caplog.records] + [line.message for line in env.ctx.juju_log]
    assert any("requesting database" in line for line in logged)  # the logs were captured
    for password in (PASSWORD, NEW_PASSWORD):
        assert password not in json.dumps(plan)
        assert all(password not in line for line in logged)
        assert all(password not in status.message for status in env.ctx.unit_status_history)
    # The files that hold it are private; no other file under /data does.
    for path in env.data_dir.rglob("*"):
        if path.is_file() and NEW_PASSWORD in path.read_text(errors="replace"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
