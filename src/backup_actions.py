"""The backup actions: create-backup, list-backups, restore-backup, delete-backup.

The work happens in the workload container (workload/backup_script.py): the charm sends the
bucket, credentials and passphrase on stdin and reads a JSON answer. Every failure is a
failed action whose message says what to do.

Restore: the backup is downloaded, decrypted and checked into a staging directory while
Synapse keeps running (a wrong passphrase or a damaged backup stops here, nothing changed).
Then Synapse is stopped, the staged data swapped in, the restored identity checked and
Synapse started. If it does not become healthy, the previous data is swapped back and
Synapse started on it. Only then is the Juju secret updated to the restored identity.
"""

import dataclasses
import json
import logging
import re
import time
import typing
from collections.abc import Callable

import ops
import pydantic

from constants import (
    APPSERVICES_DIR,
    DATA_DIR,
    FORM_SECRET_PATH,
    MACAROON_SECRET_PATH,
    MEDIA_STORE_DIR,
    REGISTRATION_SECRET_PATH,
    SIGNING_KEY_PATH,
    SQLITE_PATH,
)
from relations.s3 import S3Requires
from server_secrets import ServerSecrets, replace_server_secrets
from state import CharmState, InvalidStateError, S3Connection
from workload.backup import BackupError, BackupInfo, parse_backups, parse_manifest, run_script
from workload.service import Workload, render_files
from workload.synapse_api import SynapseClient

logger = logging.getLogger(__name__)

BACKUP_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
PASSPHRASE_KEY = "passphrase"  # noqa: S105 (a secret content key)
MIN_PASSPHRASE_LENGTH = 12
RESTART_TIMEOUT = 300.0
IDENTITY_FILES = {
    "signing_key": SIGNING_KEY_PATH,
    "registration_shared_secret": REGISTRATION_SECRET_PATH,
    "macaroon_secret_key": MACAROON_SECRET_PATH,
    "form_secret": FORM_SECRET_PATH,
}
# Directories under /data a backup holds (besides the identity and the SQLite database).
DIRECTORIES = [str(path.relative_to(DATA_DIR)) for path in (MEDIA_STORE_DIR, APPSERVICES_DIR)]

_ERRORS = {
    "s3-unreachable": "cannot reach the S3 endpoint ({detail}); check the s3-integrator's endpoint config",
    "s3-error": "S3 refused the request ({detail}); check the s3-integrator's credentials, bucket and region",
    "no-such-backup": "there is no backup {detail}; run the list-backups action to see the backups",
    "wrong-passphrase": (
        "the passphrase does not decrypt this backup (or the backup is damaged); set backup_passphrase to the "
        "secret holding the passphrase the backup was made with; nothing was changed"
    ),
    "corrupt": "the backup is damaged ({detail}); nothing was changed",
    "not-a-backup": "the backup is damaged ({detail}); nothing was changed",
    "other-server": "the backup belongs to server {detail}, not to this server; nothing was changed",
}


class BackupActionError(Exception):
    """An action cannot be carried out; the message is for the operator."""


@dataclasses.dataclass(frozen=True)
class BackupContext:
    """What backups need from the charm: the running server's state and files."""

    state: CharmState
    secrets: ServerSecrets


def _message(exc: BackupError) -> str:
    """The operator's message for a script failure."""
    template = _ERRORS.get(exc.code)
    return template.format(detail=exc.detail) if template else f"the backup command failed ({exc})"


