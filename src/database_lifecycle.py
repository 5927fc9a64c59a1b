"""The PostgreSQL lifecycle: which database Synapse runs on, and the main unit's one-time preparation.

`charm.py` asks `DatabaseLifecycle.outcome` what to run once config, container and server
secrets are in place, and `DatabaseLifecycle.prepare` to carry out a `PrepareDatabase`:

- no PostgreSQL related: run on SQLite, unless the server's data lives in PostgreSQL (the
  relation was removed), then Synapse is stopped;
- PostgreSQL related and recorded in peer data: run on the recorded database;
- newly related: the main unit (src/main_unit.py), which holds the SQLite data, prepares it
  (a C-collated database, SQLite data ported) and records the result under
  `PEER_DATABASE_KEY` in its peer unit databag; the leader mirrors that record into peer app
  data, so every unit and every later hook runs on the same database without checking again,
  also after the main unit has gone.
"""

import logging
from collections.abc import Callable

import ops

from constants import (
    CONFIG_PATH,
    DATABASE_CA_PATH,
    DATABASE_ENDPOINT,
    LEGACY_DB_ENDPOINT,
    PEER_DATABASE_KEY,
    PEER_RELATION,
    PORT_CONFIG_PATH,
)
from outcomes import Desired, Hold, Outcome, PrepareDatabase, Stop
from relations.database import DatabaseRequires
from relations.legacy_db import LegacyDatabaseRequires
from server_secrets import ServerSecrets
from state import CharmState, DatabaseEndpoint, DatabaseRecord, InvalidStateError
from workload.postgres_setup import (
    DatabaseSetupError,
    DatabaseWaitError,
    port_sqlite,
    prepare_database,
    sqlite_pending_updates,
)
from workload.service import Workload, WorkloadFile

logger = logging.getLogger(__name__)


def port_failed(reason: str) -> ops.BlockedStatus:
    """The status after a failed SQLite to PostgreSQL port."""
    return ops.BlockedStatus(
        f"{reason}; Synapse keeps running on SQLite; fix the cause, then remove and re-add the database relation "
        "to retry"
    )


