"""The smtp relation (src/relations/smtp.py): smtp-integrator's wire format into Synapse's email section."""

import dataclasses
import logging
import typing

import ops
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ops import testing

from constants import CONFIG_PATH, SERVICE_NAME, SMTP_ENDPOINT
from tests.unit.conftest import HOSTILE_STRINGS, CharmEnv, record_side_effects

PASSWORD = "s3cret 'pass\"word\nwith: yaml"


def password_secret(content: dict[str, str] | None = None) -> testing.Secret:
    """The secret smtp-integrator owns and grants us (content key `password`)."""
    return testing.Secret(content if content is not None else {"password": PASSWORD})


def recorded_answer(secret: testing.Secret, **changes: str) -> dict[str, str]:
    """smtp-integrator's app databag on the `smtp` interface, as its library writes it."""
    data = {
        "host": "smtp.example.com",
        "port": "587",
        "user": "synapse@example.com",
        "password_id": secret.id,
        "auth_type": "plain",
        "transport_security": "starttls",
        "domain": "example.com",
        "skip_ssl_verify": "False",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != "<absent>"}


def smtp_relation(remote_app_data: dict[str, str]) -> testing.Relation:
    """The smtp relation with smtp-integrator's answer."""
    return testing.Relation(SMTP_ENDPOINT, remote_app_name="smtp-integrator", remote_app_data=remote_app_data)


def related(state: testing.State) -> testing.Relation:
    """The smtp relation in `state`."""
    (relation,) = state.get_relations(SMTP_ENDPOINT)
    return typing.cast(testing.Relation, relation)


def run_with(
    env: CharmEnv, remote_app_data: dict[str, str], secret: testing.Secret | None = None, **config: typing.Any
) -> testing.State:
    """pebble-ready of a leader related to smtp-integrator."""
    relation = smtp_relation(remote_app_data)
    state = env.state(config, relations={relation}, secrets={secret} if secret else set())
    return env.pebble_ready(state)


def email_section(env: CharmEnv) -> dict[str, typing.Any] | None:
    """The email section of the rendered homeserver.yaml."""
    return yaml.safe_load(env.read(CONFIG_PATH)).get("email")


def test_starttls_answer_renders_the_email_section(env: CharmEnv) -> None:
    secret = password_secret()
    out = run_with(env, recorded_answer(secret), secret)
    assert out.unit_status == ops.ActiveStatus()
    assert email_section(env) == {
        "smtp_host": "smtp.example.com",
        "smtp_port": 587,
        "smtp_user": "synapse@example.com",
        "smtp_pass": PASSWORD,
        "enable_tls": True,
        "require_transport_security": True,
        "notif_from": "%(app)s <noreply@example.com>",
        "enable_notifs": False,
    }
    assert (env.host_path(CONFIG_PATH).stat().st_mode & 0o777) == 0o600


def test_tls_answer_forces_tls(env: CharmEnv) -> None:
    secret = password_secret()
    run_with(env, recorded_answer(secret, transport_security="tls", port="465"), secret)
    section = email_section(env)
    assert section is not None
    assert (section["smtp_port"], section["force_tls"], section["enable_tls"]) == (465, True, True)
    assert "require_transport_security" not in section


def test_notif_from_and_notifications_from_config(env: CharmEnv) -> None:
    secret = password_secret()
    run_with(env, recorded_answer(secret), secret, notif_from="Chat <chat@example.org>", enable_email_notifs=True)
    section = email_section(env)
    assert section is not None
    assert (section["notif_from"], section["enable_notifs"]) == ("Chat <chat@example.org>", True)


def test_the_password_stays_out_of_the_plan_and_logs(env: CharmEnv, caplog: pytest.LogCaptureFixture) -> None:
    secret = password_secret()
    with caplog.at_level(logging.DEBUG):
        out = run_with(env, recorded_answer(secret), secret)
    plan = out.get_container("synapse").plan.to_dict()
    assert PASSWORD not in repr(plan)
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(related(out).local_app_data)


def test_rotated_password_is_read_from_the_latest_revision(env: CharmEnv) -> None:
    secret = password_secret()
    out = env.ready(run_with(env, recorded_answer(secret), secret))
    rotated = dataclasses.replace(secret, latest_content={"password": "rotated"})
    secrets = frozenset({*(other for other in out.secrets if other.id != secret.id), rotated})
    with record_side_effects() as effects:
        env.run(env.ctx.on.secret_changed(rotated), dataclasses.replace(out, secrets=secrets))
    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]
    assert (email_section(env) or {})["smtp_pass"] == "rotated"


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"transport_security": "none"}, "transport_security=none"),
        ({"auth_type": "none"}, "auth_type=none"),
        ({"skip_ssl_verify": "True"}, "skip_ssl_verify=True"),
        ({"user": "<absent>", "password_id": "<absent>", "auth_type": "not_provided"}, "no user"),
        ({"password_id": "<absent>"}, "no password_id"),
        ({"password_id": "<absent>", "password": "plain"}, "plain relation data"),
    ],
)
def test_insecure_settings_are_refused_naming_the_setting(env: CharmEnv, changes: dict[str, str], setting: str) -> None:
    secret = password_secret()
    out = run_with(env, recorded_answer(secret, **changes), secret)
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert setting in out.unit_status.message
    assert "juju" in out.unit_status.message
    assert not env.host_path(CONFIG_PATH).exists()


