#!/usr/bin/env python3
"""The Synapse charm: one holistic reconcile from typed state to a running homeserver."""

import dataclasses
import logging
from pathlib import PurePosixPath

import ops

from constants import (
    CHECK_READY,
    CONFIG_PATH,
    CONTAINER_NAME,
    DATABASE_CA_PATH,
    DATABASE_ENDPOINT,
    LEGACY_DB_ENDPOINT,
    PEER_DATABASE_KEY,
    PEER_RELATION,
    PORT_CONFIG_PATH,
)
from relations.database import DatabaseRequires
from relations.legacy_db import LegacyDatabaseRequires
from server_secrets import ServerSecrets, ensure_server_secrets
from state import CharmState, DatabaseEndpoint, DatabaseRecord, InvalidStateError
from user_actions import ActionContext, UserActions
from workload.postgres_setup import DatabaseSetupError, port_sqlite, prepare_database, sqlite_pending_updates
from workload.service import Workload, WorkloadFile, render_files
from workload.synapse_api import SynapseAPIError, SynapseClient, SynapseUnavailableError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Desired:
    """Run Synapse on these files: the typed state, the secrets, and the rendered files."""

    state: CharmState
    secrets: ServerSecrets
    files: dict[PurePosixPath, WorkloadFile]


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
    """Keep the files current but do not run Synapse: only the leader runs the main process."""

    files: dict[PurePosixPath, WorkloadFile]
    status: ops.StatusBase


@dataclasses.dataclass(frozen=True)
class Stop:
    """Synapse must not run; `status` says why and what to do."""

    status: ops.StatusBase


Outcome = Desired | PrepareDatabase | Standby | Hold | Stop


def _port_failed(reason: str) -> ops.BlockedStatus:
    """The status after a failed SQLite to PostgreSQL port."""
    return ops.BlockedStatus(
        f"{reason}; Synapse keeps running on SQLite; fix the cause, then remove and re-add the database relation "
        "to retry"
    )


