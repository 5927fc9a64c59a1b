"""Our postgresql_client (v0) requirer, against the real provider from dpcharmlibs-interfaces.

The provider side runs in its own ops.testing Context with a small provider charm built on
`ResourceProviderEventHandler`: our requirer's app databag becomes its remote app data,
and the databag and secrets it writes become our requirer's remote app data and secrets.
Recorded v0 shapes (plain credentials, several endpoints, malformed data) cover what the
library's provider does not produce.
"""

import dataclasses
import json
import typing
from collections.abc import Iterator

import ops
import pytest
from dpcharmlibs.interfaces import (
    RequirerCommonModel,
    ResourceProviderEventHandler,
    ResourceProviderModel,
    ResourceRequestedEvent,
)
from ops import testing

from relations.database import (
    DATABASE_ENDPOINT,
    REQUESTED_ROLES,
    REQUESTED_SECRETS,
    DatabaseEndpoint,
    DatabaseRequires,
    parse_host_port,
)
from state import InvalidStateError
from tests.unit.conftest import run_recording_relation_sets

DB_NAME = "synapse"
PROVIDER_APP = "postgresql-k8s"
REQUIRER_APP = "synapse"
RELATION_ID = 7
TEST_CA = "-----BEGIN CERTIFICATE-----\nMIIBfakeCAforTests\n-----END CERTIFICATE-----"

REQUIRER_META: dict[str, typing.Any] = {
    "name": REQUIRER_APP,
    "requires": {DATABASE_ENDPOINT: {"interface": "postgresql_client", "limit": 1, "optional": True}},
    "peers": {"synapse-peers": {"interface": "synapse_peers"}},
}
PROVIDER_META: dict[str, typing.Any] = {
    "name": PROVIDER_APP,
    "provides": {DATABASE_ENDPOINT: {"interface": "postgresql_client"}},
}
PROVIDER_CONFIG: dict[str, typing.Any] = {
    "options": {
        "endpoints": {"type": "string", "default": "postgresql-k8s-primary.db.svc.cluster.local:5432"},
        "read-only-endpoints": {"type": "string", "default": "postgresql-k8s-replicas.db.svc.cluster.local:5432"},
        "tls": {"type": "boolean", "default": False},
    }
}


class RequirerCharm(ops.CharmBase):
    """A minimal charm reconciling the way the Synapse charm does: request, then read."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.database = DatabaseRequires(self, DATABASE_ENDPOINT)
        self.result: DatabaseEndpoint | None = None
        endpoint_events = self.on[DATABASE_ENDPOINT]
        for event in (
            endpoint_events.relation_joined,
            endpoint_events.relation_changed,
            endpoint_events.relation_broken,
            self.on.secret_changed,
            self.on.update_status,
            self.on.leader_elected,
        ):
            framework.observe(event, self._reconcile)

    def _reconcile(self, _: ops.EventBase) -> None:
        self.database.publish_request(DB_NAME)
        try:
            self.result = self.database.endpoint()
        except InvalidStateError as exc:
            self.unit.status = ops.BlockedStatus(str(exc))
            return
        if self.result is None:
            self.unit.status = ops.WaitingStatus("waiting for the database")
        else:
            self.unit.status = ops.ActiveStatus(self.result.describe())


class ProviderCharm(ops.CharmBase):
    """A database charm answering with dpcharmlibs-interfaces' ResourceProviderEventHandler."""

    seen_requests: typing.ClassVar[list[RequirerCommonModel]] = []

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.provider = ResourceProviderEventHandler(self, DATABASE_ENDPOINT, RequirerCommonModel)
        framework.observe(self.provider.on.resource_requested, self._on_resource_requested)
        framework.observe(self.on.config_changed, self._on_config_changed)

    def _response(self, relation_id: int, database: str) -> ResourceProviderModel:
        tls = bool(self.config["tls"])
        return ResourceProviderModel(
            resource=database,
            username=f"relation_id_{relation_id}",
            password="provider-generated-Pa55",
            endpoints=str(self.config["endpoints"]),
            read_only_endpoints=str(self.config["read-only-endpoints"]),
            version="16.6",
            tls=tls,
            tls_ca=TEST_CA if tls else None,
        )

    def _on_resource_requested(self, event: ResourceRequestedEvent) -> None:
        type(self).seen_requests.append(event.request)
        self.provider.set_response(event.relation.id, self._response(event.relation.id, event.request.resource))

    def _on_config_changed(self, _: ops.ConfigChangedEvent) -> None:
        """Update the endpoints in place, as a database charm does when its topology changes."""
        for relation in self.model.relations[DATABASE_ENDPOINT]:
            repository = self.provider.interface.repository(relation.id)
            repository.write_field("endpoints", str(self.config["endpoints"]))
            repository.write_field("read-only-endpoints", str(self.config["read-only-endpoints"]))


