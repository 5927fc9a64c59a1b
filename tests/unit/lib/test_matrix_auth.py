"""Our charms.synapse.v1.matrix_auth library on its own: a minimal provider and a bridge, in two contexts."""

import base64
import dataclasses
import typing

import ops
import pytest
from charms.synapse.v1 import matrix_auth as lib
from cryptography.fernet import Fernet
from ops import testing
from pydantic import SecretStr

from tests.unit.conftest import run_recording_relation_sets
from tests.unit.lib.bridge import (
    ENDPOINT,
    SEEN,
    Bridge,
    content,
    databag,
    registration_yaml,
    relation_of,
    with_relation,
)

HOMESERVER = "https://chat.example.com"
SHARED_SECRET = "the-registration-shared-secret"
PROVIDER_META: dict[str, typing.Any] = {"name": "synapse", "provides": {ENDPOINT: {"interface": "matrix_auth"}}}
RECEIVED: list[int] = []


class ProviderCharm(ops.CharmBase):
    """Publishes on every relation on update-status; records matrix_auth_request_received."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.provides = lib.MatrixAuthProvides(self)
        framework.observe(self.on.update_status, self._publish)
        framework.observe(self.provides.on.matrix_auth_request_received, self._received)
        framework.observe(self.on[ENDPOINT].relation_broken, self._broken)

    def _publish(self, _: ops.EventBase) -> None:
        for relation in self.provides.relations:
            data = lib.MatrixAuthProviderData(homeserver=HOMESERVER, shared_secret=SecretStr(SHARED_SECRET))
            self.provides.update_relation_data(relation, data)

    def _received(self, event: lib.MatrixAuthRequestReceived) -> None:
        RECEIVED.append(event.relation.id)

    def _broken(self, event: ops.RelationBrokenEvent) -> None:
        self.provides.revoke_secrets(event.relation)


@pytest.fixture
def ctx() -> testing.Context[ProviderCharm]:
    RECEIVED.clear()
    return testing.Context(ProviderCharm, meta=PROVIDER_META)


def relation(relation_id: int, **kwargs: typing.Any) -> testing.Relation:
    return testing.Relation(ENDPOINT, id=relation_id, remote_app_name=f"bridge{relation_id}", **kwargs)


def published(ctx: testing.Context[ProviderCharm], *relation_ids: int, leader: bool = True) -> testing.State:
    state = testing.State(leader=leader, relations={relation(rid) for rid in relation_ids})
    return ctx.run(ctx.on.update_status(), state)


def secret_by_label(state: testing.State, label: str) -> testing.Secret:
    (secret,) = [secret for secret in state.secrets if secret.label == label]
    return secret


# --- encryption ----------------------------------------------------------------------------


def test_encrypt_then_decrypt_gives_the_text_back() -> None:
    key = lib.generate_encryption_key()
    text = "id: irc-bridge\nas_token: plain-text-registration-token\n"
    token = lib.encrypt_string(key, SecretStr(text))
    # A long plaintext cannot appear in the random-looking token by chance (a short one can).
    assert "plain-text-registration-token" not in token
    assert base64.urlsafe_b64encode(text.encode()).decode()[:24] not in token
    assert lib.decrypt_string(key, token) == text


def test_decrypt_with_another_key_or_garbage_is_a_matrix_auth_error() -> None:
    token = lib.encrypt_string(lib.generate_encryption_key(), SecretStr("x"))
    for key, text in ((lib.generate_encryption_key(), token), (lib.generate_encryption_key(), "not a token")):
        with pytest.raises(lib.MatrixAuthError, match="cannot be decrypted"):
            lib.decrypt_string(key, text)


def test_a_key_that_is_not_a_fernet_key_is_a_matrix_auth_error() -> None:
    with pytest.raises(lib.MatrixAuthError, match="not a Fernet key"):
        lib.encrypt_string(b"short", SecretStr("x"))
    assert isinstance(lib.MatrixAuthError("x"), ValueError)


def test_tokens_made_with_plain_fernet_decrypt() -> None:
    """A bridge on another implementation of the wire format encrypts with Fernet itself."""
    key = Fernet.generate_key()
    assert lib.decrypt_string(key, Fernet(key).encrypt(b"id: other\n").decode()) == "id: other\n"


def test_secret_values_stay_out_of_reprs() -> None:
    data = lib.MatrixAuthProviderData(homeserver=HOMESERVER, shared_secret=SecretStr(SHARED_SECRET))
    registration = lib.MatrixAuthRequirerData(registration=SecretStr("as_token: sekrit"))
    assert SHARED_SECRET not in repr(data) and "sekrit" not in repr(registration)
    assert "shared_secret" not in data.model_dump() and registration.model_dump() == {}


# --- provider ------------------------------------------------------------------------------


def test_the_leader_publishes_the_homeserver_and_both_secrets(ctx: testing.Context[ProviderCharm]) -> None:
    out = published(ctx, 4)
    data = databag(out, 4)
    shared = secret_by_label(out, lib.SHARED_SECRET_LABEL)
    key = secret_by_label(out, lib.ENCRYPTION_KEY_SECRET_LABEL)
    assert data == {"homeserver": HOMESERVER, "shared_secret_id": shared.id, "encryption_key_secret_id": key.id}
    assert shared.owner == key.owner == "app"
    assert shared.latest_content == {"shared-secret-content": SHARED_SECRET}
    Fernet(content(key)["encryption-key-content"].encode())  # a Fernet key
    assert 4 in shared.remote_grants and 4 in key.remote_grants


def test_publishing_again_writes_nothing_and_keeps_the_key(ctx: testing.Context[ProviderCharm]) -> None:
    first = published(ctx, 4)
    key = secret_by_label(first, lib.ENCRYPTION_KEY_SECRET_LABEL)
    state = first
    for _ in range(5):
        state, _charm, sets = run_recording_relation_sets(ctx, ctx.on.update_status(), state)
        assert sets == []
    assert state.secrets == first.secrets
    assert content(secret_by_label(state, lib.ENCRYPTION_KEY_SECRET_LABEL)) == content(key)


def test_every_relation_gets_the_same_secrets(ctx: testing.Context[ProviderCharm]) -> None:
    first = published(ctx, 4)
    state = with_relation(with_relation(first, relation(5)), relation(6))
    out = ctx.run(ctx.on.update_status(), state)
    assert len(out.secrets) == 2
    databags = [databag(out, rid) for rid in (4, 5, 6)]
    assert databags[0] == databags[1] == databags[2]
    for secret in out.secrets:
        assert set(secret.remote_grants) == {4, 5, 6}


def test_an_existing_secret_is_found_by_its_id_and_never_replaced(ctx: testing.Context[ProviderCharm]) -> None:
    out = published(ctx, 4)
    key = secret_by_label(out, lib.ENCRYPTION_KEY_SECRET_LABEL)
    with ctx(ctx.on.update_status(), out) as manager:
        data = lib.MatrixAuthProviderData(
            homeserver=HOMESERVER,
            shared_secret=SecretStr(SHARED_SECRET),
            encryption_key_secret_id=key.id,
            encryption_key=SecretStr(Fernet.generate_key().decode()),  # ignored: the key exists
        )
        data.to_relation_data(manager.charm.model, manager.charm.model.get_relation(ENDPOINT, 4))
        assert data.encryption_key is not None
        assert data.encryption_key.get_secret_value() == content(key)["encryption-key-content"]


def test_a_changed_shared_secret_updates_the_secret(ctx: testing.Context[ProviderCharm]) -> None:
    out = published(ctx, 4)
    with ctx(ctx.on.start(), out) as manager:
        data = lib.MatrixAuthProviderData(homeserver=HOMESERVER, shared_secret=SecretStr("rotated"))
        data.set_shared_secret_id(manager.charm.model, manager.charm.model.get_relation(ENDPOINT, 4))
        after = manager.run()
    assert secret_by_label(after, lib.SHARED_SECRET_LABEL).latest_content == {"shared-secret-content": "rotated"}


def test_publishing_needs_a_shared_secret(ctx: testing.Context[ProviderCharm]) -> None:
    with ctx(ctx.on.update_status(), testing.State(leader=True, relations={relation(4)})) as manager:
        data = lib.MatrixAuthProviderData(homeserver=HOMESERVER)
        with pytest.raises(lib.MatrixAuthError, match="no shared secret"):
            data.to_relation_data(manager.charm.model, manager.charm.model.get_relation(ENDPOINT, 4))


def test_a_non_leader_publishes_nothing(ctx: testing.Context[ProviderCharm]) -> None:
    out = published(ctx, 4, leader=False)
    assert databag(out, 4) == {} and not out.secrets


def test_revoking_removes_the_relations_grants(ctx: testing.Context[ProviderCharm]) -> None:
    out = published(ctx, 4, 5)
    gone = out.get_relation(5)
    after = ctx.run(ctx.on.relation_broken(gone), out)
    for secret in after.secrets:
        assert set(secret.remote_grants) == {4}


def test_revoking_a_relation_we_never_published_on_does_nothing(ctx: testing.Context[ProviderCharm]) -> None:
    state = testing.State(leader=True, relations={relation(4)})
    after = ctx.run(ctx.on.relation_broken(state.get_relation(4)), state)
    assert not after.secrets


def test_invalid_homeserver_is_refused() -> None:
    with pytest.raises(ValueError, match="not an http"):
        lib.MatrixAuthProviderData(homeserver="chat.example.com")


# --- requirer, and the round trip -----------------------------------------------------------


def test_the_bridge_gets_the_url_and_shared_secret_and_its_registration_comes_back(
    ctx: testing.Context[ProviderCharm],
) -> None:
    provider = published(ctx, 4)
    bridge = Bridge(4, registration_yaml())
    bridge.receive(provider)
    (seen,) = SEEN
    assert seen.homeserver == HOMESERVER
    assert seen.shared_secret is not None and seen.shared_secret.get_secret_value() == SHARED_SECRET
    token = databag(bridge.state, 4)["registration_secret"]
    assert "as-token" not in token
    provider = bridge.send(provider)
    with ctx(ctx.on.relation_changed(provider.get_relation(4)), provider) as manager:
        data = manager.charm.provides.get_remote_relation_data()
        manager.run()
    assert data is not None and data.registration is not None
    assert data.registration.get_secret_value() == registration_yaml()
    assert RECEIVED == [4]


def test_the_bridge_does_not_rewrite_an_unchanged_registration(ctx: testing.Context[ProviderCharm]) -> None:
    provider = published(ctx, 4)
    bridge = Bridge(4, registration_yaml())
    first = databag(bridge.receive(provider), 4)["registration_secret"]
    assert databag(bridge.receive(provider), 4)["registration_secret"] == first
    bridge.state = dataclasses.replace(bridge.state, config={"registration": registration_yaml("other")})
    changed = databag(bridge.receive(provider), 4)["registration_secret"]
    assert changed != first


def test_the_bridge_waits_until_the_provider_sent_everything(ctx: testing.Context[ProviderCharm]) -> None:
    provider = published(ctx, 4)
    incomplete = dict(databag(provider, 4))
    del incomplete["encryption_key_secret_id"]
    relation_4 = dataclasses.replace(relation_of(provider, 4), local_app_data=incomplete)
    bridge = Bridge(4, registration_yaml())
    out = bridge.receive(with_relation(provider, relation_4))
    assert SEEN == [] and "registration_secret" not in databag(out, 4)


def test_the_bridge_waits_while_the_secrets_are_not_granted(ctx: testing.Context[ProviderCharm]) -> None:
    provider = published(ctx, 4)
    ungranted = dataclasses.replace(provider, secrets=frozenset())
    bridge = Bridge(4, registration_yaml())
    out = bridge.receive(ungranted)
    assert SEEN == [] and "registration_secret" not in databag(out, 4)
    with bridge.ctx(bridge.ctx.on.update_status(), out) as manager:
        with pytest.raises(lib.MatrixAuthError, match="not readable"):
            manager.charm.matrix_auth.get_remote_relation_data()


def test_the_requirer_without_a_relation_has_no_data() -> None:
    bridge = Bridge(4)
    with bridge.ctx(bridge.ctx.on.update_status(), testing.State(leader=True)) as manager:
        assert manager.charm.matrix_auth.get_remote_relation_data() is None


def test_a_registration_without_a_readable_key_is_not_sent() -> None:
    bridge = Bridge(4)
    remote = {"homeserver": HOMESERVER, "encryption_key_secret_id": "secret:nope"}
    state = with_relation(bridge.state, dataclasses.replace(bridge.relation, remote_app_data=remote))
    with bridge.ctx(bridge.ctx.on.update_status(), state) as manager:
        data = lib.MatrixAuthRequirerData(registration=SecretStr("id: x"))
        with pytest.raises(lib.MatrixAuthError, match="encryption key"):
            data.to_relation_data(manager.charm.model, manager.charm.model.get_relation(ENDPOINT))
        assert (
            lib.MatrixAuthRequirerData().to_relation_data(
                manager.charm.model, manager.charm.model.get_relation(ENDPOINT)
            )
            == {}
        )


def test_an_undecryptable_registration_emits_nothing_and_raises_on_read(ctx: testing.Context[ProviderCharm]) -> None:
    provider = published(ctx, 4)
    relation_4 = dataclasses.replace(relation_of(provider, 4), remote_app_data={"registration_secret": "garbage"})
    state = with_relation(provider, relation_4)
    with ctx(ctx.on.relation_changed(relation_4), state) as manager:
        manager.run()
        with pytest.raises(lib.MatrixAuthError, match="cannot be decrypted"):
            manager.charm.provides.get_remote_relation_data()
    assert RECEIVED == []


def test_a_registration_before_any_key_exists_raises(ctx: testing.Context[ProviderCharm]) -> None:
    relation_4 = relation(4, remote_app_data={"registration_secret": "garbage"})
    with ctx(ctx.on.start(), testing.State(leader=True, relations={relation_4})) as manager:
        with pytest.raises(lib.MatrixAuthError, match="does not exist yet"):
            manager.charm.provides.get_remote_relation_data()


def test_a_provider_without_relations_has_no_remote_data(ctx: testing.Context[ProviderCharm]) -> None:
    with ctx(ctx.on.start(), testing.State(leader=True)) as manager:
        assert manager.charm.provides.get_remote_relation_data() is None
    out = published(ctx, 4)
    with ctx(ctx.on.start(), out) as manager:
        assert manager.charm.provides.get_remote_relation_data() == lib.MatrixAuthRequirerData()


def test_a_bridge_without_registration_only_reads(ctx: testing.Context[ProviderCharm]) -> None:
    provider = published(ctx, 4)
    bridge = Bridge(4)
    out = bridge.receive(provider)
    assert len(SEEN) == 1 and databag(out, 4) == {}
    assert out.unit_status == ops.ActiveStatus()


def test_the_library_header() -> None:
    assert lib.LIBAPI == 1 and isinstance(lib.LIBPATCH, int) and len(lib.LIBID) == 32
    assert set(lib.PYDEPS) == {"pydantic>=2", "cryptography"}
