"""The saml relation (src/relations/saml.py): saml-integrator's wire format into Synapse's saml2_config."""

import base64
import dataclasses
import json
import typing
import xml.etree.ElementTree as ET

import ops
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ops import testing

from constants import CONFIG_PATH, SAML_ENDPOINT, SAML_IDP_METADATA_PATH, SERVICE_NAME
from tests.unit.conftest import CharmEnv, record_side_effects

CERT_BODY = base64.b64encode(b"\x30\x82 not really DER but base64 " * 4).decode()
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
SUPPORTED = json.dumps({"pysaml2": "7.5.0", "xmlsec1": "/usr/bin/xmlsec1"})


def recorded_answer(**changes: str) -> dict[str, str]:
    """saml-integrator's app databag, as its library writes it from the IdP's metadata."""
    data = {
        "entity_id": "https://login.staging.ubuntu.com",
        "metadata_url": "https://login.staging.ubuntu.com/saml/metadata",
        "x509certs": f"{CERT_BODY},{CERT_BODY[::-1].replace('=', '')}A==",
        "single_sign_on_service_redirect_url": "https://login.staging.ubuntu.com/saml/",
        "single_sign_on_service_redirect_binding": REDIRECT,
        "single_logout_service_redirect_url": "https://login.staging.ubuntu.com/+logout",
        "single_logout_service_redirect_binding": REDIRECT,
        "single_logout_service_redirect_response_url": "https://login.staging.ubuntu.com/+logout/done",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != "<absent>"}


def saml_relation(remote_app_data: dict[str, str]) -> testing.Relation:
    """The saml relation with saml-integrator's answer."""
    return testing.Relation(SAML_ENDPOINT, remote_app_name="saml-integrator", remote_app_data=remote_app_data)


def related(state: testing.State) -> testing.Relation:
    """The saml relation in `state`."""
    (relation,) = state.get_relations(SAML_ENDPOINT)
    return typing.cast(testing.Relation, relation)


def image(support: str = SUPPORTED, return_code: int = 0) -> set[testing.Exec]:
    """The image's answer to the charm's SAML support check."""
    return {testing.Exec(["python", "-c"], return_code=return_code, stdout=support)}


def run_with(
    env: CharmEnv, remote_app_data: dict[str, str], support: str = SUPPORTED, **config: typing.Any
) -> testing.State:
    """pebble-ready of a leader related to saml-integrator."""
    state = env.state(config, relations={saml_relation(remote_app_data)}, container=env.container(execs=image(support)))
    return env.pebble_ready(state)


def homeserver(env: CharmEnv) -> dict[str, typing.Any]:
    """The rendered homeserver.yaml."""
    return typing.cast(dict[str, typing.Any], yaml.safe_load(env.read(CONFIG_PATH)))


def test_metadata_url_answer_renders_saml2_config(env: CharmEnv) -> None:
    out = run_with(env, recorded_answer(), public_baseurl="https://chat.example.com")
    assert out.unit_status == ops.ActiveStatus()
    doc = homeserver(env)
    assert doc["saml2_config"] == {
        "sp_config": {
            "entityid": "https://chat.example.com/",
            "metadata": {"remote": [{"url": "https://login.staging.ubuntu.com/saml/metadata"}]},
            "allow_unknown_attributes": True,
        },
        "idp_entityid": "https://login.staging.ubuntu.com",
        "user_mapping_provider": {"config": {"mxid_source_attribute": "uid"}},
    }
    assert doc["sso"] == {"client_whitelist": ["https://chat.example.com/"]}
    assert doc["password_config"] == {"enabled": True}
    assert not env.host_path(SAML_IDP_METADATA_PATH).exists()


def test_localpart_attribute_and_password_login_from_config(env: CharmEnv) -> None:
    run_with(env, recorded_answer(), saml_localpart_attribute="username", enable_password_config=False)
    doc = homeserver(env)
    assert doc["saml2_config"]["user_mapping_provider"]["config"]["mxid_source_attribute"] == "username"
    assert doc["password_config"] == {"enabled": False}


def test_without_metadata_url_the_charm_writes_idp_metadata(env: CharmEnv) -> None:
    out = run_with(env, recorded_answer(metadata_url="<absent>"))
    assert out.unit_status == ops.ActiveStatus()
    assert homeserver(env)["saml2_config"]["sp_config"]["metadata"] == {"local": [str(SAML_IDP_METADATA_PATH)]}
    root = ET.fromstring(env.read(SAML_IDP_METADATA_PATH))  # noqa: S314 (our own output)
    md = "{urn:oasis:names:tc:SAML:2.0:metadata}"
    ds = "{http://www.w3.org/2000/09/xmldsig#}"
    assert root.tag == f"{md}EntityDescriptor"
    assert root.attrib["entityID"] == "https://login.staging.ubuntu.com"
    (idp,) = root
    assert [child.tag.removeprefix(md) for child in idp] == [
        "KeyDescriptor",
        "KeyDescriptor",
        "SingleLogoutService",
        "SingleSignOnService",
    ]
    assert idp[0].find(f"{ds}KeyInfo/{ds}X509Data/{ds}X509Certificate").text == CERT_BODY  # type: ignore[union-attr]
    assert idp[3].attrib == {"Binding": REDIRECT, "Location": "https://login.staging.ubuntu.com/saml/"}
    assert idp[2].attrib["ResponseLocation"] == "https://login.staging.ubuntu.com/+logout/done"


