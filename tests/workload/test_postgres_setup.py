"""The in-container scripts of src/workload/postgres_setup.py, run for real against a real PostgreSQL.

The scripts run with the Synapse venv's python and synapse_port_db (what the Synapse image
ships), as Synapse's uid, with /data bound to a temporary directory: the way the workload
harness runs the charm's `container.exec` calls. The PostgreSQL server is the session's
`postgres_server` (default locale not 'C', like a database postgresql-k8s creates).
"""

import dataclasses
import os
import sqlite3
import typing
from pathlib import Path, PurePosixPath

import ops
import pytest

from constants import DATA_DIR, SQLITE_PATH, SYNAPSE_GID, SYNAPSE_UID
from tests.workload import harness
from tests.workload.postgres import PostgresServer, Role, free_port, unique_name
from workload import postgres_setup
from workload.postgres_setup import (
    DatabaseSetupError,
    PreparedDatabase,
    c_database_name,
    port_sqlite,
    prepare_database,
    sqlite_pending_updates,
)


@dataclasses.dataclass
class WorkloadContainer:
    """Stands in for ops.Container: `exec` runs the command as the workload would, for real."""

    venv: Path
    data_dir: Path
    commands: list[list[str]] = dataclasses.field(default_factory=list)

    def exec(self, command: list[str], **kwargs: typing.Any) -> harness.RealExec:
        """Run `command` with the asked uid/gid, the venv on PATH and /data bound to data_dir."""
        self.commands.append(list(command))
        return harness.real_exec(self.data_dir, self.venv, command, **kwargs)

    def host_path(self, path: PurePosixPath) -> Path:
        """Where a path under /data is on the host."""
        return self.data_dir / path.relative_to(DATA_DIR)