class SynapseCharm(ops.CharmBase):
    """Charm the Synapse homeserver."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.container = self.unit.get_container(CONTAINER_NAME)
        self.workload = Workload(self.container)
        self.database = DatabaseRequires(self, DATABASE_ENDPOINT)
        self.legacy_db = LegacyDatabaseRequires(self, LEGACY_DB_ENDPOINT)
        self._outcome: Outcome | None = None
        for event in (
            self.on.install,
            self.on.start,
            self.on.upgrade_charm,
            self.on.config_changed,
            self.on.leader_elected,
            self.on.update_status,
            self.on[CONTAINER_NAME].pebble_ready,
            self.on[CONTAINER_NAME].pebble_check_failed,
            self.on[CONTAINER_NAME].pebble_check_recovered,
            self.on[PEER_RELATION].relation_created,
            self.on[PEER_RELATION].relation_changed,
            self.on.data_storage_attached,
            self.on[DATABASE_ENDPOINT].relation_created,
            self.on[DATABASE_ENDPOINT].relation_changed,
            self.on[DATABASE_ENDPOINT].relation_broken,
            *self.legacy_db.events,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(self.on.secret_changed, self._on_secret_changed)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        self.user_actions = UserActions(self, self._action_server_name, self._action_context)

    # -- evaluation: what should run, from the typed state ------------------------------------

    def _evaluate(self) -> Outcome:
        """What this unit should do (cached per hook)."""
        if self._outcome is None:
            self._outcome = self._compute_outcome()
        return self._outcome

    def _compute_outcome(self) -> Outcome:
        """What to run; on a non-leader, the same files on standby (see `_standby`)."""
        outcome = self._compute_leader_outcome()
        if isinstance(outcome, Desired) and not self.unit.is_leader():
            return self._standby(outcome)
        return outcome

    def _standby(self, desired: Desired) -> Standby:
        """A non-leader keeps the server's files but runs no Synapse.

        A second Synapse main process would split the server (SQLite: a second server with the
        same identity; PostgreSQL: two main processes on one database, which Synapse does not
        support without workers). The files stay current so a new leader starts at once.
        """
        return Standby(
            desired.files,
            ops.BlockedStatus(
                f"Synapse runs on the leader unit only (workers are not supported yet); scale back with "
                f"`juju scale-application {self.app.name} 1`"
            ),
        )

    def _compute_leader_outcome(self) -> Outcome:  # noqa: PLR0911 (one return per reason, in order)
        """Parse inputs, fetch the secrets, pick the database and render; never raises on bad input."""
        try:
            state = CharmState.from_charm(self)
        except InvalidStateError as exc:
            return Hold(ops.BlockedStatus(str(exc)))
        if not self.container.can_connect():
            return Hold(ops.WaitingStatus("waiting for the synapse container"))
        try:
            server_secrets = ensure_server_secrets(self)
        except InvalidStateError as exc:
            return Hold(ops.BlockedStatus(str(exc)))
        if server_secrets is None:
            return Hold(ops.WaitingStatus("waiting for the leader to create the server's secrets"))
        installed = self.workload.installed_server_name()
        if installed and installed != state.config.server_name and self.workload.has_data():
            return Hold(
                ops.BlockedStatus(
                    f"server_name cannot change from {installed} to {state.config.server_name} once the server "
                    f"has data; revert with `juju config {self.app.name} server_name={installed}`"
                )
            )
        try:
            database = self._related_database()
        except InvalidStateError as exc:
            return Hold(ops.BlockedStatus(str(exc)))
        if database is None:
            return self._sqlite_outcome(state, server_secrets)
        source, endpoint = database
        if endpoint is None:
            return Hold(
                ops.WaitingStatus(f"waiting for the PostgreSQL database on the {source.split(':')[0]} relation")
            )
        return self._postgresql_outcome(state, server_secrets, source, endpoint)

    def _related_database(self) -> tuple[str, DatabaseEndpoint | None] | None:
        """The related PostgreSQL (`<endpoint>:<relation id>`, endpoint or None while not ready)."""
        if self.database.is_related() and self.legacy_db.is_related():
            raise InvalidStateError(
                f"both the {DATABASE_ENDPOINT} and {LEGACY_DB_ENDPOINT} relations are present but Synapse uses "
                f"one PostgreSQL; remove one, e.g. `juju remove-relation {self.app.name}:{LEGACY_DB_ENDPOINT} "
                f"<postgresql app>`"
            )
        if self.database.relation is not None:
            return f"{DATABASE_ENDPOINT}:{self.database.relation.id}", self.database.endpoint(self.app.name)
        if self.legacy_db.relation is not None:
            return f"{LEGACY_DB_ENDPOINT}:{self.legacy_db.relation.id}", self.legacy_db.endpoint()
        return None

    def _database_record(self) -> DatabaseRecord | None:
        """The leader's record of the PostgreSQL database in use."""
        relation = self.model.get_relation(PEER_RELATION)
        return DatabaseRecord.from_peer_data(relation.data[self.app].get(PEER_DATABASE_KEY)) if relation else None

    def _sqlite_outcome(self, state: CharmState, server_secrets: ServerSecrets) -> Outcome:
        """Run on the embedded SQLite database, unless the server's data lives in PostgreSQL."""
        record = self._database_record()
        if self.workload.installed_engine() == "psycopg2" or (record is not None and record.state == "ready"):
            return Stop(
                ops.BlockedStatus(
                    "the database relation was removed: Synapse is stopped so that it does not start on an empty "
                    f"SQLite database; relate PostgreSQL again with `juju integrate {self.app.name} postgresql-k8s`"
                )
            )
        return Desired(state, server_secrets, render_files(state, server_secrets))

    def _postgresql_outcome(
        self, state: CharmState, server_secrets: ServerSecrets, source: str, endpoint: DatabaseEndpoint
    ) -> Outcome:
        """Run on the related PostgreSQL once the leader has prepared it."""
        record = self._database_record()
        if record is not None and record.source == source:
            if record.state == "port-failed":
                return Hold(_port_failed(record.reason))
            state = state.model_copy(update={"database": endpoint.model_copy(update={"database": record.use})})
            return Desired(state, server_secrets, render_files(state, server_secrets))
        if not self.unit.is_leader():
            return Hold(ops.WaitingStatus("waiting for the leader to prepare the PostgreSQL database"))
        return PrepareDatabase(state, server_secrets, source, endpoint)

    # -- reconcile: bring the workload to the outcome --------------------------------------------

    def _reconcile(self, _: ops.EventBase | None = None) -> None:
        """Bring the workload to the desired state; a no-op when it is there already."""
        self._publish_database_request()
        evaluated = self._evaluate()
        outcome = self._prepare_database(evaluated) if isinstance(evaluated, PrepareDatabase) else evaluated
        self._outcome = outcome
        if isinstance(outcome, Desired):
            self.workload.apply(outcome.files)
            self._set_workload_version()
            return
        if isinstance(outcome, Standby):
            self.workload.sync_files(outcome.files)
            self.workload.stop()
            return
        logger.info("not changing Synapse's configuration: %s", outcome.status.message)
        if not self.container.can_connect():
            return
        if isinstance(outcome, Stop):
            self.workload.stop()
        else:
            self.workload.keep_running()

    def _publish_database_request(self) -> None:
        """Ask the related PostgreSQL for our database (the leader; writes only on change)."""
        if self.unit.is_leader():
            self.database.publish_request(self.app.name)
            self.legacy_db.publish_request(self.app.name)

    def _write_database_record(self, record: DatabaseRecord) -> None:
        """Store the database record in peer app data (the leader; writes only on change)."""
        relation = self.model.get_relation(PEER_RELATION)
        if relation is None:
            return
        value = record.model_dump_json()
        if relation.data[self.app].get(PEER_DATABASE_KEY) != value:
            relation.data[self.app][PEER_DATABASE_KEY] = value

    def _prepare_database(self, prepare: PrepareDatabase) -> Desired | Hold:
        """Make sure the database is C-collated, port SQLite data into it, and record the result."""
        endpoint = prepare.endpoint
        if endpoint.tls_ca:
            self.workload.sync_files({DATABASE_CA_PATH: WorkloadFile(endpoint.tls_ca, 0o600)})
        connect = {
            key: value
            for key, value in (CharmState(config=prepare.state.config, database=endpoint).database_args() or {}).items()
            if key not in ("cp_min", "cp_max")
        }
        try:
            use = prepare_database(self.container, connect)
        except DatabaseSetupError as exc:  # re-checked on every hook until the operator fixed it
            return Hold(ops.BlockedStatus(str(exc)))
        state = prepare.state.model_copy(update={"database": endpoint.model_copy(update={"database": use})})
        files = render_files(state, prepare.secrets)
        if self.workload.installed_engine() != "psycopg2" and self.workload.has_sqlite_data():
            held = self._port_sqlite(files[CONFIG_PATH], prepare.source, use)
            if held is not None:
                return held
        self._write_database_record(DatabaseRecord(source=prepare.source, use=use, state="ready"))
        return Desired(state, prepare.secrets, files)

    def _port_sqlite(self, postgres_config: WorkloadFile, source: str, use: str) -> Hold | None:
        """Port the SQLite database into PostgreSQL with Synapse stopped; a Hold if that cannot happen now.

        The SQLite file is never deleted. On failure Synapse restarts on SQLite and the failure is
        recorded, so it is not retried on every hook (each try stops Synapse).
        """
        try:
            pending = sqlite_pending_updates(self.container)
        except DatabaseSetupError as exc:
            return Hold(ops.BlockedStatus(str(exc)))
        if pending:
            return Hold(
                ops.WaitingStatus(
                    f"waiting for Synapse to finish {pending} background updates on SQLite before moving to PostgreSQL"
                )
            )
        logger.info("stopping Synapse to port its SQLite database to PostgreSQL database %s", use)
        self.workload.push(PORT_CONFIG_PATH, postgres_config)
        self.workload.stop()
        try:
            port_sqlite(self.container, PORT_CONFIG_PATH)
        except DatabaseSetupError as exc:
            logger.error("%s", exc)
            self._write_database_record(DatabaseRecord(source=source, use=use, state="port-failed", reason=str(exc)))
            self.workload.keep_running()
            return Hold(_port_failed(str(exc)))
        finally:
            self.workload.remove(PORT_CONFIG_PATH)
        logger.info("ported the SQLite database to PostgreSQL; the SQLite file is kept")
        return None

    def _on_secret_changed(self, _: ops.SecretChangedEvent) -> None:
        """A secret we read changed (server secrets or database credentials): reconcile."""
        self._reconcile()

    def _set_workload_version(self) -> None:
        """Record the version the running Synapse reports, when it answers."""
        if not self._is_ready():
            return
        try:
            version = SynapseClient(timeout=2).version()
        except (SynapseUnavailableError, SynapseAPIError):
            return
        if version:
            self.unit.set_workload_version(version)

    def _is_ready(self) -> bool:
        """Whether Synapse runs and its Pebble ready check has passed since it last failed.

        Pebble reports a check as up before it has run, so a success is required too.
        """
        if not self.workload.is_running():
            return False
        check = self.container.get_checks(CHECK_READY).get(CHECK_READY)
        if check is None or check.status != ops.pebble.CheckStatus.UP:
            return False
        return check.successes is None or check.successes > 0

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        """The unit's status, derived from the same evaluation as the reconcile."""
        outcome = self._evaluate()
        if isinstance(outcome, Hold | Stop | Standby):
            event.add_status(outcome.status)
        elif isinstance(outcome, PrepareDatabase):
            event.add_status(ops.MaintenanceStatus("preparing the PostgreSQL database"))
        elif not self.workload.is_running():
            event.add_status(ops.MaintenanceStatus("starting Synapse"))
        elif not self._is_ready():
            event.add_status(ops.WaitingStatus("waiting for Synapse to become ready"))
        event.add_status(ops.ActiveStatus())

    # -- actions -------------------------------------------------------------------------------

    def _action_server_name(self) -> str:
        """The configured server name; InvalidStateError when the config is invalid."""
        return CharmState.from_charm(self).config.server_name

    def _action_context(self) -> ActionContext | str:
        """What actions need to call this unit's Synapse, or why they cannot yet."""
        outcome = self._evaluate()
        if not isinstance(outcome, Desired):
            reason = outcome.status.message if isinstance(outcome, Hold | Stop | Standby) else "preparing the database"
            return f"the unit is not ready for this action: {reason}"
        client = SynapseClient()
        if not self.workload.is_running() or not client.is_healthy():
            return "Synapse is not ready yet; retry once the unit is active"
        return ActionContext(
            server_name=outcome.state.config.server_name,
            registration_shared_secret=outcome.secrets.registration_shared_secret,
            client=client,
        )


if __name__ == "__main__":  # pragma: nocover
    ops.main(SynapseCharm)