def test_insecure_change_keeps_synapse_on_its_last_good_config(env: CharmEnv) -> None:
    secret = password_secret()
    out = env.ready(run_with(env, recorded_answer(secret), secret))
    before = env.read(CONFIG_PATH)
    relation = dataclasses.replace(related(out), remote_app_data=recorded_answer(secret, transport_security="none"))
    others = frozenset(other for other in out.relations if other.endpoint != SMTP_ENDPOINT)
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_changed(relation), dataclasses.replace(out, relations=others | {relation}))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert effects.pebble.calls == []
    assert env.read(CONFIG_PATH) == before


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"port": "99999"}, "port"), ({"host": "bad host"}, "host"), ({"auth_type": "xoauth"}, "auth_type")],
)
def test_malformed_answer_blocks_naming_the_field(env: CharmEnv, changes: dict[str, str], field: str) -> None:
    secret = password_secret()
    out = run_with(env, recorded_answer(secret, **changes), secret)
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert f"invalid {field}" in out.unit_status.message


def test_secret_not_granted_blocks(env: CharmEnv) -> None:
    out = run_with(env, recorded_answer(password_secret()))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "SMTP password" in out.unit_status.message


def test_secret_without_password_blocks(env: CharmEnv) -> None:
    secret = password_secret({"other": "x"})
    out = run_with(env, recorded_answer(secret), secret)
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "has no password" in out.unit_status.message


def test_not_answered_yet_renders_no_email(env: CharmEnv) -> None:
    out = run_with(env, {})
    assert not isinstance(out.unit_status, ops.BlockedStatus)
    assert email_section(env) is None


def test_no_op_hooks_restart_nothing_and_write_nothing(env: CharmEnv) -> None:
    secret = password_secret()
    out = env.ready(run_with(env, recorded_answer(secret), secret))
    relation = related(out)
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_changed(relation), out)
        out = env.run(env.ctx.on.update_status(), out)
        out = env.run(env.ctx.on.config_changed(), out)
    assert effects.nothing
    assert out.unit_status == ops.ActiveStatus()


def test_relation_removed_drops_the_section_with_one_restart(env: CharmEnv) -> None:
    secret = password_secret()
    out = env.ready(run_with(env, recorded_answer(secret), secret))
    relation = related(out)
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_broken(relation), out)
        out = env.run(env.ctx.on.update_status(), dataclasses.replace(out, relations=out.relations - {relation}))
    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]
    assert email_section(env) is None
    assert PASSWORD not in env.read(CONFIG_PATH)


@pytest.mark.parametrize("value", HOSTILE_STRINGS)
def test_hostile_notif_from_never_changes_the_document(env: CharmEnv, value: str) -> None:
    secret = password_secret()
    out = run_with(env, recorded_answer(secret), secret, notif_from=f"x{value}y <a@b.example>")
    if isinstance(out.unit_status, ops.BlockedStatus):
        assert "notif_from" in out.unit_status.message
        return
    assert (email_section(env) or {})["notif_from"] == f"x{value}y <a@b.example>".strip()


@pytest.mark.parametrize("value", ["no-address", "50% <a@b.example>", "@example.com", "a@"])
def test_invalid_notif_from_blocks(env: CharmEnv, value: str) -> None:
    out = env.pebble_ready(env.state({"notif_from": value}))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "notif_from" in out.unit_status.message


FIELDS = ("host", "port", "user", "password_id", "password", "auth_type", "transport_security", "skip_ssl_verify")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.dictionaries(
        st.sampled_from(FIELDS),
        st.one_of(
            st.sampled_from(["", "none", "plain", "starttls", "tls", "True", "587", "smtp.example.com"]),
            st.text(max_size=30),
        ),
    )
)
def test_any_answer_ends_in_a_status(env: CharmEnv, data: dict[str, str]) -> None:
    secret = password_secret()
    relation = smtp_relation({**recorded_answer(secret), **data})
    out = env.run(env.ctx.on.relation_changed(relation), env.state(relations={relation}, secrets={secret}))
    assert isinstance(out.unit_status, ops.ActiveStatus | ops.BlockedStatus | ops.WaitingStatus | ops.MaintenanceStatus)
