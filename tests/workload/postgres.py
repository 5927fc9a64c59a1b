"""A real PostgreSQL server for the workload tests, from Debian's packages.

`PostgresServer` runs `initdb` into a temporary directory (as the unprivileged `postgres`
OS user when the tests run as root: initdb refuses root), with a UTF-8 default locale
other than 'C' so that tests meet Synapse's collation check the way a default
postgresql-k8s database does. The server listens on 127.0.0.1 on a free port, with its
Unix socket in the temporary directory. Local (socket) connections are trusted, for the
tests' own administration; TCP connections need a password (scram-sha-256), as a
related charm's would.

`create_role` makes a login role with a password and CREATEDB, like the user
postgresql-k8s creates for a relation; `provider_database` creates and grants a database
the way the provider does (default locale). Administration goes through Debian's `psql`,
so the tests need no Python driver.

The `postgres_server` fixture (session scope) yields a started server with
`app_role` created; it is stopped and its directory removed at the end of the session.
Make it available with `from tests.workload.postgres import postgres_server_fixture` in a
conftest (or a test module).
"""

import atexit
import contextlib
import dataclasses
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from relations.database import DatabaseEndpoint

POSTGRES_LIB = Path("/usr/lib/postgresql")
# postgresql-k8s names the user of relation N `relation_id_N`.
APP_ROLE_NAME = "relation_id_7"
HOST = "127.0.0.1"
SUPERUSER = "postgres"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
# Unit separator between psql output fields: it never occurs in the values the tests read.
FIELD_SEPARATOR = "\x1f"
# Locales with a collation other than 'C', in order of preference. C.UTF-8 is built into
# glibc since 2.35 (Debian 12), so it is always there; Synapse wants exactly 'C'.
NON_C_LOCALES = ("en_US.UTF-8", "C.UTF-8")


class PostgresError(Exception):
    """PostgreSQL could not be set up, started, or ran a statement with an error."""


@dataclasses.dataclass(frozen=True)
class Role:
    """A login role and its password."""

    name: str
    password: str = dataclasses.field(repr=False)


def find_bin_dir() -> Path:
    """The newest installed PostgreSQL server's bin directory (POSTGRES_BIN_DIR overrides)."""
    override = os.environ.get("POSTGRES_BIN_DIR")
    if override:
        if not (Path(override) / "initdb").exists():
            raise PostgresError(f"POSTGRES_BIN_DIR={override} has no initdb")
        return Path(override)
    found = [path.parent for path in POSTGRES_LIB.glob("*/bin/initdb")]
    versions = [path for path in found if path.parent.name.isdigit()]
    if not versions:
        raise PostgresError(
            f"no PostgreSQL server under {POSTGRES_LIB}; install one with "
            "`apt-get update && apt-get install -y postgresql postgresql-client`"
        )
    return max(versions, key=lambda path: int(path.parent.name))


def _normalise_locale(name: str) -> str:
    """Compare locale names the way glibc does: case and '-' in the codeset do not matter."""
    return name.lower().replace("-", "")


