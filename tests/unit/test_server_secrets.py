"""The server's signing key and secrets in one Juju secret (src/server_secrets.py)."""

import base64
import dataclasses
import json
import re

import ops
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ops import testing

from constants import (
    FORM_SECRET_PATH,
    MACAROON_SECRET_PATH,
    PEER_DATABASE_KEY,
    PEER_MAIN_UNIT_KEY,
    PEER_RELATION,
    PEER_SECRET_ID_KEY,
    REGISTRATION_SECRET_PATH,
    SECRET_LABEL,
    SIGNING_KEY_PATH,
)
from server_secrets import ServerSecrets, generate_signing_key
from state import InvalidStateError
from tests import strategies
from tests.unit.conftest import CharmEnv

SECRET_FILES = (SIGNING_KEY_PATH, REGISTRATION_SECRET_PATH, MACAROON_SECRET_PATH, FORM_SECRET_PATH)
SIGNING_KEY_FORMAT = re.compile(r"ed25519 a_[A-Za-z0-9]{4} [A-Za-z0-9+/]{43}")


def decode_seed(signing_key: str) -> bytes:
    """The ed25519 seed bytes of a signing key line (unpadded base64, as Synapse writes it)."""
    seed = signing_key.split(" ")[2]
    return base64.b64decode(seed + "=" * (-len(seed) % 4), validate=True)


# --- generation ----------------------------------------------------------------------------


def test_signing_key_format() -> None:
    for _ in range(50):
        key = generate_signing_key()
        assert SIGNING_KEY_FORMAT.fullmatch(key), key
        assert len(decode_seed(key)) == 32


def test_signing_key_loads_as_an_ed25519_private_key() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(decode_seed(generate_signing_key()))
    assert len(key.public_key().public_bytes_raw()) == 32


def test_generations_differ() -> None:
    first, second = ServerSecrets.generate(), ServerSecrets.generate()
    for field in ServerSecrets.model_fields:
        assert getattr(first, field) != getattr(second, field), field
    assert decode_seed(first.signing_key) != decode_seed(second.signing_key)
    assert len(first.registration_shared_secret) >= 32
    assert len({first.registration_shared_secret, first.macaroon_secret_key, first.form_secret}) == 3


def test_content_round_trip_uses_juju_key_names() -> None:
    secrets = ServerSecrets.generate()
    content = secrets.to_content()
    assert set(content) == {
        "signing-key",
        "registration-shared-secret",
        "macaroon-secret-key",
        "form-secret",
        "worker-replication-secret",
    }
    assert ServerSecrets.from_content(content) == secrets


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"signing-key": "not a key"}, "signing_key"),
        ({"signing-key": "ed25519 a_1234 short"}, "signing_key"),
        ({"signing-key": "rsa a_abcd " + "A" * 43}, "signing_key"),
        ({"form-secret": None}, "form_secret"),
    ],
)
def test_damaged_content(change: dict[str, str | None], field: str) -> None:
    content: dict[str, str] = {
        key: value for key, value in {**ServerSecrets.generate().to_content(), **change}.items() if value is not None
    }
    with pytest.raises(InvalidStateError) as excinfo:
        ServerSecrets.from_content(content)
    assert field in str(excinfo.value)
    assert SECRET_LABEL in str(excinfo.value)
    assert "damaged" in str(excinfo.value)


def test_signing_key_whitespace_is_trimmed() -> None:
    content = ServerSecrets.generate().to_content()
    key = content["signing-key"]
    assert ServerSecrets.from_content({**content, "signing-key": f"  {key}\n"}).signing_key == key


# --- the leader ----------------------------------------------------------------------------


def test_leader_creates_one_secret_and_publishes_its_id(env: CharmEnv) -> None:
    out = env.started()

    secret = env.server_secret(out)
    assert secret.owner == "app"
    assert secret.label == SECRET_LABEL
    content = ServerSecrets.from_content(dict(secret.tracked_content))
    assert out.get_relations(PEER_RELATION)[0].local_app_data == {
        PEER_SECRET_ID_KEY: secret.id,
        PEER_MAIN_UNIT_KEY: "synapse/0",
    }
    assert env.read(SIGNING_KEY_PATH) == content.signing_key + "\n"
    assert env.read(REGISTRATION_SECRET_PATH) == content.registration_shared_secret
    assert env.read(MACAROON_SECRET_PATH) == content.macaroon_secret_key
    assert env.read(FORM_SECRET_PATH) == content.form_secret


def test_second_leader_hook_reuses_the_secret(env: CharmEnv) -> None:
    first = env.started()
    files = {path: env.read(path) for path in SECRET_FILES}

    second = env.run(env.ctx.on.leader_elected(), first)
    third = env.run(env.ctx.on.config_changed(), second)

    assert env.server_secret(third) == env.server_secret(first)
    assert {path: env.read(path) for path in SECRET_FILES} == files


