"""The matrix-auth endpoint: the Synapse charm as provider, bridges built on our library, in two contexts.

Each bridge (tests/unit/lib/bridge.py) runs in its own ops.testing context; what Juju would
carry between the applications (databags, granted secrets) is copied explicitly.
"""

import dataclasses
import logging
import stat
import typing
from pathlib import Path

import ops
import pytest
import yaml
from charms.synapse.v1 import matrix_auth as lib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ops import testing

from constants import (
    APPSERVICES_DIR,
    CONFIG_PATH,
    MATRIX_AUTH_ENDPOINT,
    PEER_MATRIX_AUTH_KEY_ID,
    PEER_MATRIX_AUTH_SHARED_SECRET_ID,
    PEER_RELATION,
    SECRET_LABEL,
)
from relations.matrix_auth import AppserviceRegistration, RegistrationError, appservice_path, parse_registration
from tests.unit.conftest import HOSTILE_STRINGS, CharmEnv, record_side_effects
from tests.unit.lib.bridge import SEEN, Bridge, content, databag, registration_yaml, relation_of, with_relation

HOMESERVER = "https://example.com"
# Explicit IDs: an automatic one could collide with the bridges' relation IDs.
PEER = testing.PeerRelation(PEER_RELATION, id=1)


def bridge_relation(relation_id: int, app: str) -> testing.Relation:
    return testing.Relation(MATRIX_AUTH_ENDPOINT, id=relation_id, remote_app_name=app)


def key_secret(state: testing.State) -> testing.Secret:
    (secret,) = [secret for secret in state.secrets if secret.label == lib.ENCRYPTION_KEY_SECRET_LABEL]
    return secret


def shared_secret(state: testing.State) -> testing.Secret:
    (secret,) = [secret for secret in state.secrets if secret.label == lib.SHARED_SECRET_LABEL]
    return secret


def server_shared_secret(state: testing.State) -> str:
    (secret,) = [secret for secret in state.secrets if secret.label == SECRET_LABEL]
    return content(secret)["registration-shared-secret"]


def changed(env: CharmEnv, state: testing.State, relation_id: int) -> testing.State:
    return env.ctx.run(env.ctx.on.relation_changed(state.get_relation(relation_id)), state)


def added(env: CharmEnv, state: testing.State, relation_id: int, app: str) -> testing.State:
    """A new bridge relates: relation-created on our side (we publish to it)."""
    relation = bridge_relation(relation_id, app)
    return env.ctx.run(env.ctx.on.relation_created(relation), with_relation(state, relation))


def registered(env: CharmEnv, state: testing.State, bridge: Bridge) -> testing.State:
    """The bridge receives our data, sends its registration, and we run relation-changed."""
    bridge.receive(state)
    return changed(env, bridge.send(state), bridge.relation_id)


def installed_files(env: CharmEnv) -> list[str]:
    directory = env.host_path(APPSERVICES_DIR)
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


def config_files(env: CharmEnv) -> list[str] | None:
    return yaml.safe_load(env.read(CONFIG_PATH)).get("app_service_config_files")


@pytest.fixture
def provider(env: CharmEnv) -> testing.State:
    """A running leader related to one bridge (relation 10, "irc") that has not answered yet."""
    return env.started(relations={bridge_relation(10, "irc")}, peer=PEER)


# --- what bridges get --------------------------------------------------------------------------


def test_the_bridge_gets_the_homeserver_and_both_secrets(provider: testing.State) -> None:
    data = databag(provider, 10)
    assert data == {
        "homeserver": HOMESERVER,
        "shared_secret_id": shared_secret(provider).id,
        "encryption_key_secret_id": key_secret(provider).id,
    }
    bridge = Bridge(10)
    bridge.receive(provider)
    (seen,) = SEEN
    assert seen.homeserver == HOMESERVER
    assert seen.shared_secret is not None
    assert seen.shared_secret.get_secret_value() == server_shared_secret(provider)
    assert seen.encryption_key is not None
    assert seen.encryption_key.get_secret_value() == content(key_secret(provider))["encryption-key-content"]