@pytest.fixture(autouse=True)
def _fresh_provider_requests() -> Iterator[None]:
    ProviderCharm.seen_requests.clear()
    yield
    ProviderCharm.seen_requests.clear()


@dataclasses.dataclass
class RequirerRun:
    state: testing.State
    result: DatabaseEndpoint | None
    relation_sets: list[dict[str, str]]

    @property
    def status(self) -> ops.StatusBase:
        return typing.cast(ops.StatusBase, self.state.unit_status)

    def app_databag(self, relation_id: int = RELATION_ID) -> dict[str, str]:
        return local_app_data(self.state, relation_id)


def local_app_data(state: testing.State, relation_id: int = RELATION_ID) -> dict[str, str]:
    """The app databag this charm wrote on a relation."""
    relation = state.get_relation(relation_id)
    return dict(typing.cast(typing.Mapping[str, str], relation.local_app_data))


def run_requirer(
    state: testing.State,
    event: typing.Callable[[testing.Context[RequirerCharm]], typing.Any],
    juju_version: str = "3.6.4",
) -> RequirerRun:
    """Run one hook on the requirer, recording every relation-set it makes."""
    ctx = testing.Context(RequirerCharm, meta=REQUIRER_META, juju_version=juju_version)
    out, charm, sets = run_recording_relation_sets(ctx, event(ctx), state)
    return RequirerRun(out, typing.cast(RequirerCharm, charm).result, sets)


def requirer_relation(
    remote_app_data: dict[str, str] | None = None, local_app_data: dict[str, str] | None = None, relation_id: int = 7
) -> testing.Relation:
    return testing.Relation(
        DATABASE_ENDPOINT,
        interface="postgresql_client",
        id=relation_id,
        remote_app_name=PROVIDER_APP,
        remote_app_data=remote_app_data or {},
        local_app_data=local_app_data or {},
    )


def provider_answer(
    requirer_app_data: dict[str, str],
    previous: testing.State | None = None,
    config: dict[str, typing.Any] | None = None,
) -> testing.State:
    """Run the provider: a relation-changed with our request, or config-changed on a previous state."""
    ctx = testing.Context(ProviderCharm, meta=PROVIDER_META, config=PROVIDER_CONFIG)
    if previous is None:
        relation = testing.Relation(
            DATABASE_ENDPOINT,
            interface="postgresql_client",
            id=RELATION_ID,
            remote_app_name=REQUIRER_APP,
            remote_app_data=requirer_app_data,
        )
        state = testing.State(leader=True, relations={relation}, config=config or {})
        return ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    return ctx.run(ctx.on.config_changed(), dataclasses.replace(previous, config=config or {}))


def as_seen_by_requirer(
    provider_state: testing.State, requirer_app_data: dict[str, str], leader: bool = True
) -> tuple[testing.State, testing.Relation]:
    """The requirer's state with the provider's databag and the secrets it granted us."""
    provider_databag = local_app_data(provider_state)
    secrets = {
        testing.Secret(secret.latest_content, id=secret.id)
        for secret in provider_state.secrets
        if RELATION_ID in secret.remote_grants
    }
    relation = requirer_relation(provider_databag, requirer_app_data if leader else {})
    return testing.State(leader=leader, relations={relation}, secrets=secrets), relation


def requirer_sees(provider_state: testing.State, requirer_app_data: dict[str, str], leader: bool = True) -> RequirerRun:
    """Run the requirer's relation-changed on the provider's answer."""
    state, relation = as_seen_by_requirer(provider_state, requirer_app_data, leader)
    return run_requirer(state, lambda ctx: ctx.on.relation_changed(relation, remote_unit=0))


