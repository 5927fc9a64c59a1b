"""Any relation data, secret content and in-container script output ends a hook in a status.

For every endpoint in metadata.yaml, hypothesis starts from databags a real provider sends
(`ENDPOINTS`: the remote application's and unit's), keeps, drops or replaces each key with
near misses and arbitrary text, and adds other keys; a granted Juju secret of arbitrary
content is named by some keys. The in-container scripts (collation check, SQLite check,
porter) answer with arbitrary output and exit codes. ops.testing raises
UncaughtCharmError for any exception a hook lets escape.

A helper adding an endpoint adds its provider's databags to ENDPOINTS (a test checks that
they match metadata.yaml).
"""

import dataclasses
import json

import ops
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from ops import testing

from tests import strategies
from tests.unit.conftest import CharmEnv, charm_spec
from workload import postgres_setup, saml, service

# A granted secret the drawn databags may name; its content is drawn too.
SECRET = testing.Secret({"password": "s3cret"})


@dataclasses.dataclass(frozen=True)
class Provider:
    """What a working provider sends on an endpoint: app databag, one unit's databag, secret content."""

    app: dict[str, str]
    unit: dict[str, str] = dataclasses.field(default_factory=dict)
    secret: dict[str, str] = dataclasses.field(default_factory=dict)
    # Keys a provider may send that the databags above leave out (drawn with any value).
    other_keys: tuple[str, ...] = ()


ENDPOINTS: dict[str, Provider] = {
    "database": Provider(
        app={
            "endpoints": "10.1.2.3:5432",
            "read-only-endpoints": "10.1.2.4:5432",
            "database": "synapse",
            "version": "16.6",
            "secret-user": SECRET.id,
            "tls": "true",
        },
        secret={"username": "relation_id_7", "password": "s3cret", "tls-ca": "-----BEGIN CERTIFICATE-----\nMIIB"},
    ),
    "db": Provider(
        app={},
        unit={
            "database": "synapse",
            "roles": "CREATEDB",
            "allowed-subnets": "10.0.0.0/8,10.1.5.6/32",
            "master": "dbname=synapse host=10.1.2.3 port=5432 user=u password='p w' sslmode=require",
            "standbys": "dbname=synapse host=10.1.2.4 port=5432 user=u password=p",
            "version": "14",
        },
    ),
    "smtp": Provider(
        app={
            "host": "smtp.example.com",
            "port": "587",
            "user": "synapse",
            "password_id": SECRET.id,
            "auth_type": "plain",
            "transport_security": "starttls",
            "domain": "example.com",
            "skip_ssl_verify": "false",
        },
        secret={"password": "s3cret"},
    ),
    "logging": Provider(app={}, unit={"endpoint": '{"url": "http://10.1.2.9:3100/loki/api/v1/push"}'}),
    # We only publish on these two; the remote side's databags are read by nothing of ours.
    "metrics-endpoint": Provider(app={}),
    "grafana-dashboard": Provider(app={}),
    # A bridge's registration is encrypted with a key the charm creates: drawn as any text.
    "matrix-auth": Provider(app={}, other_keys=("registration_secret",)),
    "saml": Provider(
        app={
            "entity_id": "https://idp.example.com/metadata",
            "metadata_url": "https://idp.example.com/metadata",
            "x509certs": "MIIBAA==",
            "single_sign_on_service_redirect_url": "https://idp.example.com/sso",
        }
    ),
    "redis": Provider(app={}, unit={"hostname": "10.1.2.20", "port": "6379"}),
    "ingress": Provider(app={"ingress": '{"url": "https://matrix.example.com/"}'}),
    # nginx-ingress-integrator answers nothing the charm reads.
    "nginx-route": Provider(app={}),
    "backup": Provider(
        app={
            "access-key": "AKIAEXAMPLE",
            "secret-key": "s3cret",
            "bucket": "synapse-backups",
            "endpoint": "https://s3.example.com",
            "region": "us-east-1",
            "path": "synapse/",
            "s3-uri-style": "path",
            "tls-ca-chain": '["-----BEGIN CERTIFICATE-----\\nMIIB"]',
        }
    ),
    "media": Provider(
        app={
            "access-key": "AKIAEXAMPLE",
            "secret-key": "s3cret",
            "bucket": "synapse-media",
            "endpoint": "https://s3.example.com",
            "region": "us-east-1",
            "s3-uri-style": "host",
        }
    ),
}
# What the in-container scripts might print: their answer keys, with any values.
SCRIPT_KEYS = (
    "database",
    "error",
    "user",
    "role",
    "schema",
    "created",
    "allow_unsafe_locale",
    "locale",
    "owner",
    "owners",
    "schema_privilege",
    "detail",
    "pending",
)
STATUSES = ops.ActiveStatus | ops.BlockedStatus | ops.WaitingStatus | ops.MaintenanceStatus