def test_the_homeserver_is_the_public_baseurl(env: CharmEnv) -> None:
    out = env.started(
        {"public_baseurl": "https://matrix.example.com/base/"}, relations={bridge_relation(10, "irc")}, peer=PEER
    )
    assert databag(out, 10)["homeserver"] == "https://matrix.example.com/base"


def test_the_secret_ids_are_kept_in_peer_data(provider: testing.State) -> None:
    peer = databag(provider, PEER.id)
    assert peer[PEER_MATRIX_AUTH_KEY_ID] == key_secret(provider).id
    assert peer[PEER_MATRIX_AUTH_SHARED_SECRET_ID] == shared_secret(provider).id


def test_without_bridges_no_secret_is_made_and_no_appservice_is_configured(env: CharmEnv) -> None:
    out = env.started()
    assert {secret.label for secret in out.secrets} == {SECRET_LABEL}
    assert config_files(env) is None and installed_files(env) == []


# --- registrations -----------------------------------------------------------------------------


def test_a_registration_becomes_a_file_and_a_config_entry_with_one_restart(
    env: CharmEnv, provider: testing.State
) -> None:
    bridge = Bridge(10, registration_yaml("irc"))
    bridge.receive(provider)
    state = bridge.send(provider)
    with record_side_effects() as effects:
        out = changed(env, state, 10)
    assert effects.pebble.restarts == 1
    path = appservice_path(10)
    assert config_files(env) == [path]
    host = env.host_path(APPSERVICES_DIR / "matrix-auth-10.yaml")
    assert stat.S_IMODE(host.stat().st_mode) == 0o600
    written = yaml.safe_load(host.read_text())
    assert written == {
        **yaml.safe_load(registration_yaml("irc")),
        "namespaces": {
            "users": [{"exclusive": True, "regex": "@irc_.*:example\\.com"}],
            "aliases": [],
            "rooms": [],
        },
    }
    with record_side_effects() as effects:
        again = changed(env, out, 10)
    assert effects.nothing
    assert again.unit_status == out.unit_status


def test_the_key_is_the_same_after_20_reconciles_and_a_leader_change(env: CharmEnv, provider: testing.State) -> None:
    key, shared = key_secret(provider), shared_secret(provider)
    state = registered(env, provider, Bridge(10, registration_yaml("irc")))
    for index in range(20):
        event = env.ctx.on.update_status() if index % 2 else env.ctx.on.config_changed()
        with record_side_effects() as effects:
            state = env.run(event, state)
        assert effects.pebble.restarts == 0 and not effects.relation_writes
    follower = env.run(env.ctx.on.update_status(), dataclasses.replace(state, leader=False))
    assert installed_files(env) == ["matrix-auth-10.yaml"]  # a non-leader decrypts with the same key
    new_leader = env.run(env.ctx.on.leader_elected(), dataclasses.replace(follower, leader=True))
    assert content(key_secret(new_leader)) == content(key) and key_secret(new_leader).id == key.id
    assert shared_secret(new_leader).id == shared.id
    assert len(new_leader.secrets) == 3
    assert databag(new_leader, 10)["encryption_key_secret_id"] == key.id
    assert installed_files(env) == ["matrix-auth-10.yaml"]


def test_a_second_and_third_bridge_get_the_same_secrets(env: CharmEnv, provider: testing.State) -> None:
    state = registered(env, provider, Bridge(10, registration_yaml("irc")))
    state = added(env, added(env, state, 11, "tg"), 12, "bot")
    databags = [databag(state, rid) for rid in (10, 11, 12)]
    assert databags[0] == databags[1] == databags[2]
    assert len(state.secrets) == 3
    assert set(key_secret(state).remote_grants) == set(shared_secret(state).remote_grants) == {10, 11, 12}
    state = registered(env, state, Bridge(11, registration_yaml("tg")))
    maubot = Bridge(12)  # reads only
    maubot.receive(state)
    assert {seen.shared_secret.get_secret_value() for seen in SEEN if seen.shared_secret} == {
        server_shared_secret(state)
    }
    assert installed_files(env) == ["matrix-auth-10.yaml", "matrix-auth-11.yaml"]
    assert config_files(env) == [appservice_path(10), appservice_path(11)]


