"""The `ingress` relation: our requirer of traefik's "ingress v2" (ingress per app) wire format.

Keys we write, every value JSON-encoded (strings keep their quotes):
- app (leader): `model`, `name` (the application), `port`, `strip-prefix` (true: with
  traefik's default path routing, Synapse sees `/_matrix/...`, not `/<model>-<app>/_matrix/...`);
- unit (every unit): `host` (the unit's FQDN) and `ip` (its ingress binding address).

Key we read (provider app): `ingress` = JSON `{"url": "http(s)://..."}`. A missing,
non-JSON or unusable answer is reported as what is missing (a Waiting status), never raised.
"""

import json
import logging
import socket

import ops

from constants import INGRESS_ENDPOINT
from relations._common import SingleRelationRequirer
from relations.databag import write_changed
from routing import IngressAnswer
from state import parse_public_url

logger = logging.getLogger(__name__)

APP_KEYS = ("model", "name", "port", "strip-prefix")
UNIT_KEYS = ("host", "ip")


class IngressRequires(SingleRelationRequirer):
    """Requirer side of the ingress endpoint (limit 1)."""

    def __init__(self, charm: ops.CharmBase, endpoint: str = INGRESS_ENDPOINT):
        super().__init__(charm, endpoint)

    def publish(self, port: int) -> bool:
        """Ask for a route to `port` (app data: leader; unit data: every unit); return whether anything changed."""
        relation = self.relation
        if relation is None:
            return False
        changed = False
        if self.charm.unit.is_leader():
            app_data = {
                "model": json.dumps(self.charm.model.name),
                "name": json.dumps(self.charm.app.name),
                "port": json.dumps(port),
                "strip-prefix": json.dumps(True),
            }
            changed = write_changed(relation.data[self.charm.app], app_data, APP_KEYS)
        unit_data = {"host": json.dumps(socket.getfqdn())}
        address = self._address(relation)
        if address:
            unit_data["ip"] = json.dumps(address)
        return write_changed(relation.data[self.charm.unit], unit_data, UNIT_KEYS) or changed

    def _address(self, relation: ops.Relation) -> str | None:
        """This unit's address on the relation's network, None if Juju does not tell."""
        try:
            binding = self.charm.model.get_binding(relation)
            address = binding.network.bind_address if binding else None
        except ops.ModelError:
            return None
        return str(address) if address else None

    def answer(self) -> IngressAnswer | None:
        """The provider's URL, or what is missing or wrong with its answer; None when not related."""
        relation = self.relation
        if relation is None:
            return None
        provider = relation.app.name if relation.app else "the ingress provider"
        raw = relation.data[relation.app].get("ingress") if relation.app else None
        if not raw:
            return IngressAnswer(provider, problem=f"waiting for {provider} to send the ingress URL")
        try:
            return IngressAnswer(provider, url=_url_of(raw))
        except ValueError as exc:
            logger.warning("unusable ingress data from %s: %s", provider, exc)
            return IngressAnswer(
                provider, problem=f"waiting for a usable ingress URL from {provider}: its `ingress` data {exc}"
            )


def _url_of(raw: str) -> str:
    """The `url` of an ingress v2 answer (JSON object), or ValueError saying what is wrong."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError("is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("is not a JSON object")
    url = data.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ValueError("has no url")
    try:
        return parse_public_url(url)
    except ValueError as exc:
        raise ValueError(f"has an unusable url: {exc}") from None