def requested(leader_run: RequirerRun) -> dict[str, str]:
    """Our request as the provider sees it: the app databag we wrote."""
    return leader_run.app_databag()


def first_request() -> RequirerRun:
    """The leader's relation-joined: it publishes the request."""
    relation = requirer_relation()
    return run_requirer(testing.State(leader=True, relations={relation}), lambda ctx: ctx.on.relation_joined(relation))


# Round trips with the real provider


def test_request_is_the_v0_shape_the_provider_understands() -> None:
    run = first_request()

    assert run.app_databag() == {
        "database": DB_NAME,
        "extra-user-roles": REQUESTED_ROLES,
        "requested-secrets": json.dumps(list(REQUESTED_SECRETS)),
    }
    assert run.result is None
    assert run.status == ops.WaitingStatus("waiting for the database")

    provider_answer(requested(run))
    assert len(ProviderCharm.seen_requests) == 1
    request = ProviderCharm.seen_requests[0]
    assert request.resource == DB_NAME
    assert request.extra_user_roles == "createdb"


# postgresql-k8s 16 accepts exactly these `extra-user-roles` values and blocks on anything else;
# 14 lower-cases the comma-separated list and accepts the attributes createdb, createrole and
# superuser, or existing role names (canonical/postgresql-k8s-operator, June 2026).
TRACK_16_ACCEPTED = {
    "charmed_stats",
    "charmed_read",
    "charmed_dml",
    "charmed_admin",
    "createdb",
    "superuser",
    "charmed_admin,createdb",
}
TRACK_14_ATTRIBUTES = {"createdb", "createrole", "superuser"}


def test_requested_roles_are_accepted_by_both_tracks_and_grant_only_createdb() -> None:
    assert REQUESTED_ROLES in TRACK_16_ACCEPTED
    assert set(REQUESTED_ROLES.lower().split(",")) <= TRACK_14_ATTRIBUTES
    assert REQUESTED_ROLES == "createdb"  # the least the C-collated fallback database needs


def test_secret_based_answer_from_the_real_provider() -> None:
    run = first_request()
    provider = provider_answer(requested(run))
    databag = local_app_data(provider)
    assert "secret-user" in databag
    assert "username" not in databag
    assert "password" not in databag

    answered = requirer_sees(provider, requested(run))

    assert answered.result == DatabaseEndpoint(
        host="postgresql-k8s-primary.db.svc.cluster.local",
        port=5432,
        user=f"relation_id_{RELATION_ID}",
        password="provider-generated-Pa55",
        database=DB_NAME,
        tls=False,
        read_only_hosts=("postgresql-k8s-replicas.db.svc.cluster.local:5432",),
        version="16.6",
    )
    assert answered.status == ops.ActiveStatus(
        f"relation_id_{RELATION_ID}@postgresql-k8s-primary.db.svc.cluster.local:5432/synapse"
    )
    assert answered.relation_sets == []


def test_non_leader_reads_the_answer_without_writing() -> None:
    run = first_request()
    provider = provider_answer(requested(run))

    answered = requirer_sees(provider, requested(run), leader=False)

    assert answered.result is not None
    assert answered.result.user == f"relation_id_{RELATION_ID}"
    assert answered.relation_sets == []


def test_tls_from_the_real_provider() -> None:
    run = first_request()
    provider = provider_answer(requested(run), config={"tls": True})
    assert "secret-tls" in local_app_data(provider)

    answered = requirer_sees(provider, requested(run))

    assert answered.result is not None
    assert answered.result.tls is True
    assert answered.result.tls_ca == TEST_CA
    args = answered.result.synapse_args(cp_min=5, cp_max=10)
    assert args["sslmode"] == "require"
    assert answered.result.synapse_args(5, 10, sslrootcert="/data/ca.pem")["sslmode"] == "verify-ca"


def test_endpoint_change_from_the_real_provider() -> None:
    run = first_request()
    provider = provider_answer(requested(run))
    moved = provider_answer(requested(run), previous=provider, config={"endpoints": "10.1.2.3:5433,10.1.2.4:5433"})

    answered = requirer_sees(moved, requested(run))

    assert answered.result is not None
    assert (answered.result.host, answered.result.port) == ("10.1.2.3", 5433)
    assert answered.result.password == "provider-generated-Pa55"