def remote_endpoints() -> list[str]:
    """Every requires/provides endpoint in metadata.yaml."""
    meta, _, _ = charm_spec()
    return sorted({**meta.get("requires", {}), **meta.get("provides", {})})


def test_every_endpoint_is_fuzzed() -> None:
    assert sorted(ENDPOINTS) == remote_endpoints()


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, str], other_keys: tuple[str, ...] = ()) -> dict[str, str]:
    """`base` with each key kept, dropped or replaced by a near miss or any text, plus other keys."""
    result = {}
    for key, value in base.items():
        action = draw(st.sampled_from(("keep", "keep", "drop", "hostile")))
        if action == "keep":
            result[key] = value
        elif action == "hostile":
            result[key] = draw(strategies.hostile_string(st.just(value)))
    known = sorted({*base, *other_keys})
    extra = st.one_of(st.sampled_from(known) if known else st.nothing(), st.text(min_size=1, max_size=8))
    result.update(draw(st.dictionaries(extra, st.one_of(strategies.texts, st.just(SECRET.id)), max_size=2)))
    return result


script_outputs = st.one_of(
    strategies.json_objects_like(SCRIPT_KEYS).map(lambda answer: json.dumps(answer) + "\n"),
    strategies.mangled_json(SCRIPT_KEYS).map(lambda body: body.decode("utf-8", errors="replace")),
    st.text(max_size=60),
)


@st.composite
def scripts(draw: st.DrawFn) -> frozenset[testing.Exec]:
    """The in-container commands, answering anything with any exit code."""
    return frozenset(
        testing.Exec(
            prefix,
            return_code=draw(st.sampled_from([0, 0, 1, 2])),
            stdout=draw(script_outputs),
            stderr=draw(st.text(max_size=60)),
        )
        for prefix in (["python"], ["synapse_port_db"])
    )


def provider_relation(endpoint: str, app: dict[str, str], unit: dict[str, str]) -> testing.Relation:
    """The relation on `endpoint` with the provider's databags."""
    return testing.Relation(
        endpoint,
        remote_app_name="provider",
        remote_app_data=app,
        remote_units_data={0: unit},
        local_unit_data={"egress-subnets": "10.1.5.6/32", "ingress-address": "10.1.5.6"},
    )


def requested(env: CharmEnv, endpoint: str) -> tuple[testing.Relation, testing.PeerRelation, frozenset[testing.Secret]]:
    """The relation, peer relation and server secrets after the leader's first hook: our request is in place."""
    provider = ENDPOINTS[endpoint]
    content = provider.secret or {"x": "y"}
    secret = dataclasses.replace(SECRET, tracked_content=content, latest_content=content)
    relation = provider_relation(endpoint, provider.app, provider.unit)
    state = env.state(relations={relation}, secrets={secret})
    out = env.run(env.ctx.on.relation_joined(relation, remote_unit=0), state)
    (peer,) = [rel for rel in out.relations if isinstance(rel, testing.PeerRelation)]
    server_secrets = frozenset(item for item in out.secrets if item.id != SECRET.id)
    return out.get_relation(relation.id), peer, server_secrets  # type: ignore[return-value]