@pytest.fixture
def container(tmp_path: Path, synapse_venv: Path) -> ops.Container:
    """A workload container with an empty /data owned by Synapse."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.chown(data_dir, SYNAPSE_UID, SYNAPSE_GID)
    return typing.cast(ops.Container, WorkloadContainer(synapse_venv, data_dir))


def workload(container: ops.Container) -> WorkloadContainer:
    """The stand-in behind the ops.Container type."""
    return typing.cast(WorkloadContainer, container)


def connect_args(server: PostgresServer, role: Role, database: str) -> dict[str, typing.Any]:
    """The libpq keywords the charm passes (Synapse's args without the pool sizes)."""
    args = server.endpoint(role, database).synapse_args(5, 10)
    return {key: value for key, value in args.items() if key not in ("cp_min", "cp_max")}


def statement_in(message: str) -> str:
    """The SQL statement a Blocked message tells the operator to run."""
    marker = "as a PostgreSQL superuser run: "
    assert marker in message, message
    return message.split(marker, 1)[1]


# --- prepare_database ---------------------------------------------------------------------


def test_c_database_is_used_as_is(postgres_server: PostgresServer, container: ops.Container) -> None:
    role = postgres_server.create_role(unique_name("c_user"))
    name = unique_name("c_db")
    postgres_server.create_database(name, owner=role.name, collate="C", ctype="C")

    assert prepare_database(container, connect_args(postgres_server, role, name)).name == name

    assert c_database_name(name) not in postgres_server.databases()


def test_non_c_database_with_createdb_gets_a_c_database_owned_by_the_user(
    postgres_server: PostgresServer, container: ops.Container
) -> None:
    role = postgres_server.create_role(unique_name("createdb_user"), createdb=True)
    name = unique_name("provider_db")
    postgres_server.provider_database(name, role)
    assert postgres_server.database_locale(name) != ("C", "C")

    used = prepare_database(container, connect_args(postgres_server, role, name)).name

    assert used == f"{name}_c"
    assert postgres_server.database_locale(used) == ("C", "C")
    assert postgres_server.database_owner(used) == role.name
    assert postgres_server.execute(
        "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = :'n'", n=used
    ) == [["UTF8"]]
    assert postgres_server.can_login(role, dbname=used)
    # The password went on standard input, never on the command line.
    assert all(role.password not in " ".join(command) for command in workload(container).commands)

    # Asked again (the next hook, another leader): the same database, nothing new.
    before = sorted(postgres_server.databases())
    assert prepare_database(container, connect_args(postgres_server, role, name)).name == used
    assert sorted(postgres_server.databases()) == before


def test_c_database_of_another_user_is_refused_with_the_statements_that_fix_it(
    postgres_server: PostgresServer, container: ops.Container
) -> None:
    # Relating again gives a new user; the <db>_c the old user created, and its tables, are not the new user's.
    old = postgres_server.create_role(unique_name("old_user"), createdb=True)
    name = unique_name("relinked_db")
    postgres_server.provider_database(name, old)
    used = prepare_database(container, connect_args(postgres_server, old, name)).name
    postgres_server.psql("CREATE TABLE users (name text PRIMARY KEY); CREATE VIEW v AS SELECT 1", dbname=used, role=old)
    postgres_server.psql("CREATE SEQUENCE free_standing", dbname=used, role=old)
    new = postgres_server.create_role(unique_name("new_user"), createdb=True)
    postgres_server.execute(f'GRANT ALL ON DATABASE "{name}" TO "{new.name}"')
    postgres_server.execute(f'GRANT CONNECT ON DATABASE "{used}" TO "{new.name}"')

    with pytest.raises(DatabaseSetupError) as excinfo:
        prepare_database(container, connect_args(postgres_server, new, name), keep=used)

    message = str(excinfo.value)
    assert message.startswith(
        f"user {new.name} cannot use database {used}: it may not create tables in schema public and does not own "
        f"the tables already there (3 owned by {old.name}; a re-created relation gets a new user); "
    )
    marker = f"as a PostgreSQL superuser, connected to {used}, run: "
    assert message.split(marker, 1)[1].startswith(f'GRANT USAGE, CREATE ON SCHEMA "public" TO "{new.name}"; DO $$')
    # The statements work: run as the superuser, the new user's next try gets the database.
    postgres_server.execute(message.split(marker, 1)[1], dbname=used)
    assert prepare_database(container, connect_args(postgres_server, new, name), keep=used) == PreparedDatabase(used)
    assert postgres_server.execute(
        "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
        dbname=used,
    ) == [[new.name]]


def test_provided_c_database_with_tables_of_a_removed_user_names_the_owner_and_the_fix(
    postgres_server: PostgresServer, container: ops.Container
) -> None:
    # postgresql-k8s 14 on relation removal: REASSIGN OWNED BY <user> TO operator (a superuser).
    old = postgres_server.create_role(unique_name("old_user"))
    name = unique_name("c_db")
    postgres_server.create_database(name, owner=old.name, collate="C", ctype="C")
    postgres_server.psql("CREATE TABLE events (id bigserial PRIMARY KEY, body text)", dbname=name, role=old)
    operator = unique_name("operator")
    postgres_server.execute(f'CREATE ROLE "{operator}" SUPERUSER NOLOGIN')
    postgres_server.execute(f'REASSIGN OWNED BY "{old.name}" TO "{operator}"', dbname=name)
    new = postgres_server.create_role(unique_name("new_user"))
    postgres_server.execute(f'GRANT ALL ON DATABASE "{name}" TO "{new.name}"')
    postgres_server.execute(f'GRANT ALL ON SCHEMA public TO "{new.name}"', dbname=name)

    with pytest.raises(DatabaseSetupError) as excinfo:
        prepare_database(container, connect_args(postgres_server, new, name), keep=name)

    message = str(excinfo.value)
    assert f"user {new.name} cannot use database {name}: it does not own the tables already there" in message
    assert f"(2 owned by {operator}; " in message  # the table and its sequence
    postgres_server.execute(message.split("run: ", 1)[1], dbname=name)
    assert prepare_database(container, connect_args(postgres_server, new, name), keep=name) == PreparedDatabase(name)
    assert postgres_server.psql("INSERT INTO events (body) VALUES ('x') RETURNING id", dbname=name, role=new) == [["1"]]


def test_c_utf8_database_is_used_with_allow_unsafe_locale(
    postgres_server: PostgresServer, container: ops.Container
) -> None:
    role = postgres_server.create_role(unique_name("user"), createdb=False)
    name = unique_name("c_utf8_db")
    postgres_server.create_database(name, owner=role.name, collate="C", ctype="C.UTF-8")

    assert prepare_database(container, connect_args(postgres_server, role, name)) == PreparedDatabase(name, True)
    assert f"{name}_c" not in postgres_server.databases()


def test_a_kept_database_the_server_lacks_is_refused_not_replaced(
    postgres_server: PostgresServer, container: ops.Container
) -> None:
    role = postgres_server.create_role(unique_name("user"))
    name = unique_name("provider_db")
    postgres_server.provider_database(name, role)

    with pytest.raises(DatabaseSetupError) as excinfo:
        prepare_database(container, connect_args(postgres_server, role, name), keep=f"{name}_c")

    assert str(excinfo.value).startswith(f"Synapse's data is in database {name}_c, which the related PostgreSQL")
    assert f"{name}_c" not in postgres_server.databases()


def test_without_createdb_the_error_gives_the_statement_that_fixes_it(
    postgres_server: PostgresServer, container: ops.Container
) -> None:
    role = postgres_server.create_role(unique_name("plain_user"), createdb=False)
    name = unique_name("provider_db")
    postgres_server.provider_database(name, role)
    collate, ctype = postgres_server.database_locale(name)

    with pytest.raises(DatabaseSetupError) as excinfo:
        prepare_database(container, connect_args(postgres_server, role, name))

    message = str(excinfo.value)
    assert f"database {name} has collation {collate}/{ctype} but Synapse needs C" in message
    assert f"user {role.name} may not create databases" in message
    statement = statement_in(message)
    assert statement == (
        f'CREATE DATABASE "{name}_c" OWNER "{role.name}" TEMPLATE template0 ENCODING \'UTF8\' '
        "LC_COLLATE 'C' LC_CTYPE 'C'"
    )
    assert f"{name}_c" not in postgres_server.databases()

    postgres_server.execute(statement)  # what the operator does

    assert prepare_database(container, connect_args(postgres_server, role, name)).name == f"{name}_c"
    assert postgres_server.database_owner(f"{name}_c") == role.name


def test_existing_target_with_another_collation_is_refused(
    postgres_server: PostgresServer, container: ops.Container
) -> None:
    role = postgres_server.create_role(unique_name("user"))
    name = unique_name("provider_db")
    postgres_server.provider_database(name, role)
    postgres_server.create_database(f"{name}_c", owner=role.name)  # the server's default locale

    with pytest.raises(DatabaseSetupError) as excinfo:
        prepare_database(container, connect_args(postgres_server, role, name))

    assert f"database {name}_c exists but is not C-collated; drop it or recreate it with: CREATE DATABASE" in str(
        excinfo.value
    )


def test_target_the_user_may_not_connect_to_is_reported(
    postgres_server: PostgresServer, container: ops.Container
) -> None:
    role = postgres_server.create_role(unique_name("user"))
    name = unique_name("provider_db")
    postgres_server.provider_database(name, role)
    postgres_server.create_database(f"{name}_c", owner=role.name, collate="C", ctype="C")
    postgres_server.execute('REVOKE CONNECT ON DATABASE :"db" FROM PUBLIC', db=f"{name}_c")
    postgres_server.execute('REVOKE CONNECT ON DATABASE :"db" FROM :"role"', db=f"{name}_c", role=role.name)

    with pytest.raises(DatabaseSetupError) as excinfo:
        prepare_database(container, connect_args(postgres_server, role, name))

    message = str(excinfo.value)
    assert f"cannot connect to database {name}_c as {role.name}" in message
    assert "permission denied for database" in message
    assert f"grant {role.name} CONNECT on {name}_c" in message


def test_wrong_password_is_reported_without_the_password(
    postgres_server: PostgresServer, container: ops.Container
) -> None:
    role = postgres_server.create_role(unique_name("user"))
    name = unique_name("provider_db")
    postgres_server.provider_database(name, role)
    wrong = Role(role.name, "Wr0ng-pa55word-d41d8cd9")

    with pytest.raises(DatabaseSetupError) as excinfo:
        prepare_database(container, connect_args(postgres_server, wrong, name))

    message = str(excinfo.value)
    assert message.startswith("cannot connect to the database: ")
    assert f'password authentication failed for user "{role.name}"' in message
    assert wrong.password not in message
    assert role.password not in message


def test_nothing_listening_is_reported(postgres_server: PostgresServer, container: ops.Container) -> None:
    role = postgres_server.create_role(unique_name("user"))
    args = dict(connect_args(postgres_server, role, "postgres"), port=free_port())

    with pytest.raises(DatabaseSetupError) as excinfo:
        prepare_database(container, args)

    assert str(excinfo.value).startswith("cannot connect to the database: ")
    assert "Connection refused" in str(excinfo.value)


# --- sqlite_pending_updates ---------------------------------------------------------------


def sqlite_file(container: ops.Container, pending: int | None) -> Path:
    """A SQLite database at Synapse's path, with `pending` background updates (None: no such table)."""
    path = workload(container).host_path(SQLITE_PATH)
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        if pending is not None:
            conn.execute(
                "CREATE TABLE background_updates (update_name TEXT NOT NULL, progress_json TEXT NOT NULL, "
                "depends_on TEXT, ordering INT NOT NULL DEFAULT 0)"
            )
            conn.executemany(
                "INSERT INTO background_updates (update_name, progress_json) VALUES (?, '{}')",
                [(f"update_{n}",) for n in range(pending)],
            )
    conn.close()
    harness.chown_tree(path.parent, SYNAPSE_UID, SYNAPSE_GID)
    return path


@pytest.mark.parametrize(("pending", "expected"), [(3, 3), (0, 0), (None, 0)], ids=["three", "none-left", "no-table"])
def test_pending_background_updates_are_counted(container: ops.Container, pending: int | None, expected: int) -> None:
    path = sqlite_file(container, pending)
    before = path.read_bytes()

    assert sqlite_pending_updates(container) == expected

    assert path.read_bytes() == before  # opened read-only


def test_missing_sqlite_database_is_an_error(container: ops.Container) -> None:
    with pytest.raises(DatabaseSetupError) as excinfo:
        sqlite_pending_updates(container)

    assert str(excinfo.value).startswith("reading the SQLite database failed: ")
    assert "unable to open database file" in str(excinfo.value)


# --- port_sqlite: the real synapse_port_db's refusals --------------------------------------


def test_port_without_a_sqlite_database_fails_with_the_porters_reason(container: ops.Container) -> None:
    config = workload(container).host_path(DATA_DIR / "port.yaml")
    config.write_text("database:\n  name: psycopg2\n  args: {}\n")

    with pytest.raises(DatabaseSetupError) as excinfo:
        port_sqlite(container, DATA_DIR / "port.yaml")

    assert str(excinfo.value).startswith("porting SQLite to PostgreSQL failed: ")
    assert "The sqlite database you specified does not exist" in str(excinfo.value)


def test_port_into_a_non_postgresql_config_fails_with_the_porters_reason(container: ops.Container) -> None:
    sqlite_file(container, 0)
    config = workload(container).host_path(DATA_DIR / "port.yaml")
    config.write_text(f"database:\n  name: sqlite3\n  args: {{database: {SQLITE_PATH}}}\n")

    with pytest.raises(DatabaseSetupError) as excinfo:
        port_sqlite(container, DATA_DIR / "port.yaml")

    assert str(excinfo.value) == "porting SQLite to PostgreSQL failed: Database must use the 'psycopg2' connector."


# --- output parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "no error output"),
        ("", "no error output"),
        ("  \n\n ", "no error output"),
        ("one line\n", "one line"),
        (b"Traceback\nFile x\nValueError: bad\n", "File x ValueError: bad"),
        ("first\n\nsecond\n   \nthird\n", "second third"),
        (b"\xffbroken utf-8\n", "\ufffdbroken utf-8"),
        ("x" * 1000, "x" * 300),
    ],
    ids=["none", "empty", "blank", "one-line", "bytes-last-two", "blank-lines-skipped", "invalid-utf8", "capped"],
)
def test_tail(text: str | bytes | None, expected: str) -> None:
    assert postgres_setup._tail(text) == expected