def test_publish_twice_writes_nothing_the_second_time() -> None:
    run = first_request()
    assert run.relation_sets  # the first request did write

    again = run_requirer(run.state, lambda ctx: ctx.on.update_status())

    assert again.relation_sets == []
    assert again.app_databag() == run.app_databag()
    # The provider sees no new request either.
    provider_answer(requested(again))
    assert len(ProviderCharm.seen_requests) == 1


def test_publish_request_is_leader_only() -> None:
    relation = requirer_relation()
    run = run_requirer(testing.State(leader=False, relations={relation}), lambda ctx: ctx.on.relation_joined(relation))

    assert run.relation_sets == []
    assert run.result is None


def test_publish_request_rewrites_only_the_differing_key() -> None:
    stale = {
        "database": DB_NAME,
        "extra-user-roles": REQUESTED_ROLES,
        # Same list with other spacing: no rewrite for that key.
        "requested-secrets": json.dumps(list(REQUESTED_SECRETS), indent=1),
    }
    stale_roles = dict(stale, **{"extra-user-roles": "SUPERUSER"})
    garbled = dict(stale, **{"requested-secrets": "[not json"})
    run = run_requirer(
        testing.State(leader=True, relations={requirer_relation(local_app_data=stale_roles)}),
        lambda ctx: ctx.on.update_status(),
    )
    assert run.relation_sets == [{"extra-user-roles": REQUESTED_ROLES}]

    fixed = run_requirer(
        testing.State(leader=True, relations={requirer_relation(local_app_data=garbled)}),
        lambda ctx: ctx.on.update_status(),
    )
    assert fixed.relation_sets == [{"requested-secrets": json.dumps(list(REQUESTED_SECRETS))}]


def test_rotated_credentials_are_read_from_the_latest_revision() -> None:
    secret = testing.Secret(
        {"username": "relation_id_7", "password": "old"},
        latest_content={"username": "relation_id_7", "password": "rotated"},
    )
    relation = requirer_relation({"endpoints": "pg:5432", "secret-user": secret.id, "database": DB_NAME})

    run = run_requirer(
        testing.State(leader=False, relations={relation}, secrets={secret}), lambda ctx: ctx.on.secret_changed(secret)
    )

    assert run.result is not None
    assert run.result.password == "rotated"


# Recorded v0 shapes


PLAIN = {
    "endpoints": "postgresql-k8s-0.postgresql-k8s-endpoints:5432",
    "read-only-endpoints": "postgresql-k8s-1.postgresql-k8s-endpoints:5432",
    "username": "relation-7",
    "password": "plain-Pa55",
    "database": DB_NAME,
    "version": "14.12",
}


def reconcile_with(remote_app_data: dict[str, str], **state: typing.Any) -> RequirerRun:
    relation = requirer_relation(remote_app_data)
    return run_requirer(
        testing.State(leader=False, relations={relation}, **state),
        lambda ctx: ctx.on.relation_changed(relation, remote_unit=0),
    )


def test_plain_credentials() -> None:
    run = reconcile_with(PLAIN)

    assert run.result == DatabaseEndpoint(
        host="postgresql-k8s-0.postgresql-k8s-endpoints",
        port=5432,
        user="relation-7",
        password="plain-Pa55",
        database=DB_NAME,
        read_only_hosts=("postgresql-k8s-1.postgresql-k8s-endpoints:5432",),
        version="14.12",
    )


def test_multiple_endpoints_use_the_first_as_primary() -> None:
    run = reconcile_with(dict(PLAIN, endpoints=" 10.0.0.5:5432 , 10.0.0.6:5432,", **{"read-only-endpoints": ""}))

    assert run.result is not None
    assert (run.result.host, run.result.port) == ("10.0.0.5", 5432)


def test_ipv6_endpoint() -> None:
    run = reconcile_with(dict(PLAIN, endpoints="[FD00::1]:6432"))

    assert run.result is not None
    assert (run.result.host, run.result.port) == ("fd00::1", 6432)
    assert run.result.synapse_args(1, 2)["host"] == "fd00::1"