def non_c_locale() -> str:
    """A UTF-8 locale whose collation is not 'C', as installed on this machine."""
    listed = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False).stdout.split()
    available = {_normalise_locale(name) for name in listed}
    for candidate in NON_C_LOCALES:
        if _normalise_locale(candidate) in available:
            return candidate
    raise PostgresError(
        f"none of {', '.join(NON_C_LOCALES)} is installed (`locale -a`); install the `locales` package "
        "and generate en_US.UTF-8"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _service_account() -> pwd.struct_passwd | None:
    """The unprivileged account to run PostgreSQL as, when we are root (None otherwise)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresError("running as root, but there is neither a `postgres` nor a `nobody` account")


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, listening on 127.0.0.1."""

    def __init__(
        self,
        locale: str | None = None,
        bin_dir: Path | None = None,
        *,
        collate: str | None = None,
        ctype: str | None = None,
    ):
        self.bin_dir = bin_dir or find_bin_dir()
        self.version = int(self.bin_dir.parent.name) if self.bin_dir.parent.name.isdigit() else 0
        self.locale = locale or non_c_locale()
        # initdb's --lc-collate/--lc-ctype, overriding `locale` (postgresql-k8s: C and C.UTF-8).
        self.collate = collate
        self.ctype = ctype
        self.host = HOST
        self.port = 0
        self.base_dir = Path(tempfile.mkdtemp(prefix="synapse-pg-"))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "socket"
        self.log_path = self.base_dir / "postgres.log"
        self.app_role: Role | None = None
        self._account = _service_account()
        self._process: subprocess.Popen[bytes] | None = None
        self._initialised = False

    # Lifecycle

    def __enter__(self) -> "PostgresServer":
        """Start the server."""
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        """Stop the server and remove its files."""
        self.cleanup()

    def _run_as_service(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool as the service account, raising PostgresError on failure."""
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.base_dir,
            user=self._uid,
            group=self._gid,
            extra_groups=self._extra_groups,
        )
        if result.returncode != 0:
            raise PostgresError(f"{Path(argv[0]).name} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    @property
    def _uid(self) -> int | None:
        """The uid PostgreSQL runs as (None: ours)."""
        return self._account.pw_uid if self._account else None

    @property
    def _gid(self) -> int | None:
        """The gid PostgreSQL runs as (None: ours)."""
        return self._account.pw_gid if self._account else None

    @property
    def _extra_groups(self) -> list[int] | None:
        """No supplementary groups when switching from root (root's group would be kept)."""
        return [] if self._account else None

    def initdb(self) -> None:
        """Create the cluster: UTF-8, the non-C locale, trust on the socket, passwords over TCP."""
        if self._initialised:
            return
        self.socket_dir.mkdir(mode=0o755)
        if self._account is not None:
            for path in (self.base_dir, self.socket_dir):
                os.chown(path, self._account.pw_uid, self._account.pw_gid)
        self._run_as_service(
            [
                str(self.bin_dir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                SUPERUSER,
                "--encoding",
                "UTF8",
                "--locale",
                self.locale,
                *(["--lc-collate", self.collate] if self.collate else []),
                *(["--lc-ctype", self.ctype] if self.ctype else []),
                "--auth-local",
                "trust",
                "--auth-host",
                "scram-sha-256",
                "--no-sync",
            ]
        )
        self._initialised = True

    def start(self, attempts: int = 3) -> None:
        """Start the server (after initdb, if needed) on a free port; wait until it accepts connections."""
        if self.is_running():
            return
        self.initdb()
        for attempt in range(1, attempts + 1):
            self.port = free_port()
            try:
                self._start_once()
                atexit.register(self.stop)
                return
            except PostgresError:
                self.stop()
                if attempt == attempts:
                    raise

    def _start_once(self) -> None:
        """Start the postmaster and wait for it (the port may have been taken meanwhile)."""
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [
                    str(self.bin_dir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-c",
                    f"listen_addresses={self.host}",
                    "-c",
                    f"unix_socket_directories={self.socket_dir}",
                    # A throwaway test cluster: durability is not needed, speed is.
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                start_new_session=True,
                user=self._uid,
                group=self._gid,
                extra_groups=self._extra_groups,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PostgresError(f"postgres exited with {self._process.returncode}: {self.log_tail()}")
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-q", "-h", str(self.socket_dir), "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise PostgresError(f"postgres did not accept connections within {START_TIMEOUT:.0f}s: {self.log_tail()}")

    @property
    def hba_path(self) -> Path:
        """The cluster's pg_hba.conf."""
        return self.data_dir / "pg_hba.conf"

    def set_hba(self, host_lines: list[str]) -> None:
        """Replace pg_hba.conf: trust on the socket (the tests' administration), then `host_lines`.

        Takes effect at the next start or `reload`, as a provider's rewritten pg_hba does.
        """
        lines = ["local all all trust", *host_lines]
        self.hba_path.write_text("".join(f"{line}\n" for line in lines))

    def reload(self) -> None:
        """Make the server re-read pg_hba.conf (SIGHUP), and wait until it has."""
        if self._process is None:
            raise PostgresError("the server is not running")
        before = self.execute("SELECT pg_conf_load_time()")[0][0]
        os.kill(self._process.pid, signal.SIGHUP)
        deadline = time.monotonic() + START_TIMEOUT
        while self.execute("SELECT pg_conf_load_time()")[0][0] == before:
            if time.monotonic() > deadline:
                raise PostgresError(f"the server did not reload within {START_TIMEOUT:.0f}s: {self.log_tail()}")
            time.sleep(0.05)

    def is_running(self) -> bool:
        """Whether the postmaster we started is alive."""
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Fast shutdown (SIGINT: disconnect clients, then exit); SIGKILL if it hangs."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # SQL

    def psql(
        self,
        sql: str,
        dbname: str = "postgres",
        variables: Mapping[str, str] | None = None,
        role: Role | None = None,
    ) -> list[list[str]]:
        """Run SQL with psql and return the rows as lists of strings.

        Without `role`, runs as the superuser over the Unix socket; with `role`, logs in with
        its password over TCP on 127.0.0.1. `variables` are psql variables: write `:'name'`
        for a quoted literal and `:"name"` for a quoted identifier in `sql`.
        """
        argv = [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-F", FIELD_SEPARATOR]
        argv += ["-v", "ON_ERROR_STOP=1", "-p", str(self.port), "-d", dbname]
        env = dict(os.environ, PGCONNECT_TIMEOUT="5", PGSSLMODE="disable")
        env.pop("PGPASSWORD", None)
        if role is None:
            argv += ["-h", str(self.socket_dir), "-U", SUPERUSER]
        else:
            argv += ["-h", self.host, "-U", role.name, "-w"]
            env["PGPASSWORD"] = role.password
        for name, value in (variables or {}).items():
            argv += ["-v", f"{name}={value}"]
        result = subprocess.run(argv, input=sql, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise PostgresError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return [line.split(FIELD_SEPARATOR) for line in result.stdout.splitlines() if line]

    def execute(self, sql: str, dbname: str = "postgres", **variables: str) -> list[list[str]]:
        """Run SQL as the superuser; keyword arguments are psql variables (see `psql`)."""
        return self.psql(sql, dbname=dbname, variables=variables)

    def create_role(self, name: str, password: str | None = None, createdb: bool = True) -> Role:
        """A login role with a password (and CREATEDB), as postgresql-k8s creates per relation."""
        role = Role(name, password or secrets.token_urlsafe(18))
        options = "LOGIN CREATEDB" if createdb else "LOGIN"
        self.execute(f"CREATE ROLE :\"name\" WITH {options} PASSWORD :'password'", name=name, password=role.password)
        return role

    def create_database(
        self,
        name: str,
        owner: str | None = None,
        *,
        collate: str | None = None,
        ctype: str | None = None,
        template: str = "template0",
        as_role: Role | None = None,
    ) -> None:
        """CREATE DATABASE, as the superuser or (with `as_role`) as that role over TCP.

        Without collate/ctype the database gets the cluster's default locale (not 'C').
        """
        clauses = ['CREATE DATABASE :"name" TEMPLATE :"template" ENCODING \'UTF8\'']
        variables = {"name": name, "template": template}
        if owner:
            clauses.append('OWNER :"owner"')
            variables["owner"] = owner
        if collate:
            clauses.append("LC_COLLATE :'collate'")
            variables["collate"] = collate
        if ctype:
            clauses.append("LC_CTYPE :'ctype'")
            variables["ctype"] = ctype
        self.psql(" ".join(clauses), variables=variables, role=as_role)

    def provider_database(self, name: str, role: Role) -> None:
        """Create and grant a database the way postgresql-k8s answers a request.

        The provider creates it with the server's defaults (so a non-C collation here) and
        grants our role all privileges on it and on its public schema.
        """
        self.execute('CREATE DATABASE :"name"', name=name)
        self.execute('GRANT ALL PRIVILEGES ON DATABASE :"name" TO :"role"', name=name, role=role.name)
        self.execute('GRANT ALL ON SCHEMA public TO :"role"', dbname=name, role=role.name)

    def drop_database(self, name: str) -> None:
        """Drop a database if it exists, disconnecting its clients."""
        self.execute('DROP DATABASE IF EXISTS :"name" WITH (FORCE)', name=name)

    def databases(self) -> list[str]:
        """Names of the non-template databases."""
        return [row[0] for row in self.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")]

    def database_locale(self, name: str) -> tuple[str, str]:
        """(datcollate, datctype) of a database, as Synapse checks them."""
        rows = self.execute("SELECT datcollate, datctype FROM pg_database WHERE datname = :'name'", name=name)
        if not rows:
            raise PostgresError(f"no database {name!r}")
        return rows[0][0], rows[0][1]

    def database_owner(self, name: str) -> str:
        """The owner role of a database."""
        rows = self.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :'name'",
            name=name,
        )
        if not rows:
            raise PostgresError(f"no database {name!r}")
        return rows[0][0]

    def can_login(self, role: Role, dbname: str = "postgres") -> bool:
        """Whether `role` can log in over TCP with its password."""
        try:
            return self.psql("SELECT current_user", dbname=dbname, role=role) == [[role.name]]
        except PostgresError:
            return False

    def endpoint(self, role: Role, database: str) -> DatabaseEndpoint:
        """What the charm would read from the relation for this server, role and database."""
        return DatabaseEndpoint(
            host=self.host, port=self.port, user=role.name, password=role.password, database=database
        )


_IDENTIFIER = re.compile(r"[^a-z0-9_]+")


def unique_name(prefix: str) -> str:
    """A fresh database/role name, e.g. for one test."""
    return f"{_IDENTIFIER.sub('_', prefix.lower())}_{secrets.token_hex(4)}"


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture() -> Iterator[PostgresServer]:
    """A started PostgreSQL with `app_role` (password, CREATEDB), like postgresql-k8s gives a relation."""
    server: PostgresServer | None = None
    try:
        server = PostgresServer()
        server.start()
        server.app_role = server.create_role(APP_ROLE_NAME, createdb=True)
    except PostgresError as exc:
        if server is not None:
            server.cleanup()
        pytest.fail(f"cannot start PostgreSQL for the workload tests: {exc}")
    try:
        yield server
    finally:
        server.cleanup()