def test_leader_publishes_when_the_peer_relation_appears(env: CharmEnv) -> None:
    out = env.run(env.ctx.on.install(), env.state(peer=False))
    secret = env.server_secret(out)
    assert out.relations == frozenset()

    peer = testing.PeerRelation(PEER_RELATION)
    out = env.run(env.ctx.on.relation_created(peer), dataclasses.replace(out, relations=frozenset({peer})))
    assert out.get_relation(peer.id).local_app_data == {PEER_SECRET_ID_KEY: secret.id, PEER_MAIN_UNIT_KEY: "synapse/0"}
    assert env.server_secret(out) == secret


def test_new_leader_republishes_a_missing_id(env: CharmEnv) -> None:
    out = env.started()
    secret = env.server_secret(out)
    peer = out.get_relations(PEER_RELATION)[0]
    emptied = dataclasses.replace(out, relations=frozenset({dataclasses.replace(peer, local_app_data={})}))

    out = env.run(env.ctx.on.leader_elected(), emptied)
    assert out.get_relation(peer.id).local_app_data == {PEER_SECRET_ID_KEY: secret.id, PEER_MAIN_UNIT_KEY: "synapse/0"}


def test_leader_with_damaged_secret_is_blocked(env: CharmEnv) -> None:
    damaged = testing.Secret({"signing-key": "garbage"}, label=SECRET_LABEL, owner="app")
    out = env.run(env.ctx.on.config_changed(), env.state(secrets={damaged}))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "damaged" in out.unit_status.message
    assert SECRET_LABEL in out.unit_status.message
    assert not env.host_path(SIGNING_KEY_PATH).exists()


# --- other units ---------------------------------------------------------------------------


def test_non_leader_waits_for_the_leader(env: CharmEnv) -> None:
    out = env.pebble_ready(env.state(leader=False))
    assert out.unit_status == ops.WaitingStatus("waiting for the leader to create the server's secrets")
    assert out.secrets == frozenset()
    assert not env.host_path(SIGNING_KEY_PATH).exists()


def test_non_leader_without_the_relation_waits(env: CharmEnv) -> None:
    out = env.pebble_ready(env.state(leader=False, peer=False))
    assert out.unit_status == ops.WaitingStatus("waiting for the leader to create the server's secrets")


def test_non_leader_with_unreadable_secret_waits(env: CharmEnv) -> None:
    peer = testing.PeerRelation(PEER_RELATION, local_app_data={PEER_SECRET_ID_KEY: "secret:doesnotexist00000"})
    out = env.pebble_ready(env.state(leader=False, peer=peer))
    assert out.unit_status == ops.WaitingStatus("waiting for the leader to create the server's secrets")


def follower_state(env: CharmEnv, leader_out: testing.State, **kwargs: object) -> testing.State:
    """A non-leader unit with the leader's peer data and read access to its secret."""
    secret = env.server_secret(leader_out)
    peer = testing.PeerRelation(PEER_RELATION, local_app_data={PEER_SECRET_ID_KEY: secret.id})
    shared = testing.Secret(dict(secret.tracked_content), id=secret.id, label=None)
    return env.state(leader=False, peer=peer, secrets={shared}, **kwargs)  # type: ignore[arg-type]


def test_non_leader_writes_the_same_files_as_the_leader(env: CharmEnv) -> None:
    leader = env.started()
    leader_files = {path: env.read(path) for path in SECRET_FILES}

    follower_dir = env.new_data_dir()
    out = env.pebble_ready(follower_state(env, leader, container=env.container(data_dir=follower_dir)))

    assert {path: env.read(path, follower_dir) for path in SECRET_FILES} == leader_files
    # Ready to take over, but only the leader runs Synapse.
    assert out.get_container("synapse").service_statuses.get("synapse") != ops.pebble.ServiceStatus.ACTIVE
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert out.unit_status.message.startswith("standby: Synapse's main process runs on ")
    assert not any(secret.owner for secret in out.secrets)


def test_non_leader_follows_a_new_secret_revision(env: CharmEnv) -> None:
    leader = env.started()
    follower_dir = env.new_data_dir()
    out = env.pebble_ready(follower_state(env, leader, container=env.container(data_dir=follower_dir)))
    shared = next(iter(out.secrets))
    rotated = ServerSecrets.generate().to_content()
    changed = dataclasses.replace(out, secrets=frozenset({dataclasses.replace(shared, latest_content=rotated)}))

    out = env.run(env.ctx.on.secret_changed(next(iter(changed.secrets))), changed)

    assert env.read(SIGNING_KEY_PATH, follower_dir) == rotated["signing-key"] + "\n"
    assert env.read(FORM_SECRET_PATH, follower_dir) == rotated["form-secret"]


def test_wiped_container_gets_the_same_signing_key_back(env: CharmEnv) -> None:
    out = env.started()
    key = env.read(SIGNING_KEY_PATH)

    wiped = env.new_data_dir()
    container = env.container(data_dir=wiped)
    again = env.pebble_ready(dataclasses.replace(out, containers=frozenset({container})))

    assert env.read(SIGNING_KEY_PATH, wiped) == key
    assert env.server_secret(again) == env.server_secret(out)


