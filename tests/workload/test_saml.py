"""SAML through the saml relation, with a real Synapse (pysaml2 + xmlsec1) and IdP metadata the test serves.

The test plays saml-integrator: it generates IdP metadata (entity ID, signing certificate,
SSO endpoint), serves it over HTTP on 127.0.0.1 and relates the charm to it. Synapse must
boot on the charm's saml2_config, publish SP metadata with public_baseurl as its entity ID,
and send a browser that asks for SSO to the IdP's SSO URL with a SAML request. Then the
same with certificates and endpoints instead of a URL (the charm writes the metadata), and
finally the relation is removed: one restart, no SAML.
"""

import base64
import dataclasses
import datetime
import http.client
import threading
import typing
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ops import testing

from constants import SAML_ENDPOINT, SYNAPSE_PORT
from tests.workload import harness

PUBLIC_BASEURL = f"http://127.0.0.1:{SYNAPSE_PORT}/"
IDP_ENTITY_ID = "https://idp.test/saml/metadata"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"


def idp_certificate_body() -> str:
    """A self-signed IdP signing certificate, as the base64 body metadata carries."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def idp_metadata(sso_url: str, certificate: str) -> bytes:
    """IdP metadata as an IdP publishes it."""
    return f"""<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="{MD}" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{IDP_ENTITY_ID}">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{certificate}</ds:X509Certificate>
    </ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleSignOnService Binding="{REDIRECT}" Location="{sso_url}"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
