"""SAML in the workload: can the image do it, and the IdP metadata file when there is no URL.

Synapse's SAML support needs pysaml2 in its Python and Debian's xmlsec1 on PATH (pysaml2
shells out to it to check signatures). The upstream image has both; a custom image may not,
and Synapse would then refuse to start, so the charm asks the container first.
"""

import json

import ops
import pydantic
from pydantic import BaseModel, ConfigDict

from state import InvalidStateError, SamlProvider

CHECK_TIMEOUT = 30

_SUPPORT_SCRIPT = r"""
import importlib.metadata, json, shutil
try:
    pysaml2 = importlib.metadata.version("pysaml2")
except importlib.metadata.PackageNotFoundError:
    pysaml2 = None
print(json.dumps({"pysaml2": pysaml2, "xmlsec1": shutil.which("xmlsec1")}))
"""

_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
_DS = "http://www.w3.org/2000/09/xmldsig#"
# IDPSSODescriptor children, in the order the SAML metadata schema requires.
SERVICE_ELEMENTS = {
    "artifact_resolution_service": "ArtifactResolutionService",
    "single_logout_service": "SingleLogoutService",
    "manage_name_id_service": "ManageNameIDService",
    "single_sign_on_service": "SingleSignOnService",
    "name_id_mapping_service": "NameIDMappingService",
    "assertion_id_request_service": "AssertionIDRequestService",
}


class SamlSupport(BaseModel):
    """What the container answered: pysaml2's version and xmlsec1's path (None when missing)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    pysaml2: str | None
    xmlsec1: str | None

    def problem(self) -> str | None:
        """Why this image cannot do SAML, or None when it can."""
        missing = [
            what
            for what, found in (("the pysaml2 Python package", self.pysaml2), ("the xmlsec1 program", self.xmlsec1))
            if not found
        ]
        if not missing:
            return None
        return (
            f"the saml relation needs SAML support but the Synapse image lacks {' and '.join(missing)}; "
            "use the upstream image (ghcr.io/element-hq/synapse, which has matrix-synapse[saml2] and xmlsec1) "
            "or remove the saml relation"
        )


def check_saml_support(container: ops.Container) -> None:
    """Raise InvalidStateError saying why Synapse's image cannot do SAML (or why that could not be checked)."""
    problem = _saml_support_problem(container)
    if problem is not None:
        raise InvalidStateError(problem)


def _saml_support_problem(container: ops.Container) -> str | None:
    """Why Synapse's image cannot do SAML (or why that could not be checked); None when it can."""
    try:
        process = container.exec(["python", "-c", _SUPPORT_SCRIPT], timeout=CHECK_TIMEOUT, encoding="utf-8")
        stdout, _ = process.wait_output()
    except ops.pebble.ExecError as exc:
        return f"cannot check the Synapse image for SAML support: python exited with {exc.exit_code}"
    except (ops.pebble.APIError, ops.pebble.ChangeError, ops.pebble.TimeoutError) as exc:
        return f"cannot check the Synapse image for SAML support: {exc}"
    lines = (stdout or "").strip().splitlines()
    try:
        support = SamlSupport.model_validate(json.loads(lines[-1]) if lines else None)
    except (json.JSONDecodeError, pydantic.ValidationError):
        return f"cannot check the Synapse image for SAML support: unexpected answer {(stdout or '')[-120:]!r}"
    return support.problem()


def idp_metadata_xml(provider: SamlProvider) -> str:
    """IdP metadata (an md:EntityDescriptor) built from the entity ID, certificates and endpoints sent."""
    import xml.etree.ElementTree as ET  # noqa: PLC0415 (builds XML, never parses; only with saml)

    ET.register_namespace("md", _MD)
    ET.register_namespace("ds", _DS)
    entity = ET.Element(f"{{{_MD}}}EntityDescriptor", {"entityID": provider.entity_id})
    idp = ET.SubElement(
        entity, f"{{{_MD}}}IDPSSODescriptor", {"protocolSupportEnumeration": "urn:oasis:names:tc:SAML:2.0:protocol"}
    )
    for certificate in provider.certificates:
        key = ET.SubElement(idp, f"{{{_MD}}}KeyDescriptor", {"use": "signing"})
        data = ET.SubElement(ET.SubElement(key, f"{{{_DS}}}KeyInfo"), f"{{{_DS}}}X509Data")
        ET.SubElement(data, f"{{{_DS}}}X509Certificate").text = certificate
    for name, element in SERVICE_ELEMENTS.items():
        for service in (item for item in provider.services if item.name == name):
            attributes = {"Binding": service.binding, "Location": service.url}
            if service.response_url:
                attributes["ResponseLocation"] = service.response_url
            ET.SubElement(idp, f"{{{_MD}}}{element}", attributes)
    return ET.tostring(entity, encoding="unicode", xml_declaration=True) + "\n"
