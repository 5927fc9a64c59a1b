"""PostgreSQL preparation, run inside the workload container with the image's own Python.

The Synapse image ships psycopg2 and `synapse_port_db`; the charm container does not need
them. Credentials reach these commands on standard input, never in argv, the environment
or a world-readable file.

- `prepare_database`: Synapse refuses databases whose collation or ctype is not C. If the
  provided database is not, create `<name>_c` from template0 with LC_COLLATE/LC_CTYPE 'C'
  (the charm asks the provider for CREATEDB) or explain exactly what the operator must do.
- `sqlite_pending_updates`: the porter refuses a SQLite database with pending background
  updates; the charm waits for Synapse to finish them instead of failing.
- `port_sqlite`: copy the SQLite database into PostgreSQL with Synapse stopped.
"""

import json
import logging
import typing
from pathlib import PurePosixPath

import ops

from constants import SQLITE_PATH, SYNAPSE_GID, SYNAPSE_UID

logger = logging.getLogger(__name__)

PREPARE_TIMEOUT = 120
PORT_TIMEOUT = 6 * 3600

_PREPARE_SCRIPT = r"""
import json, sys
import psycopg2
from psycopg2 import sql


def locale_of(cur, name):
    cur.execute("SELECT datcollate, datctype FROM pg_database WHERE datname = %s", (name,))
    row = cur.fetchone()
    return tuple(row) if row else None


def main(request):
    connect = request["connect"]
    target = request["c_database"]
    try:
        conn = psycopg2.connect(connect_timeout=15, **connect)
    except psycopg2.Error as exc:
        return {"error": "connect", "detail": str(exc).strip()}
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT current_user")
    user = cur.fetchone()[0]
    current = locale_of(cur, connect["dbname"])
    if current == ("C", "C"):
        return {"database": connect["dbname"]}
    existing = locale_of(cur, target)
    if existing is None:
        cur.execute("SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user")
        if not cur.fetchone()[0]:
            return {"error": "no-createdb", "locale": list(current), "user": user}
        cur.execute(
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(sql.Identifier(target))
        )
    elif existing != ("C", "C"):
        return {"error": "target-locale", "locale": list(existing), "user": user}
    else:
        cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (target,))
        owner = cur.fetchone()[0]
        if owner != user:
            return {"error": "target-owner", "owner": owner, "user": user}
    try:
        psycopg2.connect(connect_timeout=15, **dict(connect, dbname=target)).close()
    except psycopg2.Error as exc:
        return {"error": "connect-target", "detail": str(exc).strip(), "user": user}
    return {"database": target, "created": existing is None}


print(json.dumps(main(json.load(sys.stdin))))
"""

_PENDING_UPDATES_SCRIPT = r"""
import json, sqlite3, sys
path = sys.argv[1]
conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
try:
    pending = conn.execute("SELECT count(*) FROM background_updates").fetchone()[0]
except sqlite3.OperationalError:
    pending = 0
print(json.dumps({"pending": pending}))
"""


class DatabaseSetupError(Exception):
    """The database cannot be used yet; the message tells the operator what to do."""


def c_database_name(database: str) -> str:
    """The name of the C-collated database the charm creates next to `database` if needed."""
    return f"{database}_c"


def _run(container: ops.Container, command: list[str], stdin: str | None, timeout: float) -> tuple[str, str]:
    """Run a command as Synapse's user; return stdout and stderr, raising ExecError on failure."""
    try:
        process = container.exec(
            command,
            stdin=stdin,
            user_id=SYNAPSE_UID,
            group_id=SYNAPSE_GID,
            timeout=timeout,
            encoding="utf-8",
        )
        stdout, stderr = process.wait_output()
    except ops.pebble.TimeoutError:
        raise DatabaseSetupError(f"{command[0]} did not finish within {timeout:.0f} s") from None
    except (ops.pebble.APIError, ops.pebble.ChangeError) as exc:
        raise DatabaseSetupError(f"cannot run {command[0]} in the workload container: {exc}") from None
    return stdout or "", stderr or ""


def _json_answer(stdout: str) -> dict[str, typing.Any]:
    """The JSON object a script printed on its last line."""
    lines = stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise DatabaseSetupError(f"unexpected answer from the database check: {stdout[-200:]!r}")
    return answer