class BackupActions(ops.Object):
    """Handlers for the backup actions."""

    HANDLERS: typing.ClassVar[dict[str, str]] = {
        "create-backup": "_create",
        "list-backups": "_list",
        "restore-backup": "_restore",
        "delete-backup": "_delete",
    }

    def __init__(
        self,
        charm: ops.CharmBase,
        s3: S3Requires,
        workload: Workload,
        context: Callable[[], BackupContext | str],
    ):
        super().__init__(charm, "backup-actions")
        self.charm = charm
        self.s3 = s3
        self.workload = workload
        self._context = context
        for name in self.HANDLERS:
            charm.framework.observe(charm.on[name].action, self._on_action)

    def _on_action(self, event: ops.ActionEvent) -> None:
        """Run the handler; every failure is a failed action with a message."""
        name = event.handle.kind.removesuffix("_action").replace("_", "-")
        handler: Callable[[ops.ActionEvent], dict[str, typing.Any]] = getattr(self, self.HANDLERS[name])
        try:
            event.set_results(handler(event))
        except (BackupActionError, InvalidStateError) as exc:
            event.fail(str(exc))
        except BackupError as exc:
            event.fail(_message(exc))

    # -- inputs --------------------------------------------------------------------------

    def _connection(self) -> S3Connection:
        """The backup bucket; BackupActionError while there is none."""
        app = self.charm.app.name
        if self.s3.relation is None:
            raise BackupActionError(
                f"no backup storage: relate an s3-integrator with `juju integrate {app}:backup s3-integrator`"
            )
        connection = self.s3.connection()
        if connection is None:
            raise BackupActionError("waiting for the s3-integrator to provide the bucket and credentials")
        return connection

    def _passphrase(self) -> str:
        """The passphrase from the user secret named by config backup_passphrase."""
        app = self.charm.app.name
        how = (
            f"create it with `juju add-secret synapse-backup {PASSPHRASE_KEY}=<at least {MIN_PASSPHRASE_LENGTH} "
            f"characters>`, then `juju grant-secret synapse-backup {app}` and "
            f"`juju config {app} backup_passphrase=<secret ID>`"
        )
        secret_id = str(self.charm.config.get("backup_passphrase") or "").strip()
        if not secret_id:
            raise BackupActionError(f"backup_passphrase is not set: {how}")
        try:
            content = self.charm.model.get_secret(id=secret_id).get_content(refresh=True)
        except ops.SecretNotFoundError:
            raise BackupActionError(f"the secret {secret_id} of backup_passphrase does not exist: {how}") from None
        except ops.ModelError:
            raise BackupActionError(
                f"the secret {secret_id} of backup_passphrase is not readable: `juju grant-secret {secret_id} {app}`"
            ) from None
        passphrase = content.get(PASSPHRASE_KEY, "")
        if len(passphrase) < MIN_PASSPHRASE_LENGTH:
            raise BackupActionError(
                f"the secret {secret_id} must hold a key {PASSPHRASE_KEY!r} of at least {MIN_PASSPHRASE_LENGTH} "
                f"characters: `juju update-secret {secret_id} {PASSPHRASE_KEY}=...`"
            )
        return passphrase

    def _ready(self) -> BackupContext:
        """The running server; BackupActionError when this unit cannot act now."""
        context = self._context()
        if isinstance(context, str):
            raise BackupActionError(context)
        return context

    def _request(self, connection: S3Connection, **extra: typing.Any) -> dict[str, typing.Any]:
        """The script request for the bucket."""
        return {"s3": connection.script_config(), "prefix": connection.path, **extra}

    @staticmethod
    def _backup_id(event: ops.ActionEvent) -> str:
        """The `id` param, checked."""
        backup_id = str(event.params.get("id", "")).strip()
        if not BACKUP_ID.fullmatch(backup_id):
            raise BackupActionError(
                f"id {backup_id!r} is not a backup id such as 20260101T120000Z-1a2b3c; run list-backups"
            )
        return backup_id

    # -- handlers ------------------------------------------------------------------------

    def _create(self, _: ops.ActionEvent) -> dict[str, typing.Any]:
        """Stream a new encrypted backup to the bucket."""
        connection = self._connection()
        passphrase = self._passphrase()
        context = self._ready()
        on_sqlite = context.state.database is None
        answer = run_script(
            self.workload.container,
            "create",
            self._request(
                connection,
                passphrase=passphrase,
                server_name=context.state.config.server_name,
                secrets=[path.name for path in IDENTITY_FILES.values()],
                directories=DIRECTORIES,
                sqlite=str(SQLITE_PATH) if on_sqlite else None,
            ),
        )
        info = parse_manifest(answer)
        results: dict[str, typing.Any] = {**info.summary()}
        if not on_sqlite:
            results["note"] = (
                "Synapse runs on PostgreSQL: this backup holds everything but the database; back the database up "
                "with the PostgreSQL charm's own backups"
            )
        return results

    def _list(self, _: ops.ActionEvent) -> dict[str, typing.Any]:
        """The complete backups in the bucket."""
        connection = self._connection()
        backups = parse_backups(run_script(self.workload.container, "list", self._request(connection)))
        return {"count": str(len(backups)), "backups": json.dumps([info.summary() for info in backups])}

    def _delete(self, event: ops.ActionEvent) -> dict[str, typing.Any]:
        """Delete one backup."""
        backup_id = self._backup_id(event)
        connection = self._connection()
        run_script(self.workload.container, "delete", self._request(connection, id=backup_id))
        return {"deleted": backup_id}

    def _restore(self, event: ops.ActionEvent) -> dict[str, typing.Any]:
        """Restore a backup; on any failure the previous data stays and Synapse runs on it."""
        backup_id = self._backup_id(event)
        connection = self._connection()
        passphrase = self._passphrase()
        context = self._ready()
        server_name = context.state.config.server_name
        request = self._request(
            connection, id=backup_id, passphrase=passphrase, server_name=server_name, directories=DIRECTORIES
        )
        container = self.workload.container
        try:
            info = parse_manifest(run_script(container, "stage", request))
            self._check_database(info, context)
        except (BackupError, BackupActionError):
            self._drop_staged()
            raise
        logger.info("restoring backup %s: stopping Synapse", backup_id)
        self.workload.stop()
        try:
            run_script(container, "swap", request)
            restored = self._restored_identity()
            self.workload.apply(render_files(context.state, restored))
            self._wait_healthy()
        except (BackupError, BackupActionError, ops.pebble.ChangeError, ops.pebble.APIError) as exc:
            logger.error("restore of %s failed (%s): putting the previous data back", backup_id, exc)
            self.workload.stop()
            try:
                run_script(container, "revert", request)
            except BackupError as revert_exc:  # Synapse stays stopped rather than run on mixed data
                raise BackupActionError(
                    f"restoring backup {backup_id} failed ({exc}) and moving the previous data back failed too "
                    f"({revert_exc}); Synapse is stopped; the previous data is in /data/.backup-previous"
                ) from None
            self.workload.apply(render_files(context.state, context.secrets))
            raise BackupActionError(
                f"restoring backup {backup_id} failed ({exc}); the previous data is back in place and Synapse runs "
                "on it"
            ) from None
        run_script(container, "commit", {})
        replace_server_secrets(self.charm, restored)
        return {"restored": backup_id, **info.summary()}

    def _drop_staged(self) -> None:
        """Remove a staged restore (best effort: the next restore replaces it anyway)."""
        try:
            run_script(self.workload.container, "commit", {})
        except BackupError as exc:
            logger.warning("could not remove the staged restore: %s", exc)

    def _check_database(self, info: BackupInfo, context: BackupContext) -> None:
        """The backup's database fits this server: SQLite into SQLite, none into PostgreSQL."""
        has_db = "sqlite-database" in info.contents
        if context.state.database is None and not has_db:
            raise BackupActionError(
                "the backup was taken on PostgreSQL and holds no database, but this server runs on SQLite; relate "
                "the PostgreSQL database first, then restore; nothing was changed"
            )
        if context.state.database is not None and has_db:
            raise BackupActionError(
                "the backup holds a SQLite database but this server runs on PostgreSQL; restore it on a server "
                "without a database relation; nothing was changed"
            )

    def _restored_identity(self) -> ServerSecrets:
        """The identity in the restored files; BackupActionError if they are not a valid identity."""
        values = {}
        for field, path in IDENTITY_FILES.items():
            try:
                values[field] = self.workload.container.pull(path, encoding="utf-8").read().strip()
            except (ops.pebble.PathError, FileNotFoundError):
                raise BackupActionError(f"the backup has no {path.name}") from None
        try:
            return ServerSecrets.model_validate(values)
        except pydantic.ValidationError:
            raise BackupActionError("the backup's signing key or secrets are malformed") from None

    def _wait_healthy(self) -> None:
        """Wait until the restarted Synapse answers its health check."""
        client = SynapseClient(timeout=2)
        deadline = time.monotonic() + RESTART_TIMEOUT
        while time.monotonic() < deadline:
            if self.workload.is_running() and client.is_healthy():
                return
            time.sleep(1)
        raise BackupActionError(f"Synapse did not become healthy within {RESTART_TIMEOUT:.0f}s")
