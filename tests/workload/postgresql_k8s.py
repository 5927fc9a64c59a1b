"""What postgresql-k8s 16 and 14 give a relation, reproduced with plain SQL on a test PostgreSQL.

From a reading of canonical/postgresql-k8s-operator (tracks 16 and 14, June 2026):

- Both run initdb without a locale in a C.UTF-8 environment: databases have collate `C` and
  ctype `C.UTF-8` (`PostgresServer(collate="C", ctype="C.UTF-8")`).
- 16 (`Track16`): the relation user has no CREATEDB attribute. It is a member of
  `charmed_databases_owner` (NOLOGIN, CREATEDB), which owns the provided database, and of
  `charmed_<db>_owner` (NOCREATEDB); a login hook switches its sessions on the provided
  database to `charmed_<db>_owner`, reproduced here with `ALTER ROLE … IN DATABASE … SET
  role`. So Synapse's tables there belong to `charmed_<db>_owner`, not to the user.
- 14 (`Track14`): the user has the CREATEDB attribute and owns the provided database.
  pg_hba lists each user's databases and is refreshed by a poller every 30 s: the tests
  add entries with `allow` and trigger the refresh with `refresh`. On relation removal the
  provider runs `REASSIGN OWNED BY <user> TO operator` (a superuser) and drops the user.
"""

import dataclasses
import secrets

from tests.workload.postgres import PostgresServer, Role

OPERATOR = "operator"  # postgresql-k8s's superuser
DATABASES_OWNER = "charmed_databases_owner"


def database_owner_role(database: str) -> str:
    """16's per-database owner role."""
    return f"charmed_{database}_owner"


def _new_role(server: PostgresServer, name: str, options: str) -> Role:
    """A login role with a fresh password."""
    role = Role(name, secrets.token_urlsafe(18))
    statement = f"CREATE ROLE :\"name\" WITH LOGIN {options} PASSWORD :'password'"
    server.execute(statement, name=name, password=role.password)
    return role


@dataclasses.dataclass
class Track16:
    """postgresql-k8s 16's catalogue for the relations of one database."""

    server: PostgresServer
    database: str

    def relation_user(self, name: str) -> Role:
        """Create the database (first relation) and a relation user, as 16 answers a request."""
        owner = database_owner_role(self.database)
        if not self.server.execute("SELECT 1 FROM pg_roles WHERE rolname = :'r'", r=DATABASES_OWNER):
            self.server.execute('CREATE ROLE :"r" NOLOGIN CREATEDB', r=DATABASES_OWNER)
        if self.database not in self.server.databases():
            self.server.execute('CREATE DATABASE :"db" OWNER :"r"', db=self.database, r=DATABASES_OWNER)
            self.server.execute('REVOKE ALL ON DATABASE :"db" FROM PUBLIC', db=self.database)
            self.server.execute('CREATE ROLE :"r" NOLOGIN NOCREATEDB', r=owner)
            self.server.execute('GRANT CONNECT, CREATE, TEMPORARY ON DATABASE :"db" TO :"r"', db=self.database, r=owner)
            self.server.execute('GRANT ALL ON SCHEMA public TO :"r"', dbname=self.database, r=owner)
        role = _new_role(self.server, name, "NOCREATEDB")
        self.server.execute('GRANT :"a", :"b" TO :"u"', a=DATABASES_OWNER, b=owner, u=name)
        self.server.execute('ALTER ROLE :"u" IN DATABASE :"db" SET role = :\'r\'', u=name, db=self.database, r=owner)
        return role

    def remove(self, role: Role) -> None:
        """The relation is removed: its user is dropped (it owns nothing: its sessions ran as the owner role)."""
        self.server.execute('DROP ROLE :"u"', u=role.name)


@dataclasses.dataclass
class Track14:
    """postgresql-k8s 14's catalogue and pg_hba for the relations of one database."""

    server: PostgresServer
    database: str
    entries: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        """The operator superuser, and a pg_hba listing nobody yet (written, not loaded)."""
        if not self.server.execute("SELECT 1 FROM pg_roles WHERE rolname = :'r'", r=OPERATOR):
            self.server.execute('CREATE ROLE :"r" SUPERUSER NOLOGIN', r=OPERATOR)
        self._write_hba()

    def relation_user(self, name: str) -> Role:
        """A relation user with CREATEDB, owning the provided database (created on first relation)."""
        role = _new_role(self.server, name, "CREATEDB")
        if self.database not in self.server.databases():
            self.server.execute('CREATE DATABASE :"db" OWNER :"u"', db=self.database, u=name)
        else:
            self.server.execute('ALTER DATABASE :"db" OWNER TO :"u"', db=self.database, u=name)
        self.server.execute('GRANT ALL ON DATABASE :"db" TO :"u"', db=self.database, u=name)
        self.allow(name, self.database)
        self.refresh()
        return role

    def allow(self, user: str, database: str) -> None:
        """List `database` for `user` in pg_hba.conf (effective at the next `refresh`)."""
        self.entries.append((user, database))
        self._write_hba()

    def refresh(self) -> None:
        """The poller's reload of pg_hba.conf."""
        self.server.reload()

    def remove(self, role: Role, databases: list[str]) -> None:
        """The relation is removed: its objects go to `operator`, then the user is dropped."""
        for database in databases:
            self.server.execute('REASSIGN OWNED BY :"u" TO :"o"', dbname=database, u=role.name, o=OPERATOR)
            self.server.execute('DROP OWNED BY :"u"', dbname=database, u=role.name)
        self.server.execute('DROP ROLE :"u"', u=role.name)
        self.entries = [(user, database) for user, database in self.entries if user != role.name]
        self._write_hba()

    def _write_hba(self) -> None:
        """pg_hba.conf: each listed user on its databases over TCP with a password (the socket stays trusted)."""
        entries = self.entries
        self.server.set_hba([f'host "{database}" "{user}" 127.0.0.1/32 scram-sha-256' for user, database in entries])