def test_without_relations_password_login_is_on_and_there_is_no_sso_or_email(env: CharmEnv) -> None:
    env.pebble_ready(env.state())
    doc = homeserver(env)
    assert doc["password_config"] == {"enabled": True}
    assert "saml2_config" not in doc and "sso" not in doc and "email" not in doc


@pytest.mark.parametrize(
    ("support", "missing"),
    [
        (json.dumps({"pysaml2": None, "xmlsec1": "/usr/bin/xmlsec1"}), "pysaml2"),
        (json.dumps({"pysaml2": "7.5.0", "xmlsec1": None}), "xmlsec1"),
        (json.dumps({"pysaml2": None, "xmlsec1": None}), "pysaml2 Python package and the xmlsec1"),
        ("Traceback: boom", "unexpected answer"),
        ("[1, 2]", "unexpected answer"),
        ("", "unexpected answer"),
    ],
)
def test_image_without_saml_support_blocks(env: CharmEnv, support: str, missing: str) -> None:
    out = run_with(env, recorded_answer(), support)
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert missing in out.unit_status.message
    assert not env.host_path(CONFIG_PATH).exists()


def test_failed_support_check_blocks(env: CharmEnv) -> None:
    state = env.state(relations={saml_relation(recorded_answer())}, container=env.container(execs=image("", 1)))
    out = env.pebble_ready(state)
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "SAML support" in out.unit_status.message


def test_support_is_checked_only_with_a_saml_relation(env: CharmEnv) -> None:
    out = env.pebble_ready(env.state(container=env.container(execs=image("", 1))))
    assert out.unit_status == ops.ActiveStatus()
    assert env.ctx.exec_history == {}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"metadata_url": "ftp://idp.example/metadata"}, "metadata_url"),
        ({"metadata_url": "https://idp.example/a b"}, "metadata_url"),
        ({"entity_id": "has space"}, "entity_id"),
        ({"x509certs": "not*base64"}, "base64"),
        ({"single_sign_on_service_redirect_binding": "urn:bogus"}, "single_sign_on_service_redirect_binding"),
        ({"single_sign_on_service_redirect_url": "javascript:alert(1)"}, "single_sign_on_service_redirect_url"),
        ({"metadata_url": "<absent>", "single_sign_on_service_redirect_url": "<absent>"}, "single_sign_on_service"),
        ({"metadata_url": "<absent>", "x509certs": "<absent>"}, "x509certs"),
    ],
)
def test_malformed_answer_blocks_naming_the_key(env: CharmEnv, changes: dict[str, str], reason: str) -> None:
    out = run_with(env, recorded_answer(**changes))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert reason in out.unit_status.message
    assert "saml-integrator" in out.unit_status.message


def test_invalid_localpart_attribute_blocks(env: CharmEnv) -> None:
    out = env.pebble_ready(env.state({"saml_localpart_attribute": "a b"}))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "saml_localpart_attribute" in out.unit_status.message


def test_not_answered_yet_renders_no_saml(env: CharmEnv) -> None:
    out = run_with(env, {})
    assert out.unit_status == ops.ActiveStatus()
    assert "saml2_config" not in homeserver(env)


def test_no_op_hooks_restart_nothing_and_write_nothing(env: CharmEnv) -> None:
    out = env.ready(run_with(env, recorded_answer(metadata_url="<absent>")))
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_changed(related(out)), out)
        out = env.run(env.ctx.on.update_status(), out)
    assert effects.nothing
    assert out.unit_status == ops.ActiveStatus()


def test_relation_removed_drops_the_sections_with_one_restart(env: CharmEnv) -> None:
    out = env.ready(run_with(env, recorded_answer()))
    relation = related(out)
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_broken(relation), out)
        out = env.run(env.ctx.on.update_status(), dataclasses.replace(out, relations=out.relations - {relation}))
    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]
    doc = homeserver(env)
    assert "saml2_config" not in doc and "sso" not in doc
    assert out.unit_status == ops.ActiveStatus()


KEYS = (
    "entity_id",
    "metadata_url",
    "x509certs",
    "single_sign_on_service_redirect_url",
    "single_sign_on_service_post_url",
    "single_sign_on_service_post_binding",
    "single_logout_service_redirect_response_url",
    "bogus_service_redirect_url",
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.dictionaries(
        st.sampled_from(KEYS),
        st.one_of(
            st.sampled_from(["", "https://idp.example/x", REDIRECT, POST, CERT_BODY, "urn:x"]),
            st.text(max_size=40),
        ),
    )
)
def test_any_answer_ends_in_a_status(env: CharmEnv, data: dict[str, str]) -> None:
    relation = saml_relation({**recorded_answer(metadata_url="<absent>"), **data})
    state = env.state(relations={relation}, container=env.container(execs=image()))
    out = env.run(env.ctx.on.relation_changed(relation), state)
    assert isinstance(out.unit_status, ops.ActiveStatus | ops.BlockedStatus)