class DatabaseLifecycle:
    """Decide the database outcome from the relations and the peer record; prepare and port on the main unit."""

    def __init__(
        self,
        charm: ops.CharmBase,
        workload: Workload,
        database: DatabaseRequires,
        legacy_db: LegacyDatabaseRequires,
        main_unit: Callable[[], str | None] = lambda: None,
    ):
        """`main_unit` names the unit that runs the main process (None: this one, if leader)."""
        self.charm = charm
        self.main_unit = main_unit
        self.workload = workload
        self.container = workload.container
        self.database = database
        self.legacy_db = legacy_db

    # -- decision ------------------------------------------------------------------------------

    def outcome(self, state: CharmState, server_secrets: ServerSecrets) -> Outcome:
        """What to run, on SQLite or the related PostgreSQL; never raises on bad relation data."""
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
        app = self.charm.app.name
        if self.database.is_related() and self.legacy_db.is_related():
            raise InvalidStateError(
                f"both the {DATABASE_ENDPOINT} and {LEGACY_DB_ENDPOINT} relations are present but Synapse uses "
                f"one PostgreSQL; remove one, e.g. `juju remove-relation {app}:{LEGACY_DB_ENDPOINT} "
                f"<postgresql app>`"
            )
        if self.database.relation is not None:
            return f"{DATABASE_ENDPOINT}:{self.database.relation.id}", self.database.endpoint(app)
        if self.legacy_db.relation is not None:
            return f"{LEGACY_DB_ENDPOINT}:{self.legacy_db.relation.id}", self.legacy_db.endpoint()
        return None

    def _is_main(self) -> bool:
        """Whether this unit runs the main process (and so holds any SQLite data)."""
        main = self.main_unit()
        return main == self.charm.unit.name if main is not None else self.charm.unit.is_leader()

    def _main_unit_record(self) -> DatabaseRecord | None:
        """The record the main unit wrote in its own peer unit databag, if any."""
        relation = self.charm.model.get_relation(PEER_RELATION)
        main = self.main_unit() or (self.charm.unit.name if self.charm.unit.is_leader() else None)
        if relation is None or main is None:
            return None
        units = {unit.name: unit for unit in relation.units} | {self.charm.unit.name: self.charm.unit}
        unit = units.get(main)
        return DatabaseRecord.from_peer_data(relation.data[unit].get(PEER_DATABASE_KEY)) if unit else None

    def _record(self) -> DatabaseRecord | None:
        """The record of the PostgreSQL database in use: the main unit's own, else the leader's copy."""
        relation = self.charm.model.get_relation(PEER_RELATION)
        if relation is None:
            return None
        return self._main_unit_record() or DatabaseRecord.from_peer_data(
            relation.data[self.charm.app].get(PEER_DATABASE_KEY)
        )

    def data_in_postgresql(self) -> bool:
        """Whether the server's data is in PostgreSQL (recorded as ready), not in SQLite on the main unit."""
        record = self._record()
        return record is not None and record.state == "ready"

    def mirror_record(self) -> None:
        """The leader copies the main unit's record into peer app data (only when it differs).

        The copy outlives the main unit, so a unit that takes over knows the database.
        """
        relation = self.charm.model.get_relation(PEER_RELATION)
        record = self._main_unit_record()
        if relation is None or record is None or not self.charm.unit.is_leader():
            return
        value = record.model_dump_json()
        if relation.data[self.charm.app].get(PEER_DATABASE_KEY) != value:
            relation.data[self.charm.app][PEER_DATABASE_KEY] = value

    def _sqlite_outcome(self, state: CharmState, server_secrets: ServerSecrets) -> Outcome:
        """Run on the embedded SQLite database, unless the server's data lives in PostgreSQL."""
        record = self._record()
        if self.workload.installed_engine() == "psycopg2" or (record is not None and record.state == "ready"):
            return Stop(
                ops.BlockedStatus(
                    "the database relation was removed: Synapse is stopped so that it does not start on an empty "
                    f"SQLite database; relate PostgreSQL again with `juju integrate {self.charm.app.name} "
                    "postgresql-k8s`"
                )
            )
        return Desired(state, server_secrets)

    def _postgresql_outcome(
        self, state: CharmState, server_secrets: ServerSecrets, source: str, endpoint: DatabaseEndpoint
    ) -> Outcome:
        """Run on the related PostgreSQL once the main unit has prepared it."""
        record = self._record()
        if record is not None and record.source == source:
            if record.state == "port-failed":
                return Hold(port_failed(record.reason))
            used = endpoint.model_copy(
                update={"database": record.use, "allow_unsafe_locale": record.allow_unsafe_locale}
            )
            state = state.model_copy(update={"database": used})
            return Desired(state, server_secrets)
        if not self._is_main():
            return Hold(ops.WaitingStatus("waiting for the main unit to prepare the PostgreSQL database"))
        return PrepareDatabase(state, server_secrets, source, endpoint)

    # -- preparation (the main unit) -------------------------------------------------------------

    def _write_record(self, record: DatabaseRecord) -> None:
        """Store the record in this (main) unit's peer databag, and in app data on the leader.

        Writes only on change.
        """
        relation = self.charm.model.get_relation(PEER_RELATION)
        if relation is None:
            return
        value = record.model_dump_json()
        databags = [relation.data[self.charm.unit]]
        if self.charm.unit.is_leader():
            databags.append(relation.data[self.charm.app])
        for databag in databags:
            if databag.get(PEER_DATABASE_KEY) != value:
                databag[PEER_DATABASE_KEY] = value

    def prepare(self, prepare: PrepareDatabase) -> Desired | Hold | Stop:
        """Make sure the database is C-collated, port SQLite data into it, and record the result."""
        endpoint = prepare.endpoint
        if endpoint.tls_ca:
            self.workload.sync_files({DATABASE_CA_PATH: WorkloadFile(endpoint.tls_ca, 0o600)})
        connect = {
            key: value
            for key, value in (CharmState(config=prepare.state.config, database=endpoint).database_args() or {}).items()
            if key not in ("cp_min", "cp_max")
        }
        # The files in place are for an earlier relation's PostgreSQL (its user may be gone): Synapse
        # must not start on them while the new one cannot be used yet, or it would crash in a loop.
        not_yet = Stop if self.workload.installed_engine() == "psycopg2" else Hold
        try:
            prepared = prepare_database(self.container, connect, keep=self._database_in_use())
        except DatabaseWaitError as exc:  # PostgreSQL allows it soon; checked again on later hooks
            return not_yet(ops.WaitingStatus(str(exc)))
        except DatabaseSetupError as exc:  # re-checked on every hook until the operator fixed it
            return not_yet(ops.BlockedStatus(str(exc)))
        use = prepared.name
        used = endpoint.model_copy(update={"database": use, "allow_unsafe_locale": prepared.allow_unsafe_locale})
        state = prepare.state.model_copy(update={"database": used})
        desired = Desired(state, prepare.secrets)
        files = desired.files
        if self.workload.installed_engine() != "psycopg2" and self.workload.has_sqlite_data():
            held = self._port_sqlite(files[CONFIG_PATH], prepare.source, use)
            if held is not None:
                return held
        self._write_record(
            DatabaseRecord(
                source=prepare.source, use=use, state="ready", allow_unsafe_locale=prepared.allow_unsafe_locale
            )
        )
        return desired

    def _database_in_use(self) -> str | None:
        """The PostgreSQL database the server's data is in already (an earlier relation), if any.

        A re-created relation keeps it: nothing moves an existing server to another database.
        """
        record = self._record()
        if record is not None and record.state == "ready" and record.use:
            return record.use
        if self.workload.installed_engine() == "psycopg2":
            database = (self.workload.installed_config() or {}).get("database") or {}
            args = database.get("args") if isinstance(database, dict) else None
            name = args.get("dbname") if isinstance(args, dict) else None
            return name if isinstance(name, str) and name else None
        return None

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
            self._write_record(DatabaseRecord(source=source, use=use, state="port-failed", reason=str(exc)))
            self.workload.keep_running()
            return Hold(port_failed(str(exc)))
        finally:
            self.workload.remove(PORT_CONFIG_PATH)
        logger.info("ported the SQLite database to PostgreSQL; the SQLite file is kept")
        return None
