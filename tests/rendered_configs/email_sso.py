"""Scenarios with the smtp relation (smtp-integrator) and the saml relation (saml-integrator).

The SMTP password comes from a Juju secret, with YAML and Jinja specials on purpose. SAML
uses certificates and endpoints (the charm writes the IdP metadata under /data): a
metadata URL would make Synapse's loader fetch it, which tests/workload/test_saml.py does
against a served one. The image's SAML support check is answered by an ops.testing Exec mock.
"""

import base64
import json

from ops import testing

from constants import SAML_ENDPOINT, SMTP_ENDPOINT
from tests.rendered_configs import ConfigValue, Stage, scenario

PASSWORD = "s3cret'\"{{ }}: #pass\n%(app)s"
CERTIFICATES = [base64.b64encode(bytes(range(256))).decode(), base64.b64encode(bytes(range(255, -1, -1))).decode()]
SAML_SUPPORTED = json.dumps({"pysaml2": "7.5.0", "xmlsec1": "/usr/bin/xmlsec1"})


def _smtp(secret: testing.Secret, **changes: str) -> testing.Relation:
    """The smtp relation as smtp-integrator answers it."""
    data = {
        "host": "smtp.example.com",
        "port": "587",
        "user": "synapse@example.com",
        "password_id": secret.id,
        "auth_type": "plain",
        "transport_security": "starttls",
        "domain": "example.com",
        "skip_ssl_verify": "False",
    } | changes
    return testing.Relation(SMTP_ENDPOINT, interface="smtp", remote_app_name="smtp-integrator", remote_app_data=data)


def _saml() -> testing.Relation:
    """The saml relation with certificates and endpoints but no metadata URL."""
    data = {
        "entity_id": "https://idp.example.com/saml/metadata",
        "x509certs": ",".join(CERTIFICATES),
        "single_sign_on_service_redirect_url": "https://idp.example.com/saml/sso?a=1&b='2'",
        "single_sign_on_service_redirect_binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
        "single_sign_on_service_post_url": "https://idp.example.com/saml/sso/post",
        "single_logout_service_redirect_url": "https://idp.example.com/saml/slo",
        "single_logout_service_redirect_response_url": "https://idp.example.com/saml/slo/done",
    }
    return testing.Relation(SAML_ENDPOINT, interface="saml", remote_app_name="saml-integrator", remote_app_data=data)


@scenario("smtp-starttls")
def smtp_starttls(stage: Stage) -> testing.State:
    """STARTTLS, the default notif_from."""
    secret = testing.Secret({"password": PASSWORD})
    return stage.state(relations=[_smtp(secret)], secrets={secret})


@scenario("smtp-implicit-tls-notifications")
def smtp_tls(stage: Stage) -> testing.State:
    """Implicit TLS, a notif_from with the '%(app)s' placeholder and quotes, notifications on."""
    secret = testing.Secret({"password": PASSWORD})
    config: dict[str, ConfigValue] = {"enable_email_notifs": True}
    config["notif_from"] = '"Chat\'s %(app)s" <noreply+chat@example.com>'
    return stage.state(config, relations=[_smtp(secret, transport_security="tls", port="465")], secrets={secret})


@scenario("saml-certificates-and-endpoints")
def saml_local_metadata(stage: Stage) -> testing.State:
    """SAML from certificates and endpoints, a URN localpart attribute."""
    container = stage.container(execs={testing.Exec(["python", "-c"], stdout=SAML_SUPPORTED)})
    config = {"saml_localpart_attribute": "urn:oid:0.9.2342.19200300.100.1.1"}
    return stage.state(config, relations=[_saml()], container=container)


@scenario("smtp-and-saml-without-passwords")
def both(stage: Stage) -> testing.State:
    """Both relations, password login off, a public_baseurl with a path."""
    secret = testing.Secret({"password": PASSWORD})
    container = stage.container(execs={testing.Exec(["python", "-c"], stdout=SAML_SUPPORTED)})
    config: dict[str, ConfigValue] = {
        "enable_password_config": False,
        "public_baseurl": "https://matrix.example.com/synapse/",
    }
    return stage.state(config, relations=[_smtp(secret), _saml()], container=container, secrets={secret})
