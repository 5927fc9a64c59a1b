"""The s3 relations (src/relations/s3.py): what we write, and s3-integrator's answers as recorded.

Recorded shapes: s3-integrator with schema v0 writes every key plain in its app databag;
with schema v1 (object-storage-charmlib) it writes `version` and the keys, with the access
and secret keys in a Juju secret referenced by `secret-extra`.
"""

import json
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ops import testing

from constants import BACKUP_ENDPOINT, MEDIA_ENDPOINT
from relations.s3 import parse_connection, requested_bucket
from state import InvalidStateError, S3Connection
from tests.unit.conftest import CharmEnv

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
V0_ANSWER = {
    "access-key": "AKIAEXAMPLE",
    "secret-key": "s3cr3t/key+value",
    "bucket": "synapse-backup",
    "endpoint": "https://s3.eu-west-1.amazonaws.com",
    "region": "eu-west-1",
    "path": "/synapse/prod/",
    "s3-uri-style": "host",
    "storage-class": "STANDARD",
    "tls-ca-chain": json.dumps([CA]),
    "s3-api-version": "4",
    "data": "{}",
}


def test_the_v0_answer_parses() -> None:
    connection = parse_connection(V0_ANSWER, BACKUP_ENDPOINT, "synapse")
    assert connection == S3Connection(
        access_key="AKIAEXAMPLE",
        secret_key="s3cr3t/key+value",
        bucket="synapse-backup",
        endpoint="https://s3.eu-west-1.amazonaws.com",
        region="eu-west-1",
        path="synapse/prod/",
        uri_style="host",
        ca_chain=(CA,),
    )


def test_defaults_when_only_credentials_are_given() -> None:
    connection = parse_connection({"access-key": "a", "secret-key": "b"}, BACKUP_ENDPOINT, "synapse")
    assert connection is not None
    assert (connection.bucket, connection.endpoint, connection.region, connection.path, connection.uri_style) == (
        "synapse-backup",
        "",
        "us-east-1",
        "",
        "path",
    )


@pytest.mark.parametrize("missing", ["access-key", "secret-key"])
def test_without_credentials_there_is_no_connection(missing: str) -> None:
    data = {key: value for key, value in V0_ANSWER.items() if key != missing}
    assert parse_connection(data, BACKUP_ENDPOINT, "synapse") is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tls-ca-chain", "not json"),
        ("tls-ca-chain", json.dumps({"a": 1})),
        ("bucket", "Not_A_Bucket"),
        ("endpoint", "ftp://host"),
        ("endpoint", "https://user:pw@host"),
        ("region", "eu west"),
        ("s3-uri-style", "sideways"),
        ("path", "a/../b"),
    ],
)
def test_bad_values_name_the_key(key: str, value: str) -> None:
    with pytest.raises(InvalidStateError, match=f"{BACKUP_ENDPOINT} relation's {key}"):
        parse_connection({**V0_ANSWER, key: value}, BACKUP_ENDPOINT, "synapse")


def test_the_requested_bucket_is_a_valid_name() -> None:
    assert requested_bucket("synapse", MEDIA_ENDPOINT) == "synapse-media"
    assert len(requested_bucket("a" * 80, BACKUP_ENDPOINT)) <= 63


@given(st.dictionaries(st.sampled_from(sorted(V0_ANSWER)), st.text(max_size=40)))
def test_any_answer_is_a_connection_none_or_a_named_error(data: dict[str, str]) -> None:
    try:
        parse_connection(data, MEDIA_ENDPOINT, "synapse")
    except InvalidStateError as exc:
        assert f"{MEDIA_ENDPOINT} relation's" in str(exc)


# -- through the charm ----------------------------------------------------------------------


def test_the_leader_asks_for_a_bucket_on_joining(env: CharmEnv) -> None:
    relation = testing.Relation(BACKUP_ENDPOINT)
    state = env.state(relations={relation})
    state = env.run(env.ctx.on.relation_created(relation), state)
    state = env.run(env.ctx.on.relation_joined(state.get_relation(relation.id), remote_unit=0), state)
    ours = typing.cast(dict[str, str], state.get_relation(relation.id).local_app_data)
    assert ours["bucket"] == "synapse-backup"
    assert ours["version"] == "1"
    assert set(json.loads(ours["requested-secrets"])) == {"access-key", "secret-key"}


def test_a_non_leader_writes_nothing(env: CharmEnv) -> None:
    relation = testing.Relation(BACKUP_ENDPOINT)
    state = env.state(leader=False, relations={relation})
    state = env.run(env.ctx.on.relation_joined(relation, remote_unit=0), state)
    assert "bucket" not in typing.cast(dict[str, str], state.get_relation(relation.id).local_app_data)


def _connection_in_charm(env: CharmEnv, state: testing.State) -> S3Connection | None:
    with env.ctx(env.ctx.on.update_status(), state) as manager:
        return manager.charm.backup.connection()


def test_plain_v0_credentials_are_read(env: CharmEnv) -> None:
    relation = testing.Relation(BACKUP_ENDPOINT, remote_app_data=V0_ANSWER)
    connection = _connection_in_charm(env, env.state(relations={relation}))
    assert connection is not None and connection.access_key == "AKIAEXAMPLE"


def test_v1_credentials_are_read_from_the_secret(env: CharmEnv) -> None:
    secret = testing.Secret({"access-key": "AKIAV1", "secret-key": "v1-secret"}, owner=None)
    relation = testing.Relation(
        BACKUP_ENDPOINT,
        remote_app_data={
            "version": "1",
            "bucket": "provided-bucket",
            "endpoint": "http://10.0.0.5:7480",
            "region": "default",
            "s3-uri-style": "path",
            "secret-extra": secret.id,
        },
        local_unit_data={"requested-secrets": json.dumps(["access-key", "secret-key"])},
    )
    connection = _connection_in_charm(env, env.state(relations={relation}, secrets={secret}))
    assert connection is not None
    assert (connection.access_key, connection.secret_key, connection.bucket, connection.endpoint) == (
        "AKIAV1",
        "v1-secret",
        "provided-bucket",
        "http://10.0.0.5:7480",
    )


def test_until_the_provider_answers_there_is_no_connection(env: CharmEnv) -> None:
    relation = testing.Relation(BACKUP_ENDPOINT, remote_app_data={"version": "1"})
    assert _connection_in_charm(env, env.state(relations={relation})) is None
