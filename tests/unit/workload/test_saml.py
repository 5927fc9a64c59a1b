"""The image's SAML support check and the IdP metadata the charm writes (src/workload/saml.py)."""

import json
import xml.etree.ElementTree as ET

import ops
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ops import testing

from constants import CONTAINER_NAME
from state import InvalidStateError, SamlProvider, SamlService
from workload.saml import SamlSupport, check_saml_support, idp_metadata_xml

MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"


class _Charm(ops.CharmBase):
    """Runs the support check on pebble-ready; the outcome is the unit status."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        framework.observe(self.on[CONTAINER_NAME].pebble_ready, self._check)

    def _check(self, _: ops.EventBase) -> None:
        try:
            check_saml_support(self.unit.get_container(CONTAINER_NAME))
        except InvalidStateError as exc:
            self.unit.status = ops.BlockedStatus(str(exc))
        else:
            self.unit.status = ops.ActiveStatus()


def check(stdout: str, return_code: int = 0) -> ops.StatusBase:
    """The status after the check, with the container answering `stdout`."""
    ctx = testing.Context(_Charm, meta={"name": "t", "containers": {CONTAINER_NAME: {}}})
    container = testing.Container(
        CONTAINER_NAME, can_connect=True, execs={testing.Exec(["python"], return_code=return_code, stdout=stdout)}
    )
    status = ctx.run(ctx.on.pebble_ready(container), testing.State(containers={container})).unit_status
    return ops.StatusBase.from_name(status.name, status.message)


def test_supported_image() -> None:
    assert check(json.dumps({"pysaml2": "7.5.4", "xmlsec1": "/usr/bin/xmlsec1"})) == ops.ActiveStatus()


def test_missing_pieces_are_named() -> None:
    status = check(json.dumps({"pysaml2": None, "xmlsec1": None}))
    assert isinstance(status, ops.BlockedStatus)
    assert "pysaml2" in status.message and "xmlsec1" in status.message and "saml relation" in status.message


@given(st.text(max_size=60))
def test_any_answer_is_a_status(stdout: str) -> None:
    assert isinstance(check(stdout), ops.ActiveStatus | ops.BlockedStatus)


def test_failing_python_blocks() -> None:
    status = check("", return_code=127)
    assert isinstance(status, ops.BlockedStatus)
    assert "exited with 127" in status.message


def test_support_model_problem() -> None:
    assert SamlSupport(pysaml2="7", xmlsec1="/x").problem() is None
    assert "xmlsec1" in (SamlSupport(pysaml2="7", xmlsec1=None).problem() or "")


@pytest.mark.parametrize("entity_id", ["https://idp.example/a?b=1&c='2'", 'urn:x:"quoted"<tag>'])
def test_metadata_escapes_what_it_is_given(entity_id: str) -> None:
    provider = SamlProvider(
        entity_id=entity_id,
        certificates=("QUJD",),
        services=(SamlService(name="single_sign_on_service", binding=REDIRECT, url="https://idp.example/sso?a=1&b=2"),),
    )
    root = ET.fromstring(idp_metadata_xml(provider))  # noqa: S314 (our own output)
    assert root.attrib["entityID"] == entity_id
    (sso,) = root.iter(f"{MD}SingleSignOnService")
    assert sso.attrib == {"Binding": REDIRECT, "Location": "https://idp.example/sso?a=1&b=2"}
