"""The peer relation's unit addresses: each unit publishes where the others reach it.

Wire format (unit databag, plain): `address` = the unit's peer-binding ingress address (an IP
address, or a DNS name). The main process's replication listener, the workers' listeners and
each unit's nginx upstreams use these. A value that is not an address is ignored (the unit
it belongs to rewrites its own on its next hook) and logged.
"""

import logging

import ops

from constants import PEER_ADDRESS_KEY, PEER_RELATION
from relations._common import validate_host

logger = logging.getLogger(__name__)


class PeerAddresses:
    """Publish this unit's address; read every unit's."""

    def __init__(self, charm: ops.CharmBase):
        self.charm = charm

    @property
    def _relation(self) -> ops.Relation | None:
        """The peer relation (absent very early in a unit's life)."""
        return self.charm.model.get_relation(PEER_RELATION)

    def own_address(self) -> str | None:
        """This unit's ingress address on the peer binding, if Juju has one yet."""
        try:
            binding = self.charm.model.get_binding(PEER_RELATION)
            address = binding.network.ingress_address if binding is not None else None
        except ops.ModelError:
            return None
        return str(address) if address is not None else None

    def publish(self) -> None:
        """Write this unit's address (only when it changed)."""
        relation = self._relation
        address = self.own_address()
        if relation is None or address is None:
            return
        if relation.data[self.charm.unit].get(PEER_ADDRESS_KEY) != address:
            relation.data[self.charm.unit][PEER_ADDRESS_KEY] = address

    def addresses(self) -> dict[str, str]:
        """Unit name -> validated address, for every unit that has published one (this one included)."""
        relation = self._relation
        if relation is None:
            return {}
        found: dict[str, str] = {}
        for unit in (self.charm.unit, *relation.units):
            raw = relation.data[unit].get(PEER_ADDRESS_KEY)
            if not raw:
                continue
            try:
                found[unit.name] = validate_host(raw.strip())
            except ValueError as exc:
                logger.warning("ignoring the address %r published by %s: %s", raw[:80], unit.name, exc)
        return found
