"""The media relation: Synapse's media on S3 through synapse-s3-storage-provider, when the image has it."""

import dataclasses
import json

import ops
import pytest
import yaml
from ops import testing

from constants import CONFIG_PATH, CONTAINER_NAME, MEDIA_ENDPOINT
from tests.unit.conftest import CharmEnv
from workload.service import MEDIA_PROVIDER_MODULE

S3_DATA = {
    "access-key": "AKIAMEDIA",
    "secret-key": "media-secret",
    "bucket": "synapse-media",
    "endpoint": "http://10.1.2.3:7480",
    "region": "default",
    "path": "media",
    "s3-uri-style": "path",
}


def media_state(env: CharmEnv, data: dict[str, str], *, has_module: bool) -> testing.State:
    """A leader related to a media bucket; the image has the provider module or not."""
    probe = testing.Exec(["python", "-c"], stdout="found\n" if has_module else "missing\n")
    container = env.container(execs={probe})
    return env.state(relations={testing.Relation(MEDIA_ENDPOINT, remote_app_data=data)}, container=container)


def test_with_the_module_synapse_stores_media_in_the_bucket(env: CharmEnv) -> None:
    out = env.pebble_ready(media_state(env, S3_DATA, has_module=True))
    config = yaml.safe_load(env.read(CONFIG_PATH))
    (provider,) = config["media_storage_providers"]
    assert provider["module"] == "s3_storage_provider.S3StorageProviderBackend"
    assert provider["store_local"] and provider["store_remote"] and provider["store_synchronous"]
    assert provider["config"] == {
        "bucket": "synapse-media",
        "region_name": "default",
        "access_key_id": "AKIAMEDIA",
        "secret_access_key": "media-secret",
        "prefix": "media/",
        "endpoint_url": "http://10.1.2.3:7480",
    }
    assert not isinstance(out.unit_status, ops.BlockedStatus | ops.WaitingStatus)
    (probe,) = env.ctx.exec_history[CONTAINER_NAME]
    assert probe.command[-1] == MEDIA_PROVIDER_MODULE
    assert "media-secret" not in json.dumps(out.get_container(CONTAINER_NAME).plan.to_dict())


def test_without_the_module_the_unit_is_blocked_naming_what_the_image_needs(env: CharmEnv) -> None:
    out = env.pebble_ready(media_state(env, S3_DATA, has_module=False))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "synapse-s3-storage-provider" in out.unit_status.message
    assert "juju remove-relation synapse:media" in out.unit_status.message


def test_the_probe_failing_counts_as_missing(env: CharmEnv) -> None:
    state = media_state(env, S3_DATA, has_module=True)
    container = state.get_container(CONTAINER_NAME)
    broken = testing.Exec(["python", "-c"], return_code=127, stderr="python: not found")
    state = dataclasses.replace(
        state, containers=frozenset({dataclasses.replace(container, execs=frozenset({broken}))})
    )
    out = env.pebble_ready(state)
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "synapse-s3-storage-provider" in out.unit_status.message


def test_before_the_provider_answers_the_unit_waits(env: CharmEnv) -> None:
    out = env.pebble_ready(media_state(env, {}, has_module=True))
    assert isinstance(out.unit_status, ops.WaitingStatus)
    assert "media bucket" in out.unit_status.message


def test_a_private_ca_is_refused(env: CharmEnv) -> None:
    data = {**S3_DATA, "tls-ca-chain": json.dumps(["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"])}
    out = env.pebble_ready(media_state(env, data, has_module=True))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "tls-ca-chain" in out.unit_status.message


@pytest.mark.parametrize(("key", "value"), [("endpoint", "ftp://x"), ("bucket", "UPPER")])
def test_bad_relation_data_blocks_naming_the_key(env: CharmEnv, key: str, value: str) -> None:
    out = env.pebble_ready(media_state(env, {**S3_DATA, key: value}, has_module=True))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert f"media relation's {key}" in out.unit_status.message


def test_without_the_relation_there_is_no_provider_and_no_probe(env: CharmEnv) -> None:
    env.pebble_ready(env.state())
    assert "media_storage_providers" not in yaml.safe_load(env.read(CONFIG_PATH))
    assert not env.ctx.exec_history.get(CONTAINER_NAME)