FirstHooks = tuple[testing.Relation, testing.PeerRelation, frozenset[testing.Secret]]


@pytest.fixture(scope="module")
def first_hooks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FirstHooks]:
    """For every endpoint, the relation and peer data after the leader's first hook."""
    env = CharmEnv(tmp_path_factory.mktemp("first-hooks"))
    return {endpoint: requested(env, endpoint) for endpoint in ENDPOINTS}


@pytest.mark.parametrize("endpoint", remote_endpoints())
@given(data=st.data())
def test_any_remote_data_ends_in_a_status(
    env: CharmEnv,
    first_hooks: dict[str, FirstHooks],
    endpoint: str,
    data: st.DataObject,
) -> None:
    provider = ENDPOINTS[endpoint]
    requested_relation, peer, server_secrets = first_hooks[endpoint]
    relation = dataclasses.replace(
        requested_relation,
        remote_app_data=data.draw(mutated(provider.app, provider.other_keys)),
        remote_units_data={0: data.draw(mutated(provider.unit))},
    )
    content = data.draw(mutated(provider.secret)) or {"x": "y"}
    data_dir = env.new_data_dir()
    if data.draw(st.booleans()):  # a server with SQLite data: the port path
        (data_dir / "db").mkdir()
        (data_dir / "db" / "homeserver.db").write_bytes(b"SQLite format 3\x00")
    container = env.container(data_dir=data_dir, execs=data.draw(scripts()))
    secret = dataclasses.replace(SECRET, tracked_content=content, latest_content=content)
    leader = data.draw(st.sampled_from([True, True, True, False]))
    state = env.state(
        leader=leader, container=container, relations={relation}, secrets={secret, *server_secrets}, peer=peer
    )

    # relation-changed runs the relation modules' (and libraries') own handlers; config-changed
    # runs the reconcile whatever a library decided to emit.
    changed = env.ctx.on.relation_changed(relation, remote_unit=0)
    out = env.run(data.draw(st.sampled_from([changed, env.ctx.on.config_changed()])), state)

    assert isinstance(out.unit_status, STATUSES)
    config = data_dir / "homeserver.yaml"
    if config.exists():
        assert isinstance(yaml.safe_load(config.read_text()), dict)


@pytest.mark.parametrize("endpoint", remote_endpoints())
def test_the_providers_databags_are_accepted(env: CharmEnv, first_hooks: dict[str, FirstHooks], endpoint: str) -> None:
    """The unmutated databags work (the fuzzing above starts from somewhere real)."""
    relation, peer, server_secrets = first_hooks[endpoint]
    prepared = json.dumps({"database": "synapse_c", "created": True})
    saml_support = json.dumps({"pysaml2": "7.5.0", "xmlsec1": "/usr/bin/xmlsec1"})
    container = env.container(
        execs={
            testing.Exec(["python", "-c", postgres_setup._PREPARE_SCRIPT], stdout=prepared),
            testing.Exec(["python", "-c", saml._SUPPORT_SCRIPT], stdout=saml_support),
            # The image has synapse-s3-storage-provider (for the media endpoint).
            testing.Exec(["python", "-c", service._FIND_MODULE], stdout="found\n"),
        }
    )
    content = ENDPOINTS[endpoint].secret or {"x": "y"}
    secret = dataclasses.replace(SECRET, tracked_content=content, latest_content=content)
    state = env.state(container=container, relations={relation}, secrets={secret, *server_secrets}, peer=peer)

    out = env.run(env.ctx.on.config_changed(), state)

    assert not isinstance(out.unit_status, ops.BlockedStatus), out.unit_status
    assert (env.data_dir / "homeserver.yaml").exists(), out.unit_status