def test_tail_keeps_the_end_of_long_output() -> None:
    assert postgres_setup._tail("start " + "y" * 400 + " end", limit=10) == "yyyyyy end"


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ('{"database": "synapse_c", "created": true}\n', {"database": "synapse_c", "created": True}),
        ('warning: something\n{"pending": 2}\n', {"pending": 2}),
        ('{"pending": 0}', {"pending": 0}),
    ],
    ids=["one-line", "last-line-counts", "no-newline"],
)
def test_json_answer(stdout: str, expected: dict[str, typing.Any]) -> None:
    assert postgres_setup._json_answer(stdout) == expected


@pytest.mark.parametrize(
    "stdout",
    ["", "\n", "not json", '["a", "list"]', '"a string"', '{"database": "x"}\ntrailing words', "null"],
    ids=["empty", "newline", "text", "list", "string", "text-after-json", "null"],
)
def test_json_answer_refuses_anything_but_an_object_on_the_last_line(stdout: str) -> None:
    with pytest.raises(DatabaseSetupError) as excinfo:
        postgres_setup._json_answer(stdout)

    assert str(excinfo.value).startswith("unexpected answer from the database check: ")


def test_json_answer_error_shows_only_the_end_of_the_output() -> None:
    with pytest.raises(DatabaseSetupError) as excinfo:
        postgres_setup._json_answer("a" * 500 + "TAIL")

    assert str(excinfo.value) == f"unexpected answer from the database check: {'a' * 196 + 'TAIL'!r}"