def test_plain_tls_flag() -> None:
    run = reconcile_with(dict(PLAIN, tls="True", **{"tls-ca": TEST_CA}))

    assert run.result is not None
    assert run.result.tls is True
    assert run.result.tls_ca == TEST_CA


def test_tls_secret_reporting_tls_off() -> None:
    secret = testing.Secret({"tls": "False"})
    run = reconcile_with(dict(PLAIN, **{"secret-tls": secret.id}), secrets={secret})

    assert run.result is not None
    assert run.result.tls is False
    assert "sslmode" not in run.result.synapse_args(1, 2)


@pytest.mark.parametrize(
    "partial",
    [
        pytest.param({}, id="nothing"),
        pytest.param({"endpoints": "pg:5432"}, id="endpoints-only"),
        pytest.param({"username": "u", "password": "p", "database": DB_NAME}, id="credentials-only"),
        pytest.param({"database": DB_NAME, "version": "16.6"}, id="no-credentials-no-endpoints"),
    ],
)
def test_not_answered_yet_is_none(partial: dict[str, str]) -> None:
    run = reconcile_with(partial)

    assert run.result is None
    assert run.status == ops.WaitingStatus("waiting for the database")


def test_relation_removed_is_none() -> None:
    relation = requirer_relation(PLAIN)
    run = run_requirer(testing.State(leader=True, relations={relation}), lambda ctx: ctx.on.relation_broken(relation))

    assert run.result is None
    assert run.status == ops.WaitingStatus("waiting for the database")


def test_no_relation_is_none() -> None:
    run = run_requirer(testing.State(leader=True), lambda ctx: ctx.on.update_status())

    assert run.result is None
    assert run.relation_sets == []


@pytest.mark.parametrize(
    ("endpoints", "reason"),
    [
        ("nohost", "has no port"),
        (":5432", "has no host"),
        ("h:notaport", "is not a port number"),
        ("", "lists no host:port"),
        (" , ", "lists no host:port"),
        ("h:0", "is not a port number"),
        ("h:65536", "is not a port number"),
        ("h:-1", "is not a port number"),
        ("bad_host!:5432", "not a valid host name"),
        ("300.1.1.1:5432", "not an IPv4 address"),
        ("[::1:5432", "is not [IPv6 address]:port"),
        ("[zz::1]:5432", "is not an IPv6 address"),
    ],
)
def test_garbage_endpoints_block_with_a_message(endpoints: str, reason: str) -> None:
    run = reconcile_with(dict(PLAIN, endpoints=endpoints))

    assert run.result is None
    assert isinstance(run.status, ops.BlockedStatus)
    assert f"{PROVIDER_APP} sent invalid endpoints" in run.status.message
    assert reason in run.status.message
    assert "plain-Pa55" not in run.status.message


def test_garbage_read_only_endpoints_block() -> None:
    run = reconcile_with(dict(PLAIN, **{"read-only-endpoints": "replica"}))

    assert isinstance(run.status, ops.BlockedStatus)
    assert "read-only-endpoints" in run.status.message


def test_missing_credentials_secret_blocks() -> None:
    run = reconcile_with({"endpoints": "pg:5432", "secret-user": "secret:cu2kd2hk0q1e3nj0o0ug", "database": DB_NAME})

    assert isinstance(run.status, ops.BlockedStatus)
    assert "database credentials secret" in run.status.message
    assert "no longer exists" in run.status.message


def test_secret_juju_refuses_to_read_blocks() -> None:
    """Juju answers secret-get with an error (here: a Juju without secrets), not "not found"."""
    secret = testing.Secret({"username": "u", "password": "p"})
    relation = requirer_relation({"endpoints": "pg:5432", "secret-user": secret.id, "database": DB_NAME})

    run = run_requirer(
        testing.State(leader=False, relations={relation}, secrets={secret}),
        lambda ctx: ctx.on.relation_changed(relation, remote_unit=0),
        juju_version="2.9.44",
    )

    assert isinstance(run.status, ops.BlockedStatus)
    assert "cannot read the database credentials secret" in run.status.message
    assert "remove and re-add the relation" in run.status.message