def prepare_database(container: ops.Container, connect: dict[str, typing.Any]) -> str:
    """The name of a C-collated database Synapse can use, creating one if needed.

    `connect` holds libpq keywords (host, port, user, password, dbname, sslmode...).
    Raises DatabaseSetupError with the operator's next step when that is impossible.
    """
    database = str(connect["dbname"])
    target = c_database_name(database)
    request = json.dumps({"connect": connect, "c_database": target})
    try:
        stdout, _ = _run(container, ["python", "-c", _PREPARE_SCRIPT], request, PREPARE_TIMEOUT)
    except ops.pebble.ExecError as exc:
        raise DatabaseSetupError(f"checking the database failed: {_tail(exc.stderr)}") from None
    answer = _json_answer(stdout)
    error = answer.get("error")
    if error is None and answer.get("database"):
        if answer.get("created"):
            logger.info("created database %s with C collation", answer["database"])
        return str(answer["database"])
    user = str(answer.get("user", connect.get("user")))
    create = (
        f"CREATE DATABASE {_ident(target)} OWNER {_ident(user)} TEMPLATE template0 ENCODING 'UTF8' "
        "LC_COLLATE 'C' LC_CTYPE 'C'"
    )
    if error == "no-createdb":
        locale = "/".join(answer.get("locale", []))
        raise DatabaseSetupError(
            f"database {database} has collation {locale} but Synapse needs C and user {user} may not create "
            f"databases; as a PostgreSQL superuser run: {create}"
        )
    if error == "target-locale":
        raise DatabaseSetupError(
            f"database {target} exists but is not C-collated; drop it or recreate it with: {create}"
        )
    if error == "target-owner":
        owner = str(answer.get("owner"))
        raise DatabaseSetupError(
            f"database {target} belongs to {owner}, not to this relation's user {user}; as a PostgreSQL superuser "
            f"run: ALTER DATABASE {_ident(target)} OWNER TO {_ident(user)}; and, connected to {target}: "
            f"REASSIGN OWNED BY {_ident(owner)} TO {_ident(user)}"
        )
    if error == "connect-target":
        raise DatabaseSetupError(
            f"cannot connect to database {target} as {user} ({answer.get('detail', '')}); grant {user} CONNECT on "
            f"{target} and allow it in the PostgreSQL server's pg_hba"
        )
    raise DatabaseSetupError(f"cannot connect to the database: {answer.get('detail', error or 'no answer')}")


def _ident(name: str) -> str:
    """A PostgreSQL identifier, quoted for an operator to paste into psql."""
    return '"' + name.replace('"', '""') + '"'


def sqlite_pending_updates(container: ops.Container, path: PurePosixPath = SQLITE_PATH) -> int:
    """How many background updates the SQLite database still has (the porter needs none)."""
    try:
        stdout, _ = _run(container, ["python", "-c", _PENDING_UPDATES_SCRIPT, str(path)], None, PREPARE_TIMEOUT)
    except ops.pebble.ExecError as exc:
        raise DatabaseSetupError(f"reading the SQLite database failed: {_tail(exc.stderr)}") from None
    pending = _json_answer(stdout).get("pending", 0)
    if not isinstance(pending, int):
        raise DatabaseSetupError(f"unexpected answer from the SQLite check: {stdout[-200:]!r}")
    return pending


def port_sqlite(container: ops.Container, postgres_config: PurePosixPath, path: PurePosixPath = SQLITE_PATH) -> None:
    """Copy the SQLite database into the PostgreSQL database of `postgres_config`.

    Synapse must be stopped. Raises DatabaseSetupError with the porter's reason on failure.
    """
    command = ["synapse_port_db", "--sqlite-database", str(path), "--postgres-config", str(postgres_config)]
    try:
        _run(container, command, None, PORT_TIMEOUT)
    except ops.pebble.ExecError as exc:
        raise DatabaseSetupError(f"porting SQLite to PostgreSQL failed: {_tail(exc.stderr)}") from None


def _tail(text: str | bytes | None, limit: int = 300) -> str:
    """The last line(s) of a command's error output, for a status message."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return " ".join(lines[-2:])[-limit:] if lines else "no error output"
