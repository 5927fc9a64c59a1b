"""PostgreSQL preparation, run inside the workload container with the image's own Python.

The Synapse image ships psycopg2 and `synapse_port_db`; the charm container does not need
them. Credentials reach these commands on standard input, never in argv, the environment
or a world-readable file.

- `prepare_database`: pick the database Synapse runs on. The one it runs on already is kept.
  Otherwise the provided database, when its collation is C: with ctype C as is, with ctype
  C.UTF-8 (what postgresql-k8s creates) through Synapse's `allow_unsafe_locale`, because the
  sort order Synapse's indexes depend on is byte order either way. Otherwise `<name>_c`,
  created from template0 with LC_COLLATE/LC_CTYPE 'C' by the user (CREATEDB attribute,
  postgresql-k8s 14) or by a CREATEDB role it is a member of (`charmed_databases_owner`, 16),
  with no privileges for PUBLIC; in a database owned by such a role, the user's sessions run
  as that role (`ALTER ROLE … IN DATABASE … SET role`), so its tables outlive the user.
  It also checks that the user can run Synapse's schema there (CREATE on the schema, owner
  of the tables already there), else explains exactly what the operator must run; a
  database pg_hba does not allow yet (14's poller) means wait.
- `sqlite_pending_updates`: the porter refuses a SQLite database with pending background
  updates; the charm waits for Synapse to finish them instead of failing.
- `port_sqlite`: copy the SQLite database into PostgreSQL with Synapse stopped.
"""

import dataclasses
import json
import logging
import typing
from pathlib import PurePosixPath

import ops
import pydantic

from constants import SQLITE_PATH, SYNAPSE_GID, SYNAPSE_UID

logger = logging.getLogger(__name__)

PREPARE_TIMEOUT = 120
PORT_TIMEOUT = 6 * 3600