def test_non_leader_with_damaged_secret_is_blocked(env: CharmEnv) -> None:
    damaged = testing.Secret({"signing-key": "ed25519 a_abcd tooshort"}, id="secret:damaged0000000000000")
    peer = testing.PeerRelation(PEER_RELATION, local_app_data={PEER_SECRET_ID_KEY: damaged.id})
    out = env.pebble_ready(env.state(leader=False, peer=peer, secrets={damaged}))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "damaged" in out.unit_status.message
    assert "restore its content" in out.unit_status.message
    assert not env.host_path(SIGNING_KEY_PATH).exists()


def test_new_leader_reuses_the_published_secret(env: CharmEnv) -> None:
    content = ServerSecrets.generate().to_content()
    secret = testing.Secret(content, id="secret:0ldleader0ldleader00", owner="app")
    peer = testing.PeerRelation(PEER_RELATION, local_app_data={PEER_SECRET_ID_KEY: secret.id})

    out = env.run(env.ctx.on.leader_elected(), env.state(peer=peer, secrets={secret}))

    (kept,) = out.secrets
    assert (kept.id, dict(kept.tracked_content)) == (secret.id, content)
    assert env.read(SIGNING_KEY_PATH) == content["signing-key"] + "\n"
    assert out.get_relation(peer.id).local_app_data == {PEER_SECRET_ID_KEY: secret.id, PEER_MAIN_UNIT_KEY: "synapse/0"}


def test_new_leader_blocks_when_the_published_secret_is_gone(env: CharmEnv) -> None:
    peer = testing.PeerRelation(PEER_RELATION, local_app_data={PEER_SECRET_ID_KEY: "secret:g0neg0neg0neg0neg0ne"})

    out = env.run(env.ctx.on.leader_elected(), env.state(peer=peer))

    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "secret:g0neg0neg0neg0neg0ne" in out.unit_status.message
    assert "is gone" in out.unit_status.message
    assert out.secrets == frozenset()  # no new identity minted
    assert not env.host_path(SIGNING_KEY_PATH).exists()


def test_new_leader_blocks_when_the_published_secret_cannot_be_read(
    env: CharmEnv, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A secret ID in peer data that this application may not read (e.g. another app's) blocks, and is logged."""
    peer = testing.PeerRelation(PEER_RELATION, local_app_data={PEER_SECRET_ID_KEY: "secret:n0taccess1bleb0ut0urs"})

    def refused(self: ops.Model, id: str | None = None, label: str | None = None) -> ops.Secret:
        raise ops.ModelError(f"ERROR permission denied reading {id}")

    monkeypatch.setattr(ops.Model, "get_secret", refused)
    out = env.run(env.ctx.on.leader_elected(), env.state(peer=peer))

    assert out.unit_status == ops.BlockedStatus(
        f"the Juju secret 'secret:n0taccess1bleb0ut0urs' named in peer data ({PEER_SECRET_ID_KEY}) cannot be read by "
        "this application; a new key would change the server's identity, so restore the secret it held and point "
        "the peer data at it (or redeploy)"
    )
    assert out.secrets == frozenset()
    assert "permission denied" in caplog.text


SECRET_KEYS = ("signing-key", "registration-shared-secret", "macaroon-secret-key", "form-secret")


@given(
    content=st.dictionaries(
        st.sampled_from(SECRET_KEYS) | st.text(min_size=1, max_size=10),
        st.one_of(strategies.texts, st.just(generate_signing_key())),
        min_size=1,
        max_size=6,
    )
)
def test_any_server_secret_content_runs_or_blocks(env: CharmEnv, content: dict[str, str]) -> None:
    secret = testing.Secret(content, label=SECRET_LABEL, owner="app")

    out = env.run(env.ctx.on.config_changed(), env.state(secrets={secret}))

    try:
        ServerSecrets.from_content(content)
    except InvalidStateError as exc:
        assert out.unit_status == ops.BlockedStatus(str(exc))
    else:
        assert not isinstance(out.unit_status, ops.BlockedStatus)


@given(
    peer_data=st.dictionaries(
        st.sampled_from([PEER_SECRET_ID_KEY, PEER_DATABASE_KEY]) | st.text(min_size=1, max_size=10),
        st.one_of(
            strategies.texts,
            st.sampled_from(["secret:doesnotexist00000", "secret:", "garbage", '{"source": 1}', "{}"]),
            strategies.json_values.map(json.dumps),
        ),
        max_size=3,
    ),
    leader=st.booleans(),
)
def test_any_peer_data_ends_in_a_status(env: CharmEnv, peer_data: dict[str, str], leader: bool) -> None:
    peer = testing.PeerRelation(PEER_RELATION, local_app_data=peer_data)

    out = env.run(env.ctx.on.config_changed(), env.state(leader=leader, peer=peer))

    published = peer_data.get(PEER_SECRET_ID_KEY)
    if leader and published:  # no such secret exists here: never a new identity
        assert isinstance(out.unit_status, ops.BlockedStatus)
        assert len(out.unit_status.message) < 400
        assert out.secrets == frozenset()
    else:
        assert isinstance(out.unit_status, ops.ActiveStatus | ops.WaitingStatus | ops.MaintenanceStatus)
