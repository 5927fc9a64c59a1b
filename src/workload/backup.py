"""Run the in-container backup script (backup_script.py) and parse its answers.

The script's source is sent as `python -c` (the image's Python, where /data is); the request,
with the S3 credentials and the passphrase, goes on stdin, never in argv, the environment
or a file. Every answer is parsed into a pydantic model here; anything else is a BackupError.
"""

import functools
import json
import logging
import typing
from pathlib import Path

import ops
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from constants import SYNAPSE_GID, SYNAPSE_UID

logger = logging.getLogger(__name__)

SCRIPT_PATH = Path(__file__).with_name("backup_script.py")
# A backup of many GB streams at the network's speed: give it hours, the rest minutes.
LONG_TIMEOUT = 12 * 3600
SHORT_TIMEOUT = 300
# Commands that read /data as Synapse's uid (files they create belong to Synapse); the others
# move directories in /data and give restored files to Synapse, so they run as root.
AS_SYNAPSE = ("create", "list", "delete")


class BackupError(Exception):
    """A backup command failed; `code` is the script's error code, the message is for the operator."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class BackupInfo(BaseModel):
    """A backup's manifest, as listed."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(pattern=r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")
    created: str = Field(max_length=64)
    server_name: str = Field(max_length=300)
    database: str = Field(max_length=64)
    contents: tuple[str, ...] = ()
    size: int = Field(default=0, ge=0)

    def summary(self) -> dict[str, str]:
        """The action-result form (Juju action results are strings)."""
        return {
            "id": self.id,
            "created": self.created,
            "size": str(self.size),
            "server-name": self.server_name,
            "database": self.database,
            "contents": ",".join(self.contents),
        }


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")

    ok: bool
    error: str = ""
    detail: str = ""


class _ListAnswer(BaseModel):
    backups: list[dict[str, typing.Any]] = []


class _StageAnswer(BaseModel):
    manifest: BackupInfo


@functools.cache
def _script() -> str:
    """The script's source."""
    return SCRIPT_PATH.read_text()


def run_script(container: ops.Container, command: str, request: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """Run one script command; its answer (without `ok`), or BackupError."""
    as_synapse = command in AS_SYNAPSE
    try:
        process = container.exec(
            ["python", "-c", _script()],
            stdin=json.dumps({"command": command, **request}),
            user_id=SYNAPSE_UID if as_synapse else 0,
            group_id=SYNAPSE_GID if as_synapse else 0,
            timeout=LONG_TIMEOUT if command in ("create", "stage") else SHORT_TIMEOUT,
        )
        stdout, _ = process.wait_output()
    except ops.pebble.ExecError as exc:
        stderr = exc.stderr if isinstance(exc.stderr, str) else (exc.stderr or b"").decode(errors="replace")
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        raise BackupError("crashed", lines[-1][-300:] if lines else f"exit status {exc.exit_code}") from None
    except ops.pebble.TimeoutError:
        raise BackupError("timeout", f"the {command} command did not finish in time") from None
    except (ops.pebble.APIError, ops.pebble.ConnectionError) as exc:
        raise BackupError("pebble", str(exc)) from None
    return parse_answer(str(stdout))


def parse_answer(stdout: str) -> dict[str, typing.Any]:
    """The script's answer: the last line of stdout as JSON; BackupError for a failure or garbage."""
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    try:
        raw = json.loads(lines[-1]) if lines else None
        answer = _Answer.model_validate(raw)
    except (ValueError, pydantic.ValidationError):
        raise BackupError("garbled", f"unexpected answer from the backup script: {stdout[-200:]!r}") from None
    if not answer.ok:
        raise BackupError(answer.error or "failed", answer.detail[:500])
    return dict(answer.model_extra or {})


def parse_backups(answer: dict[str, typing.Any]) -> list[BackupInfo]:
    """The listed backups, newest first; entries that do not parse are skipped."""
    try:
        entries = _ListAnswer.model_validate(answer).backups
    except pydantic.ValidationError:
        raise BackupError("garbled", "the backup list is not a list of manifests") from None
    found = []
    for entry in entries:
        try:
            found.append(BackupInfo.model_validate(entry))
        except pydantic.ValidationError:
            logger.warning("skipping an unreadable backup manifest")
    return sorted(found, key=lambda info: info.id, reverse=True)


def parse_manifest(answer: dict[str, typing.Any]) -> BackupInfo:
    """The manifest of a created or staged backup."""
    try:
        return _StageAnswer.model_validate({"manifest": answer.get("manifest", answer)}).manifest
    except pydantic.ValidationError:
        raise BackupError("garbled", "the backup's manifest is unreadable") from None
