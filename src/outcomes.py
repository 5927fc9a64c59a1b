"""What the reconcile should do, as the charm's parts decide it: one small dataclass per kind.

`charm.py` computes an `Outcome` from the typed state and applies it; the database lifecycle
(src/database_lifecycle.py) returns these too.
"""

import dataclasses
import functools
from pathlib import PurePosixPath

import ops

from server_secrets import ServerSecrets
from state import CharmState, DatabaseEndpoint
from topology import Role
from workload.service import WorkloadFile, render_files


@dataclasses.dataclass(frozen=True)
class Desired:
    """Run Synapse on the files rendered from the typed state and the secrets.

    `role`: the process this unit runs, the main process or a generic worker. The files are
    rendered once, when first needed: the charm may place the unit (workers) first.
    """

    state: CharmState
    secrets: ServerSecrets
    role: Role = "main"

    @functools.cached_property
    def files(self) -> dict[PurePosixPath, WorkloadFile]:
        """Every file Synapse reads, rendered for this state."""
        return render_files(self.state, self.secrets)


@dataclasses.dataclass(frozen=True)
class PrepareDatabase:
    """The leader must prepare a newly related PostgreSQL database (and port SQLite) first."""

    state: CharmState
    secrets: ServerSecrets
    source: str
    endpoint: DatabaseEndpoint


@dataclasses.dataclass(frozen=True)
class Hold:
    """Change nothing; keep Synapse running on the files in place (if any). `status` says why."""

    status: ops.StatusBase


@dataclasses.dataclass(frozen=True)
class Standby:
    """Keep the files current but do not run Synapse (another unit runs the main process, and no worker runs here)."""

    files: dict[PurePosixPath, WorkloadFile]
    status: ops.StatusBase


@dataclasses.dataclass(frozen=True)
class Stop:
    """Synapse must not run; `status` says why and what to do."""

    status: ops.StatusBase


Outcome = Desired | PrepareDatabase | Standby | Hold | Stop
