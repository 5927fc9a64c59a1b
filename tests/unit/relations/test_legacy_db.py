"""The legacy `db` endpoint (pgsql) through ops-lib-pgsql, against recorded server shapes.

ops-lib-pgsql shares the leader's request with the other units through what it calls
leadership settings; LegacyDatabaseRequires keeps them in the peer relation's application
data (no leader-get/leader-set hook tools), so the tests carry that databag between hooks.
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

from relations.database import DatabaseEndpoint
from relations.legacy_db import (
    LEGACY_DB_ENDPOINT,
    LEGACY_ROLES,
    LegacyDatabaseRequires,
    endpoint_from_conninfo,
    parse_conninfo,
)
from state import InvalidStateError
from tests.unit.conftest import run_recording_relation_sets

DB_NAME = "synapse"
RELATION_ID = 3
PEER_ID = 9
PEER_RELATION = "synapse-peers"
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

    @property
    def shared(self) -> dict[str, str]:
        """The peer relation's application databag, where the library's shared data lives."""
        peer = self.state.get_relation(PEER_ID)
        return dict(typing.cast(typing.Mapping[str, str], peer.local_app_data))

    def shared_request(self, relation_id: int = RELATION_ID) -> dict[str, str]:
        """The request the library shared with non-leaders for a relation."""
        return yaml.safe_load(self.shared.get(pgsql.client.LEADER_KEY) or "{}").get(relation_id, {})


def run(state: testing.State, event: typing.Callable[[testing.Context[LegacyCharm]], typing.Any]) -> Run:
    """Run one hook, recording every relation-set the charm (or the library) makes."""
    ctx = testing.Context(LegacyCharm, meta=META)
    out, charm, sets = run_recording_relation_sets(ctx, event(ctx), state)
    return Run(out, typing.cast(LegacyCharm, charm).result, sets)


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


def peer(shared: dict[str, str] | None = None) -> testing.PeerRelation:
    """The peer relation, with the shared (leader-written) application data."""
    return testing.PeerRelation(PEER_RELATION, id=PEER_ID, local_app_data=dict(shared or {}))


def joined(leader: bool = True, shared: dict[str, str] | None = None) -> Run:
    relation = new_relation()
    return run(
        testing.State(leader=leader, relations=frozenset({relation, peer(shared)})),
        lambda ctx: ctx.on.relation_joined(relation, remote_unit=0),
    )


def server_answers(previous: Run, **server: typing.Any) -> Run:
    """The next hook: relation-changed after the server wrote its unit data."""
    relation = dataclasses.replace(previous.relation, remote_units_data={0: server_data(**server)})
    return run(with_relation(previous.state, relation), lambda ctx: ctx.on.relation_changed(relation, remote_unit=0))


def with_relation(state: testing.State, relation: testing.Relation) -> testing.State:
    """`state` with `relation` replacing the one of the same ID (the peer relation is kept)."""
    others = {other for other in state.relations if other.id != relation.id}
    return dataclasses.replace(state, relations=frozenset({*others, relation}))


def test_leader_requests_database_and_createdb_role() -> None:
    first = joined()

    assert first.app_data == {"database": DB_NAME, "roles": LEGACY_ROLES}
    # The library mirrors the request for old servers and for the other units.
    assert first.unit_data["database"] == DB_NAME
    assert first.unit_data["roles"] == LEGACY_ROLES
    assert first.shared_request() == {"database": DB_NAME, "roles": LEGACY_ROLES, "extensions": ""}
    assert first.result is None
    assert first.status == ops.WaitingStatus("waiting for the database")


def test_ready_master_becomes_the_endpoint() -> None:
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


def test_non_leader_uses_the_leaders_request() -> None:
    leader = joined()
    request = leader.app_data

    follower = joined(leader=False, shared=leader.shared)
    # The library copies the leader's request into the follower's unit data; the app data is the leader's.
    assert follower.unit_data["database"] == DB_NAME
    assert follower.unit_data["roles"] == LEGACY_ROLES
    assert follower.app_data == {}
    answered = server_answers(follower, request=request)

    assert answered.result is not None
    assert answered.result.user == "relation_id_3"


def test_server_data_in_the_app_databag_works_too() -> None:
    first = joined()
    relation = dataclasses.replace(
        first.relation, remote_app_data=server_data(first.app_data), remote_units_data={0: {}}
    )
    answered = run(
        with_relation(first.state, relation),
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
def test_not_ready_is_none(server: dict[str, typing.Any]) -> None:
    answered = server_answers(joined(), **server)

    assert answered.result is None
    assert answered.status == ops.WaitingStatus("waiting for the database")


def test_master_change_is_followed() -> None:
    first = joined()
    request = first.app_data
    answered = server_answers(first, request=request)

    moved = server_answers(answered, request=request, master=MASTER.replace("10.1.36.7", "10.1.36.8"))

    assert moved.result is not None
    assert moved.result.host == "10.1.36.8"


def test_tls_and_standbys() -> None:
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


def test_standby_without_host_blocks() -> None:
    first = joined()
    answered = server_answers(first, request=first.app_data, standbys="port=5432 dbname=synapse")

    assert isinstance(answered.status, ops.BlockedStatus)
    assert "a standby connection string lacks host" in answered.status.message


def test_relation_accessors_and_empty_name() -> None:
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


def test_relation_broken_is_none() -> None:
    first = joined()
    answered = server_answers(first, request=first.app_data)

    broken = run(answered.state, lambda ctx: ctx.on.relation_broken(answered.relation))

    assert broken.result is None
    assert broken.status == ops.WaitingStatus("waiting for the database")


def test_no_op_reconcile_writes_nothing() -> None:
    first = joined()
    answered = server_answers(first, request=first.app_data)

    again = run(answered.state, lambda ctx: ctx.on.update_status())
    changed_again = run(answered.state, lambda ctx: ctx.on.relation_changed(answered.relation, remote_unit=0))

    assert again.relation_sets == []
    assert changed_again.relation_sets == []
    assert again.result == answered.result


def test_non_leader_publish_writes_nothing() -> None:
    relation = new_relation()
    follower = run(testing.State(leader=False, relations=frozenset({relation})), lambda ctx: ctx.on.update_status())

    assert follower.relation_sets == []


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
def test_malformed_master_blocks(master: str, reason: str) -> None:
    first = joined()

    answered = server_answers(first, request=first.app_data, master=master)

    assert answered.result is None
    assert isinstance(answered.status, ops.BlockedStatus)
    assert "postgresql-k8s sent an invalid connection string on the db relation" in answered.status.message
    assert reason in answered.status.message


def test_malformed_master_never_echoes_the_password() -> None:
    first = joined()

    answered = server_answers(first, request=first.app_data, master="host=pg user=u password=two words dbname=x")

    assert isinstance(answered.status, ops.BlockedStatus)
    assert "words" not in answered.status.message
    assert "two" not in answered.status.message


def test_two_related_applications_block() -> None:
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


# Shared data without Juju leadership settings


@pytest.mark.parametrize("event", ["leader_elected", "upgrade_charm"])
@pytest.mark.parametrize("related", [False, True], ids=["unrelated", "related"])
def test_leader_events_use_peer_data_not_the_leader_settings_hook_tools(event: str, related: bool) -> None:
    # The library handles these itself. Nothing substitutes leader-get/leader-set here, so a
    # call to them would raise (there is no such tool) and ops.testing would report it.
    relations = {peer(), new_relation()} if related else {peer()}
    out = run(testing.State(leader=True, relations=frozenset(relations)), lambda ctx: getattr(ctx.on, event)())

    if related:  # the library's per-relation mirror went to the peer relation
        assert set(yaml.safe_load(out.shared[pgsql.client.LEADER_KEY])) == {RELATION_ID}
    else:  # nothing to share: nothing written
        assert out.shared == {}
        assert out.relation_sets == []


def test_without_the_peer_relation_nothing_is_shared_and_nothing_fails() -> None:
    relation = new_relation()
    out = run(testing.State(leader=True, relations=frozenset({relation})), lambda ctx: ctx.on.update_status())

    assert out.app_data == {"database": DB_NAME, "roles": LEGACY_ROLES}
    assert out.result is None