_PREPARE_SCRIPT = r"""
import json, sys


def locale_verdict(collate, ctype):
    # "ok": C/C; "unsafe-ctype": collate C with ctype C.UTF-8 (Synapse needs allow_unsafe_locale,
    # the sort order is byte order either way); "wrong": anything else.
    if collate != "C":
        return "wrong"
    if ctype == "C":
        return "ok"
    return "unsafe-ctype" if ctype.lower().replace("-", "") == "c.utf8" else "wrong"


def choose(provided, provided_locale, keep, c_database):
    # Which database Synapse uses: the one it already runs on; else the provided one if its
    # collation is C (ctype C or C.UTF-8); else the C database next to it.
    if keep:
        return keep
    if locale_verdict(*provided_locale) != "wrong":
        return provided
    return c_database


def locale_of(cur, name):
    cur.execute("SELECT datcollate, datctype FROM pg_database WHERE datname = %s", (name,))
    row = cur.fetchone()
    return tuple(row) if row else None


def creator_role(cur):
    # The role that may CREATE DATABASE: the user itself (CREATEDB attribute, postgresql-k8s 14),
    # else a non-superuser role with CREATEDB it is a member of (charmed_databases_owner, 16).
    cur.execute(
        "SELECT rolname FROM pg_roles WHERE rolcreatedb AND (rolname = session_user OR (NOT rolsuper AND "
        "pg_has_role(session_user, oid, 'MEMBER'))) ORDER BY rolname <> session_user, rolname LIMIT 1"
    )
    row = cur.fetchone()
    return row[0] if row else None


def create_c_database(sql, cur, target, user):
    creator = creator_role(cur)
    if creator is None:
        return False
    cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(creator)))
    cur.execute(
        sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'").format(
            sql.Identifier(target)
        )
    )
    cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(target)))
    cur.execute("RESET ROLE")
    return True


def adopt_owner_role(sql, cur, target, user):
    # <db>_c owned by a group role the user is a member of (16's charmed_databases_owner): the
    # user's sessions there run as that role, as 16's login hook does on the provided database,
    # so Synapse's tables belong to it and a later relation user (also a member) can use them.
    cur.execute(
        "SELECT r.rolname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = %s "
        "AND r.rolname <> session_user AND NOT r.rolsuper AND NOT r.rolcanlogin "
        "AND pg_has_role(session_user, r.oid, 'MEMBER')",
        (target,),
    )
    row = cur.fetchone()
    if row is None:
        return
    cur.execute("SET ROLE NONE")  # ALTER ROLE for oneself, not as the role a login hook switched to
    cur.execute(
        sql.SQL("ALTER ROLE {} IN DATABASE {} SET role = {}").format(
            sql.Identifier(user), sql.Identifier(target), sql.Literal(row[0])
        )
    )


def usability(cur):
    # What stops the session's role from running Synapse's schema here: no CREATE on the
    # schema, or objects in it that the role does not own (a re-created relation's new user).
    cur.execute("SELECT current_user, current_schema()")
    role, schema = cur.fetchone()
    if schema is None:
        return {"error": "no-schema", "role": role}
    # Both: with a list of privileges, has_schema_privilege is true if any one is held.
    cur.execute(
        "SELECT has_schema_privilege(current_schema(), 'USAGE') AND has_schema_privilege(current_schema(), 'CREATE')"
    )
    problems = {"role": role, "schema": schema}
    if not cur.fetchone()[0]:
        problems["schema_privilege"] = False
    cur.execute(
        "SELECT pg_get_userbyid(relowner), count(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
        " AND relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND NOT pg_has_role(current_user, relowner, 'USAGE')"
        " GROUP BY 1 ORDER BY 2 DESC, 1"
    )
    owners = [[owner, count] for owner, count in cur.fetchall()]
    if owners:
        problems["owners"] = owners
    if len(problems) > 2:
        problems["error"] = "unusable"
    return problems


def main(request):
    import psycopg2
    from psycopg2 import sql

    connect = request["connect"]
    provided = connect["dbname"]
    try:
        conn = psycopg2.connect(connect_timeout=15, **connect)
    except psycopg2.Error as exc:
        return {"error": "connect", "detail": str(exc).strip()}
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT session_user")
    user = cur.fetchone()[0]
    provided_locale = locale_of(cur, provided)
    target = choose(provided, provided_locale, request.get("keep"), request["c_database"])
    answer = {"database": target, "user": user, "created": False}
    locale = locale_of(cur, target)
    if locale is None and (request.get("keep") or target != request["c_database"]):
        return dict(answer, error="missing")
    if locale is None:
        if not create_c_database(sql, cur, target, user):
            return dict(answer, error="no-createdb", locale=list(provided_locale))
        answer["created"] = True
        locale = locale_of(cur, target)
    if target == request["c_database"]:
        adopt_owner_role(sql, cur, target, user)
    verdict = locale_verdict(*locale)
    if verdict == "wrong":
        return dict(answer, error="target-locale", locale=list(locale))
    answer["allow_unsafe_locale"] = verdict == "unsafe-ctype"
    if target != provided:
        cur.execute(
            "SELECT pg_get_userbyid(datdba), pg_has_role(session_user, datdba, 'USAGE') FROM pg_database "
            "WHERE datname = %s",
            (target,),
        )
        answer["owner"], owner_usable = cur.fetchone()
        conn.close()
        try:
            conn = psycopg2.connect(connect_timeout=15, **dict(connect, dbname=target))
        except psycopg2.Error as exc:
            detail = str(exc).strip()
            error = "connect-target"
            if "no pg_hba.conf entry" in detail:
                error = "hba-pending"
            elif "permission denied for database" in detail and not owner_usable:
                error = "foreign-database"
            return dict(answer, error=error, detail=detail)
        conn.autocommit = True
        cur = conn.cursor()
    answer.update(usability(cur))
    return answer


if __name__ == "__main__":
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


class DatabaseWaitError(DatabaseSetupError):
    """The database will be usable without the operator: wait and try again on a later hook."""


@dataclasses.dataclass(frozen=True)
class PreparedDatabase:
    """The database Synapse uses, and whether Synapse must accept its ctype (C.UTF-8)."""

    name: str
    allow_unsafe_locale: bool = False


class PrepareAnswer(pydantic.BaseModel):
    """What the prepare script printed: the database chosen, or the error and its facts."""

    model_config = pydantic.ConfigDict(frozen=True, extra="ignore")

    database: str | None = None
    error: str | None = None
    user: str | None = None
    role: str | None = None
    schema_: str = pydantic.Field(default="public", alias="schema")
    created: bool = False
    allow_unsafe_locale: bool = False
    locale: tuple[str, str] | None = None
    owner: str | None = None
    owners: tuple[tuple[str, int], ...] = ()
    schema_privilege: bool = True
    detail: str = ""


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


def prepare_database(
    container: ops.Container, connect: dict[str, typing.Any], keep: str | None = None
) -> PreparedDatabase:
    """The database Synapse can use: `keep` (the one it runs on already), the provided one, or `<db>_c`.

    The provided database is used when its collation is C (ctype C, or C.UTF-8 with
    `allow_unsafe_locale`); otherwise the leader creates `<db>_c` with collation and ctype C.
    `connect` holds libpq keywords (host, port, user, password, dbname, sslmode...).
    Raises DatabaseWaitError when PostgreSQL will allow it soon (pg_hba not refreshed yet),
    DatabaseSetupError with the operator's next step when it needs the operator.
    """
    database = str(connect["dbname"])
    target = c_database_name(database)
    request = json.dumps({"connect": connect, "c_database": target, "keep": keep})
    try:
        stdout, _ = _run(container, ["python", "-c", _PREPARE_SCRIPT], request, PREPARE_TIMEOUT)
    except ops.pebble.ExecError as exc:
        raise DatabaseSetupError(f"checking the database failed: {_tail(exc.stderr)}") from None
    try:
        answer = PrepareAnswer.model_validate(_json_answer(stdout))
    except pydantic.ValidationError:
        raise DatabaseSetupError(f"unexpected answer from the database check: {stdout[-200:]!r}") from None
    if answer.error is None and answer.database:
        if answer.created:
            logger.info("created database %s with collation and ctype C", answer.database)
        if answer.allow_unsafe_locale:
            logger.info(
                "database %s has collation C and ctype C.UTF-8: Synapse runs on it with allow_unsafe_locale "
                "(its indexes sort by byte order either way)",
                answer.database,
            )
        return PreparedDatabase(answer.database, answer.allow_unsafe_locale)
    raise _setup_error(answer, database, target, keep, str(connect.get("user")))


def _setup_error(  # noqa: PLR0911 (one message per error, in order)
    answer: PrepareAnswer, database: str, target: str, keep: str | None, connect_user: str
) -> DatabaseSetupError:
    """The operator's next step for a refused database."""
    user = answer.user or connect_user
    used = answer.database or target
    create = (
        f"CREATE DATABASE {_ident(target)} OWNER {_ident(user)} TEMPLATE template0 ENCODING 'UTF8' "
        "LC_COLLATE 'C' LC_CTYPE 'C'"
    )
    locale = "/".join(answer.locale or ())
    if answer.error == "no-createdb":
        return DatabaseSetupError(
            f"database {database} has collation {locale} but Synapse needs C and user {user} may not create "
            f"databases; as a PostgreSQL superuser run: {create}"
        )
    if answer.error == "missing":
        return DatabaseSetupError(
            f"Synapse's data is in database {used}, which the related PostgreSQL does not have; relate the "
            "PostgreSQL that holds it (the charm never moves a server to another database)"
        )
    if answer.error == "target-locale" and used == target and not keep:
        return DatabaseSetupError(
            f"database {target} exists but is not C-collated; drop it or recreate it with: {create}"
        )
    if answer.error == "target-locale":
        return DatabaseSetupError(
            f"database {used}, which Synapse's data is in, has collation {locale}; Synapse needs collation C"
        )
    if answer.error == "hba-pending":
        return DatabaseWaitError(
            f"waiting for PostgreSQL to allow connections to {used} (its pg_hba.conf has no entry for it yet; "
            "postgresql-k8s 14 adds one within a minute)"
        )
    if answer.error == "connect-target":
        return DatabaseSetupError(
            f"cannot connect to database {used} as {user} ({answer.detail}); grant {user} CONNECT on "
            f"{used} and allow it in the PostgreSQL server's pg_hba"
        )
    if answer.error in ("unusable", "no-schema"):
        return DatabaseSetupError(_unusable_message(answer, used, user))
    if answer.error == "foreign-database":
        statements = [
            f"ALTER DATABASE {_ident(used)} OWNER TO {_ident(user)}",
            f"GRANT USAGE, CREATE ON SCHEMA public TO {_ident(user)}",
            _reassign_statement("public", user),
        ]
        return DatabaseSetupError(
            f"user {user} may not connect to database {used}, which belongs to {answer.owner} (a re-created "
            f"relation gets a new user); as a PostgreSQL superuser, connected to {used}, run: {'; '.join(statements)}"
        )
    return DatabaseSetupError(f"cannot connect to the database: {answer.detail or answer.error or 'no answer'}")


