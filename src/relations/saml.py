"""The `saml` relation: our requirer of saml-integrator's `saml` interface.

Keys we read (provider's app databag): `entity_id`, `metadata_url`, `x509certs` (comma-joined
base64 certificate bodies), and per IdP endpoint `<name>_<redirect|post>_url`, `..._binding`
and optional `..._response_url` (e.g. `single_sign_on_service_redirect_url`). We write
nothing. Synapse gets the metadata URL when one is sent; otherwise the charm writes IdP
metadata from the certificates and endpoints (workload/saml.py).
"""

import base64
import binascii
import re
from collections.abc import Callable
from urllib.parse import urlsplit

import ops

from constants import SAML_ENDPOINT
from relations._common import SingleRelationRequirer
from state import MAX_URL_LENGTH, InvalidStateError, SamlProvider, SamlService
from workload.saml import SERVICE_ELEMENTS

_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_SERVICE_KEY = re.compile(r"(?P<name>[a-z_]+)_(?P<binding>redirect|post)_url")
BINDINGS = {
    "redirect": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
    "post": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
}


def parse_url(value: str) -> str:
    """An absolute http(s) URL with a host, or ValueError."""
    value = value.strip()
    if len(value) > MAX_URL_LENGTH or not _URL_CHARS.fullmatch(value):
        raise ValueError(f"{value[:80]!r} is not a URL of at most {MAX_URL_LENGTH} ASCII URL characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value[:80]!r} is not an http:// or https:// URL with a host")
    return value


def parse_entity_id(value: str) -> str:
    """A SAML entity ID: a URI of printable ASCII without spaces, at most 1024 characters."""
    value = value.strip()
    if not value or len(value) > 1024 or not all(33 <= ord(char) <= 126 for char in value):
        raise ValueError(f"{value[:80]!r} is not a SAML entity ID (a URI without spaces)")
    return value


def parse_certificates(value: str) -> tuple[str, ...]:
    """Comma-joined base64 DER certificate bodies, whitespace removed; ValueError if one is not base64."""
    certificates = []
    for raw in value.split(","):
        body = "".join(raw.split())
        for marker in ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"):
            body = body.replace(marker.replace(" ", ""), "")
        if not body:
            continue
        try:
            base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{body[:40]!r}... is not a base64 certificate") from None
        certificates.append(body)
    return tuple(dict.fromkeys(certificates))


def parse_services(data: dict[str, str]) -> tuple[SamlService, ...]:
    """The IdP endpoints in the databag, for the endpoint kinds IdP metadata can list."""
    services = []
    for key in sorted(data):
        match = _SERVICE_KEY.fullmatch(key)
        if match is None or match["name"] not in SERVICE_ELEMENTS or not data[key].strip():
            continue
        prefix = key.removesuffix("_url")
        binding = data.get(f"{prefix}_binding", "").strip() or BINDINGS[match["binding"]]
        if binding not in BINDINGS.values():
            raise ValueError(f"{prefix}_binding: {binding[:80]!r} is not one of {', '.join(BINDINGS.values())}")
        response = data.get(f"{prefix}_response_url", "").strip()
        services.append(
            SamlService(
                name=match["name"],
                binding=binding,
                url=_field(key, parse_url, data[key]),
                response_url=_field(f"{prefix}_response_url", parse_url, response) if response else None,
            )
        )
    return tuple(services)


def _field(key: str, parse: Callable[[str], str], value: str) -> str:
    """`parse(value)`, with ValueError messages prefixed by the key."""
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


class SamlRequires(SingleRelationRequirer):
    """Requirer side of the saml endpoint (limit 1): reads the identity provider saml-integrator describes."""

    def __init__(self, charm: ops.CharmBase, endpoint: str = SAML_ENDPOINT):
        super().__init__(charm, endpoint)

    def provider(self) -> SamlProvider | None:
        """The identity provider; None until saml-integrator has sent its entity ID.

        Raises InvalidStateError, naming the key and the fix, on malformed or incomplete data.
        """
        relation = self.relation
        if relation is None or relation.app is None:
            return None
        data = dict(relation.data[relation.app])
        if not data.get("entity_id", "").strip():
            return None
        name = relation.app.name
        try:
            return self._parse(data)
        except ValueError as exc:
            raise InvalidStateError(
                f"{name} sent invalid SAML settings on the {self.endpoint_name} relation: {exc}; "
                f"check `juju config {name}`"
            ) from None

    @staticmethod
    def _parse(data: dict[str, str]) -> SamlProvider:
        """The provider from the databag; ValueError naming the key when something is wrong."""
        metadata_url = data.get("metadata_url", "").strip()
        provider = SamlProvider(
            entity_id=_field("entity_id", parse_entity_id, data["entity_id"]),
            metadata_url=_field("metadata_url", parse_url, metadata_url) if metadata_url else None,
            certificates=parse_certificates(data.get("x509certs", "")),
            services=parse_services(data),
        )
        if provider.metadata_url is None:
            if not any(service.name == "single_sign_on_service" for service in provider.services):
                raise ValueError("there is no metadata_url and no single_sign_on_service_redirect_url (or _post_url)")
            if not provider.certificates:
                raise ValueError("there is no metadata_url and no x509certs to check the IdP's signatures")
        return provider
