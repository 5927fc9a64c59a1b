"""The legacy `db` endpoint (pgsql) through ops-lib-pgsql, against recorded server shapes.

ops-lib-pgsql shares the leader's request with the other units through Juju leadership
settings (`leader-get`/`leader-set`), which ops.testing does not provide: the tests
substitute the library's two helpers with an in-memory store that persists across hooks.
The server side follows the pgsql protocol: it mirrors our `database`/`roles`/
`extensions`, lists the `allowed-subnets` and publishes `master` (and `standbys`).
"""

import dataclasses
import typing

import ops
import pgsql.client
import pytest
import yaml
from ops import testing

from database import DatabaseEndpoint
from legacy_db import LEGACY_DB_ENDPOINT, LEGACY_ROLES, LegacyDatabaseRequires, endpoint_from_conninfo, parse_conninfo
from state import InvalidStateError

DB_NAME = "synapse"
RELATION_ID = 3
# Juju's view of our unit: the server must list our egress subnet in allowed-subnets.
OUR_EGRESS = "10.1.5.6/32"
OUR_UNIT_DATA = {"egress-subnets": OUR_EGRESS, "ingress-address": "10.1.5.6", "private-address": "10.1.5.6"}
MASTER = "dbname=synapse host=10.1.36.7 password=Xq8-secret port=5432 user=relation_id_3"

META: dict[str, typing.Any] = {
    "name": "synapse",
    "requires": {LEGACY_DB_ENDPOINT: {"interface": "pgsql", "limit": 1, "optional": True}},
    "peers": {"synapse-peers": {"interface": "synapse_peers"}},
}