def test_a_changed_registration_restarts_once(env: CharmEnv, provider: testing.State) -> None:
    bridge = Bridge(10, registration_yaml("irc"))
    state = registered(env, provider, bridge)
    bridge.state = dataclasses.replace(
        bridge.state, config={"registration": registration_yaml("irc", url="http://10.9.9.9:1")}
    )
    bridge.receive(state)
    with record_side_effects() as effects:
        changed(env, bridge.send(state), 10)
    assert effects.pebble.restarts == 1
    assert yaml.safe_load(env.host_path(APPSERVICES_DIR / "matrix-auth-10.yaml").read_text())["url"] == (
        "http://10.9.9.9:1"
    )


def test_a_broken_relation_removes_its_file_and_revokes_its_grants(env: CharmEnv, provider: testing.State) -> None:
    state = registered(env, provider, Bridge(10, registration_yaml("irc")))
    state = added(env, state, 11, "tg")
    state = registered(env, state, Bridge(11, registration_yaml("tg")))
    with record_side_effects() as effects:
        out = env.ctx.run(env.ctx.on.relation_broken(state.get_relation(10)), state)
    assert effects.pebble.restarts == 1
    assert installed_files(env) == ["matrix-auth-11.yaml"]
    assert config_files(env) == [appservice_path(11)]
    assert set(key_secret(out).remote_grants) == set(shared_secret(out).remote_grants) == {11}


def test_the_last_bridge_leaving_removes_the_config_entry(env: CharmEnv, provider: testing.State) -> None:
    state = registered(env, provider, Bridge(10, registration_yaml("irc")))
    env.ctx.run(env.ctx.on.relation_broken(state.get_relation(10)), state)
    assert installed_files(env) == [] and config_files(env) is None


def test_a_registration_withdrawn_by_the_bridge_is_removed(env: CharmEnv, provider: testing.State) -> None:
    state = registered(env, provider, Bridge(10, registration_yaml("irc")))
    relation = dataclasses.replace(relation_of(state, 10), remote_app_data={})
    with record_side_effects() as effects:
        env.ctx.run(
            env.ctx.on.relation_changed(relation),
            with_relation(state, relation),
        )
    assert effects.pebble.restarts == 1 and installed_files(env) == []


# --- bad registrations -------------------------------------------------------------------------

BAD_REGISTRATIONS = {
    "not YAML": ("id: [unclosed\n", "not valid YAML (line"),
    "not a mapping": ("- a\n- b\n", "not a YAML mapping"),
    "invalid regex": (registration_yaml("irc").replace('"@irc_.*:example\\\\.com"', '"("'), "namespaces.users.0.regex"),
    "no as_token": (
        "\n".join(line for line in registration_yaml("irc").splitlines() if "as_token" not in line),
        "as_token: Field required",
    ),
    "no url key": (
        "\n".join(line for line in registration_yaml("irc").splitlines() if "url:" not in line),
        "url: Field required",
    ),
    "bad url": (registration_yaml("irc", url="ftp://x"), "url: must be an http"),
    "bad sender": (registration_yaml("irc", sender_localpart="Bad Bot"), "sender_localpart"),
    "non-bool exclusive": (registration_yaml("irc").replace("exclusive: true", "exclusive: maybe"), "exclusive"),
}


