"""Which Synapse process each unit runs: the main process, a generic worker, or none (standby).

One unit runs the main process (recorded by the leader, see src/main_unit.py). With the
server's data in PostgreSQL and Redis related, every other unit whose address is known runs
a generic worker named after its unit (`synapse/2` runs `synapse-2`, the same name after a
pod restart). Workers serve the client and federation endpoints nginx sends them, send
federation traffic and push notifications; stream writers stay on the main, so losing a
worker never blocks event persistence. Without PostgreSQL or Redis, other units stay on
standby (Synapse's data on SQLite lives on the main unit's storage alone).

Everything here is computed from typed inputs; reading and publishing peer data lives in
src/relations/peers.py.
"""

import typing

from pydantic import BaseModel, ConfigDict

from constants import REPLICATION_PORT

Role = typing.Literal["main", "worker", "standby"]
# The name every process knows the main process by, in instance_map.
MAIN_INSTANCE = "main"


def unit_number(unit: str) -> int:
    """The number of a unit name such as `synapse/2` (units sort by it)."""
    number = unit.rpartition("/")[2]
    return int(number) if number.isdigit() else -1


def worker_name(unit: str) -> str:
    """The worker name of a unit: `synapse/2` -> `synapse-2` (stable across pod restarts)."""
    return unit.replace("/", "-")


class Member(BaseModel):
    """A unit and the address the other units reach it at."""

    model_config = ConfigDict(frozen=True)

    unit: str
    address: str

    @property
    def name(self) -> str:
        """Its worker name."""
        return worker_name(self.unit)


class Topology(BaseModel):
    """The processes of the application, seen from one unit."""

    model_config = ConfigDict(frozen=True)

    this_unit: str
    main: Member
    # The units running generic workers, in unit order (empty: the main runs alone).
    workers: tuple[Member, ...] = ()

    @property
    def role(self) -> Role:
        """What this unit runs."""
        if self.this_unit == self.main.unit:
            return "main"
        if any(worker.unit == self.this_unit for worker in self.workers):
            return "worker"
        return "standby"

    @property
    def worker_names(self) -> list[str]:
        """The workers' names, in unit order."""
        return [worker.name for worker in self.workers]

    @property
    def this_worker(self) -> str:
        """This unit's worker name."""
        return worker_name(self.this_unit)

    def instance_map(self) -> dict[str, dict[str, str | int]]:
        """Synapse's `instance_map`: the main and every worker, at their replication listeners."""
        members = {MAIN_INSTANCE: self.main} | {worker.name: worker for worker in self.workers}
        return {name: {"host": member.address, "port": REPLICATION_PORT} for name, member in members.items()}


def build_topology(
    this_unit: str, main_unit: str, addresses: typing.Mapping[str, str], workers_possible: bool
) -> Topology | None:
    """The topology, or None while the main unit's address is unknown.

    `addresses`: unit name -> address, as the units published them. `workers_possible`: the
    data is in PostgreSQL and Redis is related; otherwise nobody but the main runs Synapse.
    """
    main_address = addresses.get(main_unit)
    if main_address is None:
        return None
    workers: tuple[Member, ...] = ()
    if workers_possible:
        workers = tuple(
            Member(unit=unit, address=address)
            for unit, address in sorted(addresses.items(), key=lambda item: unit_number(item[0]))
            if unit != main_unit
        )
    return Topology(this_unit=this_unit, main=Member(unit=main_unit, address=main_address), workers=workers)