class LegacyCharm(ops.CharmBase):
    """A minimal charm reconciling on the library's events the way the Synapse charm does."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.db = LegacyDatabaseRequires(self)
        self.result: DatabaseEndpoint | None = None
        for event in (*self.db.events, self.on.update_status):
            framework.observe(event, self._reconcile)

    def _reconcile(self, _: ops.EventBase) -> None:
        self.db.publish_request(DB_NAME)
        try:
            self.result = self.db.endpoint()
        except InvalidStateError as exc:
            self.unit.status = ops.BlockedStatus(str(exc))
            return
        if self.result is None:
            self.unit.status = ops.WaitingStatus("waiting for the database")
        else:
            self.unit.status = ops.ActiveStatus(self.result.describe())


@dataclasses.dataclass
class LeaderSettings:
    """Juju leadership settings, in memory: what `leader-get`/`leader-set` would see."""

    values: dict[str, str] = dataclasses.field(default_factory=dict)
    sets: int = 0

    def get(self, attribute: str) -> str | None:
        return self.values.get(attribute)

    def set(self, settings: dict[str, str]) -> None:
        self.sets += 1
        for key, value in settings.items():
            if value:
                self.values[key] = value
            else:
                self.values.pop(key, None)

    def request(self, relation_id: int = RELATION_ID) -> dict[str, str]:
        """The request the library shared with non-leaders for a relation."""
        return yaml.safe_load(self.values.get(pgsql.client.LEADER_KEY) or "{}").get(relation_id, {})


@pytest.fixture
def leader_settings(monkeypatch: pytest.MonkeyPatch) -> LeaderSettings:
    store = LeaderSettings()
    monkeypatch.setattr(pgsql.client, "_leader_get", store.get)
    monkeypatch.setattr(pgsql.client, "_leader_set", store.set)
    return store


@dataclasses.dataclass
class Run:
    state: testing.State
    result: DatabaseEndpoint | None
    relation_sets: list[dict[str, str]]

    @property
    def status(self) -> ops.StatusBase:
        return typing.cast(ops.StatusBase, self.state.unit_status)

    @property
    def relation(self) -> testing.Relation:
        relation = self.state.get_relation(RELATION_ID)
        assert isinstance(relation, testing.Relation)
        return relation

    @property
    def app_data(self) -> dict[str, str]:
        """Our app databag on the relation."""
        return dict(typing.cast(typing.Mapping[str, str], self.relation.local_app_data))

    @property
    def unit_data(self) -> dict[str, str]:
        """Our unit databag on the relation."""
        return dict(typing.cast(typing.Mapping[str, str], self.relation.local_unit_data))


def run(state: testing.State, event: typing.Callable[[testing.Context[LegacyCharm]], typing.Any]) -> Run:
    """Run one hook, recording every relation-set the charm (or the library) makes."""
    ctx = testing.Context(LegacyCharm, meta=META)
    with ctx(event(ctx), state) as manager:
        backend = manager.charm.model._backend
        sets: list[dict[str, str]] = []
        original = backend.relation_set

        def recording_relation_set(*args: typing.Any, **kwargs: typing.Any) -> None:
            sets.append(dict(kwargs.get("data") or args[1]))
            original(*args, **kwargs)

        backend.relation_set = recording_relation_set  # type: ignore[method-assign]
        out = manager.run()
        return Run(out, manager.charm.result, sets)


def server_data(
    request: dict[str, str],
    master: str = MASTER,
    allowed_subnets: str = f"10.0.0.0/8, {OUR_EGRESS}",
    standbys: str = "",
) -> dict[str, str]:
    """What a pgsql server unit writes once it has acted on `request`."""
    data = {
        "database": request.get("database", ""),
        "roles": request.get("roles", ""),
        "extensions": request.get("extensions", ""),
        "allowed-subnets": allowed_subnets,
        "master": master,
        "standbys": standbys,
        "version": "14",
    }
    return {key: value for key, value in data.items() if value}


def new_relation(**kwargs: typing.Any) -> testing.Relation:
    return testing.Relation(
        LEGACY_DB_ENDPOINT,
        interface="pgsql",
        id=RELATION_ID,
        remote_app_name="postgresql-k8s",
        local_unit_data=dict(OUR_UNIT_DATA),
        **kwargs,
    )


def joined(leader: bool = True) -> Run:
    relation = new_relation()
    return run(
        testing.State(leader=leader, relations=frozenset({relation})),
        lambda ctx: ctx.on.relation_joined(relation, remote_unit=0),
    )


def server_answers(previous: Run, **server: typing.Any) -> Run:
    """The next hook: relation-changed after the server wrote its unit data."""
    relation = dataclasses.replace(previous.relation, remote_units_data={0: server_data(**server)})
    state = dataclasses.replace(previous.state, relations=frozenset({relation}))
    return run(state, lambda ctx: ctx.on.relation_changed(relation, remote_unit=0))


def test_leader_requests_database_and_createdb_role(leader_settings: LeaderSettings) -> None:
    first = joined()

    assert first.app_data == {"database": DB_NAME, "roles": LEGACY_ROLES}
    # The library mirrors the request for old servers and for the other units.
    assert first.unit_data["database"] == DB_NAME
    assert first.unit_data["roles"] == LEGACY_ROLES
    assert leader_settings.request() == {"database": DB_NAME, "roles": LEGACY_ROLES, "extensions": ""}
    assert first.result is None
    assert first.status == ops.WaitingStatus("waiting for the database")


def test_ready_master_becomes_the_endpoint(leader_settings: LeaderSettings) -> None:
    first = joined()

    answered = server_answers(first, request=first.app_data)

    assert answered.result == DatabaseEndpoint(
        host="10.1.36.7",
        port=5432,
        user="relation_id_3",
        password="Xq8-secret",
        database=DB_NAME,
    )
    assert answered.status == ops.ActiveStatus("relation_id_3@10.1.36.7:5432/synapse")


def test_non_leader_uses_the_leaders_request(leader_settings: LeaderSettings) -> None:
    leader = joined()
    request = leader.app_data

    follower = joined(leader=False)
    # The library copies the leader's request into the follower's unit data; the app data is the leader's.
    assert follower.unit_data["database"] == DB_NAME
    assert follower.unit_data["roles"] == LEGACY_ROLES
    assert follower.app_data == {}
    answered = server_answers(follower, request=request)

    assert answered.result is not None
    assert answered.result.user == "relation_id_3"


def test_server_data_in_the_app_databag_works_too(leader_settings: LeaderSettings) -> None:
    first = joined()
    relation = dataclasses.replace(
        first.relation, remote_app_data=server_data(first.app_data), remote_units_data={0: {}}
    )
    answered = run(
        dataclasses.replace(first.state, relations=frozenset({relation})),
        lambda ctx: ctx.on.relation_changed(relation, remote_unit=0),
    )

    assert answered.result is not None
    assert answered.result.database == DB_NAME


@pytest.mark.parametrize(
    "server",
    [
        pytest.param({"request": {"database": DB_NAME}}, id="roles-not-mirrored"),
        pytest.param({"request": {"database": "other", "roles": LEGACY_ROLES}}, id="other-database"),
        pytest.param(
            {"request": {"database": DB_NAME, "roles": LEGACY_ROLES}, "allowed_subnets": "10.0.0.0/8"},
            id="egress-not-allowed",
        ),
        pytest.param({"request": {"database": DB_NAME, "roles": LEGACY_ROLES}, "master": ""}, id="no-master"),
    ],
)
def test_not_ready_is_none(leader_settings: LeaderSettings, server: dict[str, typing.Any]) -> None:
    answered = server_answers(joined(), **server)

    assert answered.result is None
    assert answered.status == ops.WaitingStatus("waiting for the database")


def test_master_change_is_followed(leader_settings: LeaderSettings) -> None:
    first = joined()
    request = first.app_data
    answered = server_answers(first, request=request)

    moved = server_answers(answered, request=request, master=MASTER.replace("10.1.36.7", "10.1.36.8"))

    assert moved.result is not None
    assert moved.result.host == "10.1.36.8"


def test_tls_and_standbys(leader_settings: LeaderSettings) -> None:
    first = joined()
    answered = server_answers(
        first,
        request=first.app_data,
        master=MASTER + " sslmode=require",
        standbys="host=10.1.36.9 port=5432 dbname=synapse\nhost=fd00::9 dbname=synapse\n",
    )

    assert answered.result is not None
    assert answered.result.tls is True
    assert answered.result.read_only_hosts == ("10.1.36.9:5432", "[fd00::9]:5432")


def test_standby_without_host_blocks(leader_settings: LeaderSettings) -> None:
    first = joined()
    answered = server_answers(first, request=first.app_data, standbys="port=5432 dbname=synapse")

    assert isinstance(answered.status, ops.BlockedStatus)
    assert "a standby connection string lacks host" in answered.status.message


def test_relation_accessors_and_empty_name(leader_settings: LeaderSettings) -> None:
    ctx = testing.Context(LegacyCharm, meta=META)
    relation = new_relation()
    with ctx(ctx.on.update_status(), testing.State(leader=True, relations={relation})) as manager:
        db = manager.charm.db
        assert db.is_related()
        assert db.relation is not None
        assert db.relation.id == RELATION_ID
        with pytest.raises(ValueError, match="must not be empty"):
            db.publish_request("")
    with ctx(ctx.on.update_status(), testing.State(leader=True)) as manager:
        assert not manager.charm.db.is_related()
        assert manager.charm.db.relation is None
        assert manager.charm.db.endpoint() is None


def test_relation_broken_is_none(leader_settings: LeaderSettings) -> None:
    first = joined()
    answered = server_answers(first, request=first.app_data)

    broken = run(answered.state, lambda ctx: ctx.on.relation_broken(answered.relation))

    assert broken.result is None
    assert broken.status == ops.WaitingStatus("waiting for the database")


def test_no_op_reconcile_writes_nothing(leader_settings: LeaderSettings) -> None:
    first = joined()
    answered = server_answers(first, request=first.app_data)
    sets_before = leader_settings.sets

    again = run(answered.state, lambda ctx: ctx.on.update_status())
    changed_again = run(answered.state, lambda ctx: ctx.on.relation_changed(answered.relation, remote_unit=0))

    assert again.relation_sets == []
    assert changed_again.relation_sets == []
    assert leader_settings.sets == sets_before
    assert again.result == answered.result


def test_non_leader_publish_writes_nothing(leader_settings: LeaderSettings) -> None:
    relation = new_relation()
    follower = run(testing.State(leader=False, relations=frozenset({relation})), lambda ctx: ctx.on.update_status())

    assert follower.relation_sets == []
    assert leader_settings.sets == 0


@pytest.mark.parametrize(
    ("master", "reason"),
    [
        ("nonsense", "expected '=' after the keyword"),
        ("host=pg port=notaport dbname=synapse user=u password=p", "is not a port number"),
        ("host=pg dbname=synapse user=u", "lacks password"),
        ("port=5432 dbname=synapse user=u password=p", "lacks host"),
        ("host=pg dbname=synapse user=u password='unterminated", "is not terminated"),
        ("host=bad_host! dbname=synapse user=u password=p", "not a valid host name"),
        ("host=pg dbname=synapse user=u password='p'x", "unexpected text after the quoted value"),
        ("=5432 host=pg", "expected keyword=value"),
    ],
)
def test_malformed_master_blocks(leader_settings: LeaderSettings, master: str, reason: str) -> None:
    first = joined()

    answered = server_answers(first, request=first.app_data, master=master)

    assert answered.result is None
    assert isinstance(answered.status, ops.BlockedStatus)
    assert "postgresql-k8s sent an invalid connection string on the db relation" in answered.status.message
    assert reason in answered.status.message


def test_malformed_master_never_echoes_the_password(leader_settings: LeaderSettings) -> None:
    first = joined()

    answered = server_answers(first, request=first.app_data, master="host=pg user=u password=two words dbname=x")

    assert isinstance(answered.status, ops.BlockedStatus)
    assert "words" not in answered.status.message
    assert "two" not in answered.status.message


def test_two_related_applications_block(leader_settings: LeaderSettings) -> None:
    first = new_relation()
    second = testing.Relation(LEGACY_DB_ENDPOINT, interface="pgsql", id=4, remote_app_name="old-pg")
    blocked = run(testing.State(leader=True, relations={first, second}), lambda ctx: ctx.on.update_status())

    assert isinstance(blocked.status, ops.BlockedStatus)
    assert "several applications (old-pg, postgresql-k8s)" in blocked.status.message


# The libpq connection-string parser


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host=pg port=5432", {"host": "pg", "port": "5432"}),
        ("  host = pg   port=  5432 ", {"host": "pg", "port": "5432"}),
        ("password='two words'", {"password": "two words"}),
        (r"password='it\'s'", {"password": "it's"}),
        (r"password='back\\slash'", {"password": "back\\slash"}),
        (r"password=un\ quoted", {"password": "un quoted"}),
        ("password=''", {"password": ""}),
        ("password=", {"password": ""}),
        ("user=a user=b", {"user": "b"}),
        ("", {}),
    ],
)
def test_parse_conninfo(text: str, expected: dict[str, str]) -> None:
    assert parse_conninfo(text) == expected


def test_endpoint_from_conninfo_defaults_the_port_and_unquotes() -> None:
    endpoint = endpoint_from_conninfo(r"host=pg.example dbname='my db' user=relation_id_3 password='a b\'c'")

    assert (endpoint.host, endpoint.port, endpoint.database, endpoint.password) == (
        "pg.example",
        5432,
        "my db",
        "a b'c",
    )
    assert endpoint.tls is False


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("host", "expected '=' after the keyword at character 1"),
        ("host=pg\\", "ends with a lone backslash"),
        ("host='pg", "is not terminated"),
        ("1host=pg", "expected keyword=value at character 1"),
    ],
)
def test_parse_conninfo_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_conninfo(text)