@pytest.mark.parametrize("name", list(BAD_REGISTRATIONS))
def test_a_bad_registration_is_reported_and_left_out_without_stopping_synapse(
    env: CharmEnv, provider: testing.State, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    text, reason = BAD_REGISTRATIONS[name]
    state = registered(env, provider, Bridge(10, registration_yaml("irc")))
    state = added(env, state, 11, "tg")
    caplog.set_level(logging.DEBUG)
    with record_side_effects() as effects:
        out = registered(env, state, Bridge(11, text))
    assert effects.pebble.count("stop") == 0 and effects.pebble.restarts == 0
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "matrix-auth relation 11 (tg): registration left out" in out.unit_status.message
    assert reason in out.unit_status.message
    assert installed_files(env) == ["matrix-auth-10.yaml"]
    assert config_files(env) == [appservice_path(10)]
    for token in ("irc-as-token", "irc-hs-token", "tg-as-token", "tg-hs-token"):
        assert token not in out.unit_status.message and token not in caplog.text


def test_an_undecryptable_registration_is_reported(env: CharmEnv, provider: testing.State) -> None:
    relation = dataclasses.replace(relation_of(provider, 10), remote_app_data={"registration_secret": "garbage"})
    state = with_relation(provider, relation)
    out = changed(env, state, 10)
    assert out.unit_status == ops.BlockedStatus(
        "matrix-auth relation 10 (irc): registration left out: registration_secret: it cannot be decrypted with the "
        "provider's encryption key; fix the bridge's registration"
    )
    assert installed_files(env) == []


def test_a_fixed_registration_clears_the_status(env: CharmEnv, provider: testing.State) -> None:
    state = registered(env, provider, Bridge(10, "- not a registration\n"))
    assert isinstance(state.unit_status, ops.BlockedStatus)
    state = registered(env, state, Bridge(10, registration_yaml("irc")))
    assert not isinstance(state.unit_status, ops.BlockedStatus)
    assert installed_files(env) == ["matrix-auth-10.yaml"]


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (registration_yaml("tg", id="irc"), "its id 'irc' is already used by relation 10"),
        (registration_yaml("tg", as_token="irc-as-token-0123456789"), "its as_token is already used by relation 10"),
    ],
)
def test_ids_and_as_tokens_are_unique_across_relations(
    env: CharmEnv, provider: testing.State, second: str, reason: str
) -> None:
    state = registered(env, provider, Bridge(10, registration_yaml("irc")))
    state = added(env, state, 11, "tg")
    out = registered(env, state, Bridge(11, second))
    assert isinstance(out.unit_status, ops.BlockedStatus) and reason in out.unit_status.message
    assert installed_files(env) == ["matrix-auth-10.yaml"]


def test_a_follower_before_the_key_is_published_renders_no_registration(env: CharmEnv, provider: testing.State) -> None:
    state = registered(env, provider, Bridge(10, registration_yaml("irc")))
    peer = next(rel for rel in state.relations if rel.endpoint == PEER_RELATION)
    bare_peer = dataclasses.replace(
        peer, local_app_data={k: v for k, v in databag(state, peer.id).items() if k != PEER_MATRIX_AUTH_KEY_ID}
    )
    follower = dataclasses.replace(with_relation(state, bare_peer), leader=False)
    out = env.run(env.ctx.on.update_status(), follower)
    assert isinstance(out.unit_status, ops.BlockedStatus)  # on standby
    assert installed_files(env) == []


# --- the registration parser, for any input ------------------------------------------------------

VALID = yaml.safe_load(registration_yaml("irc"))
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
_documents = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
_field_names = st.sampled_from(
    [*VALID, "namespaces.users", "receive_ephemeral", "ip_range_whitelist", "org.matrix.msc3202"]
)


def _check_parse(text: str) -> AppserviceRegistration | None:
    try:
        registration = parse_registration(text)
    except RegistrationError as exc:
        assert "irc-as-token" not in str(exc) and "irc-hs-token" not in str(exc)
        return None
    reparsed = parse_registration(registration.to_yaml())
    assert reparsed == registration
    return registration


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | st.sampled_from(HOSTILE_STRINGS))
def test_any_text_is_a_registration_or_a_registration_error(text: str) -> None:
    _check_parse(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_field_names, _documents, max_size=4))
def test_any_change_to_a_valid_registration_parses_or_is_refused(changes: dict[str, typing.Any]) -> None:
    document = dict(VALID)
    for name, value in changes.items():
        if name == "namespaces.users":
            namespaces = document["namespaces"] if isinstance(document.get("namespaces"), dict) else {}
            document["namespaces"] = {**namespaces, "users": value}
        else:
            document[name] = value
    _check_parse(yaml.safe_dump(document))


