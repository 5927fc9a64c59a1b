"""Which unit runs Synapse's main process: one unit, recorded by the leader in peer app data.

Only the recorded unit runs the main process, so there are never two. The record is not
simply "the leader": leadership may move while the main unit still runs, and the main keeps
the server's local state on its own storage (the SQLite database when Synapse runs on it,
and the media store). The leader moves the record only when the main unit is gone:

- with the data in PostgreSQL, the leader takes over (the old unit's media store is not on
  its storage: the status and README say so);
- with the data in SQLite on the departed unit, the leader does not start an empty server
  under the same identity: it stays Blocked until an operator runs the `promote-main`
  action on it (then restores a backup if there is one).
"""

import logging

import ops

from constants import PEER_MAIN_UNIT_KEY, PEER_RELATION

logger = logging.getLogger(__name__)

PROMOTE_ACTION = "promote-main"


class MainUnit:
    """The main-unit record: read by every unit, written by the leader only when it changes."""

    def __init__(self, charm: ops.CharmBase):
        self.charm = charm

    @property
    def _relation(self) -> ops.Relation | None:
        """The peer relation (absent very early in a unit's life)."""
        return self.charm.model.get_relation(PEER_RELATION)

    def recorded(self) -> str | None:
        """The unit named in peer app data, if any."""
        relation = self._relation
        if relation is None:
            return None
        return relation.data[self.charm.app].get(PEER_MAIN_UNIT_KEY) or None

    def members(self) -> set[str]:
        """The names of the application's units this unit knows of (itself included)."""
        relation = self._relation
        names = {self.charm.unit.name}
        if relation is not None:
            names |= {unit.name for unit in relation.units}
        return names

    def gone(self) -> str | None:
        """The recorded main unit, when it is no longer one of the application's units."""
        recorded = self.recorded()
        return recorded if recorded is not None and recorded not in self.members() else None

    def is_main(self) -> bool:
        """Whether this unit runs the main process.

        Before the leader has recorded anyone, the leader is the main (it records itself in
        the same hook), so a single-unit deployment starts at once.
        """
        recorded = self.recorded()
        if recorded is None:
            return self.charm.unit.is_leader()
        return recorded == self.charm.unit.name

    def publish(self, data_is_local: bool) -> None:
        """The leader records the main unit: itself first, and again only when the main is gone.

        `data_is_local`: the server's database is SQLite on the main unit's storage; then a
        departed main is not replaced automatically (see the module docstring).
        """
        relation = self._relation
        if relation is None or not self.charm.unit.is_leader():
            return
        recorded = self.recorded()
        if recorded is not None and recorded in self.members():
            return
        if recorded is not None and data_is_local:
            logger.warning(
                "the main unit %s is gone with the SQLite database on its storage; waiting for %s",
                recorded,
                PROMOTE_ACTION,
            )
            return
        if recorded is not None:
            logger.warning("the main unit %s is gone; %s takes over the main process", recorded, self.charm.unit.name)
        self._write(relation)

    def promote(self) -> None:
        """Record this unit (the leader) as the main unit: the operator's explicit choice."""
        relation = self._relation
        if relation is not None:
            self._write(relation)

    def _write(self, relation: ops.Relation) -> None:
        """Name this unit in peer app data (only if it differs)."""
        if relation.data[self.charm.app].get(PEER_MAIN_UNIT_KEY) != self.charm.unit.name:
            relation.data[self.charm.app][PEER_MAIN_UNIT_KEY] = self.charm.unit.name