def _unusable_message(answer: PrepareAnswer, database: str, user: str) -> str:
    """Why the relation's user cannot run Synapse's schema in `database`, and the statements that fix it."""
    role = answer.role or user
    who = f"user {user}" if role == user else f"user {user} (as role {role})"
    reasons, statements = [], []
    if answer.error == "no-schema" or not answer.schema_privilege:
        reasons.append(f"may not create tables in schema {answer.schema_}")
        statements.append(f"GRANT USAGE, CREATE ON SCHEMA {_ident(answer.schema_)} TO {_ident(role)}")
    if answer.owners:
        owned = ", ".join(f"{count} owned by {owner}" for owner, count in answer.owners)
        reasons.append(f"does not own the tables already there ({owned}; a re-created relation gets a new user)")
        statements.append(_reassign_statement(answer.schema_, role))
    return (
        f"{who} cannot use database {database}: it {' and '.join(reasons)}; as a PostgreSQL superuser, "
        f"connected to {database}, run: {'; '.join(statements)}"
    )


# Run by the operator as a superuser (see `_reassign_statement`); :schema and :role become literals.
_REASSIGN_TEMPLATE = (
    "DO $$DECLARE r record; BEGIN FOR r IN SELECT c.oid::regclass AS o, c.relkind AS k FROM pg_class c "
    "WHERE c.relnamespace = :schema::regnamespace AND c.relkind IN ('r','p','v','m','S','f') "
    "AND NOT pg_has_role(:role, c.relowner, 'USAGE') AND NOT EXISTS (SELECT 1 FROM pg_depend d "
    "WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a','i')) LOOP "
    "EXECUTE format('ALTER %s %s OWNER TO %I', CASE WHEN r.k = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.o, "
    ":role); END LOOP; END$$"
)


def _reassign_statement(schema: str, role: str) -> str:
    """One statement giving `role` every table, view and sequence of `schema` it cannot use.

    Not REASSIGN OWNED: the owner may be the provider's superuser (postgresql-k8s 14 reassigns
    a removed relation's objects to `operator`), whose other objects must stay its own.
    Sequences owned by a table follow their table.
    """
    return _REASSIGN_TEMPLATE.replace(":schema", _literal(_ident(schema))).replace(":role", _literal(role))


def _literal(text: str) -> str:
    """A PostgreSQL string literal."""
    return "'" + text.replace("'", "''") + "'"


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