""".encode()


@dataclasses.dataclass
class FakeIdP:
    """An HTTP server on 127.0.0.1 serving IdP metadata at /metadata.xml (and counting fetches)."""

    server: ThreadingHTTPServer
    certificate: str
    fetches: int = 0

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>"""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def sso_url(self) -> str:
        """The IdP's SSO endpoint (HTTP-Redirect binding)."""
        return f"{self.base_url}/sso"

    @property
    def metadata_url(self) -> str:
        """Where the metadata is served."""
        return f"{self.base_url}/metadata.xml"


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdP]:
    """The test's IdP metadata server."""
    certificate = idp_certificate_body()
    holder: list[FakeIdP] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: typing.Any) -> None:
            """Stay quiet."""

        def do_GET(self) -> None:
            fake = holder[0]
            if self.path != "/metadata.xml":
                self.send_error(404)
                return
            fake.fetches += 1
            body = idp_metadata(fake.sso_url, fake.certificate)
            self.send_response(200)
            self.send_header("Content-Type", "application/samlmetadata+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(FakeIdP(server, certificate))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()


def saml_answer(fake: FakeIdP, with_url: bool) -> dict[str, str]:
    """saml-integrator's databag for the fake IdP: with its metadata URL, or only certificates and endpoints."""
    data = {
        "entity_id": IDP_ENTITY_ID,
        "x509certs": fake.certificate,
        "single_sign_on_service_redirect_url": fake.sso_url,
        "single_sign_on_service_redirect_binding": REDIRECT,
    }
    if with_url:
        data["metadata_url"] = fake.metadata_url
    return data


def with_saml(driver: harness.CharmDriver, data: dict[str, str] | None) -> testing.Relation | None:
    """Replace the saml relation in the driver's State (None: remove it); return the relation."""
    current = [rel for rel in driver.state.relations if rel.endpoint == SAML_ENDPOINT]
    others = frozenset(rel for rel in driver.state.relations if rel.endpoint != SAML_ENDPOINT)
    if data is None:
        driver.state = dataclasses.replace(driver.state, relations=others)
        return typing.cast(testing.Relation, current[0]) if current else None
    relation = (
        dataclasses.replace(typing.cast(testing.Relation, current[0]), remote_app_data=data)
        if current
        else testing.Relation(SAML_ENDPOINT, remote_app_name="saml-integrator", remote_app_data=data)
    )
    driver.state = dataclasses.replace(driver.state, relations=others | {relation})
    return relation


def raw_get(path: str) -> http.client.HTTPResponse:
    """GET from the local Synapse without following redirects."""
    connection = http.client.HTTPConnection(harness.HOST, SYNAPSE_PORT, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def assert_sp_metadata() -> None:
    """Synapse's SP metadata names public_baseurl as entity ID and its ACS under it."""
    status, body = harness.http_get("/_synapse/client/saml2/metadata.xml")
    assert status == 200, body[:300]
    root = ET.fromstring(body)  # noqa: S314 (our own Synapse's output)
    assert root.attrib["entityID"] == PUBLIC_BASEURL
    services = root.findall(f".//{{{MD}}}AssertionConsumerService")
    assert [service.attrib["Location"] for service in services] == [
        f"{PUBLIC_BASEURL}_synapse/client/saml2/authn_response"
    ]


def assert_sso_redirects_to(sso_url: str) -> None:
    """/login/sso/redirect sends the browser to the IdP's SSO URL with a SAML request."""
    response = raw_get(f"/_matrix/client/v3/login/sso/redirect?redirectUrl={PUBLIC_BASEURL}")
    assert response.status == 302, response.status
    location = response.getheader("Location") or ""
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == sso_url, location
    assert "SAMLRequest" in parse_qs(parts.query), location


@pytest.fixture(scope="module")
def deployed(
    tmp_path_factory: pytest.TempPathFactory, synapse_venv: Path, idp: FakeIdP
) -> Iterator[harness.CharmDriver]:
    """A unit related to the fake IdP by metadata URL, with its real Synapse."""
    base = tmp_path_factory.mktemp("saml")
    driver = harness.CharmDriver(
        base / "data",
        {"server_name": "saml.test", "public_baseurl": PUBLIC_BASEURL},
        venv=synapse_venv,
        log_path=base / "synapse.log",
    )
    with_saml(driver, saml_answer(idp, with_url=True))
    try:
        driver.deploy()
        yield driver
    finally:
        driver.stop()


def test_synapse_boots_on_the_metadata_url(deployed: harness.CharmDriver, idp: FakeIdP) -> None:
    assert deployed.process.is_alive(), deployed.process.log_tail()
    assert deployed.state.unit_status.name == "active", deployed.state.unit_status
    assert idp.fetches >= 1
    assert any(command[:2] == ["python", "-c"] for command in deployed.execs)  # the image was checked


def test_sp_metadata_has_the_entity_id_and_acs(deployed: harness.CharmDriver) -> None:
    assert_sp_metadata()


def test_sso_redirect_goes_to_the_idp(deployed: harness.CharmDriver, idp: FakeIdP) -> None:
    assert_sso_redirects_to(idp.sso_url)


def test_certificates_and_endpoints_without_a_url(deployed: harness.CharmDriver, idp: FakeIdP) -> None:
    relation = with_saml(deployed, saml_answer(idp, with_url=False))
    starts = deployed.starts
    fetches = idp.fetches
    deployed.run(deployed.ctx.on.relation_changed(relation))
    assert deployed.starts == starts + 1
    assert idp.fetches == fetches  # the charm's own metadata file, not the URL
    assert_sp_metadata()
    assert_sso_redirects_to(idp.sso_url)


def test_relation_removed_turns_saml_off_with_one_restart(deployed: harness.CharmDriver) -> None:
    (relation,) = deployed.state.get_relations(SAML_ENDPOINT)
    starts = deployed.starts
    deployed.run(deployed.ctx.on.relation_broken(relation))
    with_saml(deployed, None)
    deployed.run("update_status")
    assert deployed.starts == starts + 1
    assert harness.http_get("/_synapse/client/saml2/metadata.xml")[0] == 404
    assert raw_get(f"/_matrix/client/v3/login/sso/redirect?redirectUrl={PUBLIC_BASEURL}").status != 302