def test_unknown_fields_are_dropped_and_known_ones_kept() -> None:
    text = (
        registration_yaml("irc") + "receive_ephemeral: true\nde.sorunome.msc2409.push_ephemeral: true\nsomething: 1\n"
    )
    written = yaml.safe_load(parse_registration(text).to_yaml())
    assert written["receive_ephemeral"] is True and written["de.sorunome.msc2409.push_ephemeral"] is True
    assert "something" not in written and written["rate_limited"] is False and written["protocols"] == ["irc"]
    assert "rate_limited" not in yaml.safe_load(
        parse_registration(registration_yaml("x").replace("rate_limited: false\n", "")).to_yaml()
    )


def test_url_may_be_explicitly_null() -> None:
    assert parse_registration(registration_yaml("irc", url="null")).url is None


def test_tokens_stay_out_of_reprs_and_errors() -> None:
    registration = parse_registration(registration_yaml("irc"))
    assert "irc-as-token" not in repr(registration)
    with pytest.raises(RegistrationError) as caught:
        parse_registration(registration_yaml("irc", as_token='"has space"'))
    assert "has space" not in str(caught.value) and "as_token" in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"id": '"a|b"'}, "id: must be"),
        ({"sender_localpart": "synapse-charm-admin"}, "the charm's own admin account"),
        ({"url": "http://"}, "url: must be"),
        ({"url": "http://host:99999"}, "url: must be"),
    ],
)
def test_fields_synapse_would_refuse(overrides: dict[str, str], reason: str) -> None:
    with pytest.raises(RegistrationError, match=reason):
        parse_registration(registration_yaml("irc", **overrides))


def test_ip_ranges_must_be_cidrs() -> None:
    assert parse_registration(registration_yaml("irc") + "ip_range_whitelist: [10.0.0.0/8]\n").ip_range_whitelist == (
        "10.0.0.0/8",
    )
    with pytest.raises(RegistrationError, match="ip_range_whitelist"):
        parse_registration(registration_yaml("irc") + "ip_range_whitelist: [nope]\n")


def test_oversized_and_deeply_nested_registrations_are_refused() -> None:
    with pytest.raises(RegistrationError, match="larger than"):
        parse_registration("a: " + "x" * 70000)
    with pytest.raises(RegistrationError):
        parse_registration("[" * 5000 + "]" * 5000)


def test_the_endpoint_is_declared() -> None:
    metadata = yaml.safe_load((Path(__file__).resolve().parents[3] / "metadata.yaml").read_text())
    assert metadata["provides"][MATRIX_AUTH_ENDPOINT] == {"interface": "matrix_auth", "optional": True}
    assert MATRIX_AUTH_ENDPOINT == lib.DEFAULT_RELATION_NAME


def test_a_damaged_key_secret_is_reported_without_crashing(env: CharmEnv, provider: testing.State) -> None:
    state = registered(env, provider, Bridge(10, registration_yaml("irc")))
    damaged = dataclasses.replace(key_secret(state), tracked_content={"other": "x"}, latest_content={"other": "x"})
    state = dataclasses.replace(state, secrets=frozenset({*(s for s in state.secrets if s.id != damaged.id), damaged}))
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.update_status(), state)
    assert effects.pebble.count("stop") == 0
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "holds no encryption key: restore its content" in out.unit_status.message
    assert key_secret(out).id == damaged.id  # never replaced behind the operator's back


def test_a_failed_revoke_does_not_fail_the_hook(
    env: CharmEnv, provider: testing.State, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = registered(env, provider, Bridge(10, registration_yaml("irc")))

    def refuse(*_args: typing.Any, **_kwargs: typing.Any) -> None:
        raise ops.ModelError("ERROR relation 10 not found")

    monkeypatch.setattr(ops.Secret, "revoke", refuse)
    env.ctx.run(env.ctx.on.relation_broken(relation_of(state, 10)), state)
    assert installed_files(env) == []