@pytest.mark.parametrize(
    ("content", "missing"),
    [
        ({"username": "u"}, "lacks password"),
        ({"password": "p"}, "lacks username"),
        ({"uris": "postgresql://x"}, "lacks username and password"),
    ],
)
def test_credentials_secret_missing_keys_blocks(content: dict[str, str], missing: str) -> None:
    secret = testing.Secret(content)
    run = reconcile_with({"endpoints": "pg:5432", "secret-user": secret.id, "database": DB_NAME}, secrets={secret})

    assert isinstance(run.status, ops.BlockedStatus)
    assert missing in run.status.message
    assert "credentials secret" in run.status.message


def test_plain_username_without_password_blocks() -> None:
    run = reconcile_with({"endpoints": "pg:5432", "username": "u", "database": DB_NAME})

    assert isinstance(run.status, ops.BlockedStatus)
    assert "lacks password" in run.status.message


def test_unreadable_tls_secret_blocks() -> None:
    run = reconcile_with(dict(PLAIN, **{"secret-tls": "secret:cu2kd2hk0q1e3nj0o0ug"}))

    assert isinstance(run.status, ops.BlockedStatus)
    assert "TLS secret" in run.status.message


def test_garbage_tls_flag_blocks() -> None:
    run = reconcile_with(dict(PLAIN, tls="maybe"))

    assert isinstance(run.status, ops.BlockedStatus)
    assert "tls flag" in run.status.message


def test_missing_database_name_uses_the_default_or_blocks() -> None:
    data = {key: value for key, value in PLAIN.items() if key != "database"}
    relation = requirer_relation(data)
    ctx = testing.Context(RequirerCharm, meta=REQUIRER_META)
    with ctx(ctx.on.update_status(), testing.State(leader=False, relations={relation})) as manager:
        requires = manager.charm.database
        endpoint = requires.endpoint(default_database="fallback")
        assert endpoint is not None
        assert endpoint.database == "fallback"
        with pytest.raises(InvalidStateError, match="no database name"):
            requires.endpoint()


def test_two_related_applications_block() -> None:
    first = requirer_relation(PLAIN, relation_id=7)
    second = testing.Relation(
        DATABASE_ENDPOINT, interface="postgresql_client", id=8, remote_app_name="other-pg", remote_app_data=PLAIN
    )
    run = run_requirer(testing.State(leader=True, relations={first, second}), lambda ctx: ctx.on.update_status())

    assert isinstance(run.status, ops.BlockedStatus)
    assert "several applications (other-pg, postgresql-k8s)" in run.status.message


# The endpoint model


def test_synapse_args_have_keepalives_and_pool_settings() -> None:
    endpoint = DatabaseEndpoint(host="pg", port=5432, user="u", password="p", database="synapse")

    assert endpoint.synapse_args(cp_min=5, cp_max=10) == {
        "user": "u",
        "password": "p",
        "dbname": "synapse",
        "host": "pg",
        "port": 5432,
        "cp_min": 5,
        "cp_max": 10,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }


def test_password_stays_out_of_repr_and_description() -> None:
    endpoint = DatabaseEndpoint(host="pg", port=5432, user="u", password="hunter2-secret", database="s")

    assert "hunter2-secret" not in repr(endpoint)
    assert "hunter2-secret" not in endpoint.describe()


def test_endpoint_is_frozen() -> None:
    endpoint = DatabaseEndpoint(host="pg", port=5432, user="u", password="p", database="s")

    with pytest.raises(ValueError, match="frozen"):
        endpoint.host = "other"  # type: ignore[misc]
    assert endpoint.model_copy(update={"database": "synapse_c"}).database == "synapse_c"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pg:5432", ("pg", 5432)),
        (" PG.Example.COM:1 ", ("pg.example.com", 1)),
        ("10.0.0.1:65535", ("10.0.0.1", 65535)),
        ("[::1]:5432", ("::1", 5432)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


def test_empty_database_name_is_a_programming_error() -> None:
    relation = requirer_relation()
    ctx = testing.Context(RequirerCharm, meta=REQUIRER_META)
    with ctx(ctx.on.update_status(), testing.State(leader=True, relations={relation})) as manager:
        with pytest.raises(ValueError, match="must not be empty"):
            manager.charm.database.publish_request("")
        assert manager.charm.database.is_related()
        assert manager.charm.database.relation is not None
