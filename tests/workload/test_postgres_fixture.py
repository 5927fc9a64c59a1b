"""The real PostgreSQL fixture does what the database workload tests rely on."""

import socket

import pytest

from tests.workload.postgres import (
    PostgresError,
    PostgresServer,
    Role,
    unique_name,
)


def app_role(server: PostgresServer) -> Role:
    assert server.app_role is not None
    return server.app_role


def test_server_listens_on_loopback(postgres_server: PostgresServer) -> None:
    assert postgres_server.is_running()
    with socket.create_connection((postgres_server.host, postgres_server.port), timeout=5):
        pass
    version = postgres_server.execute("SHOW server_version_num")[0][0]
    assert int(version) // 10000 == postgres_server.version


def test_role_logs_in_with_its_password_over_tcp(postgres_server: PostgresServer) -> None:
    role = app_role(postgres_server)

    assert postgres_server.can_login(role)
    assert not postgres_server.can_login(Role(role.name, "wrong-password"))
    # The superuser has no password: over TCP it cannot log in at all.
    assert not postgres_server.can_login(Role("postgres", ""))


def test_role_has_createdb_but_is_not_superuser(postgres_server: PostgresServer) -> None:
    role = app_role(postgres_server)

    rows = postgres_server.execute("SELECT rolcreatedb, rolsuper FROM pg_roles WHERE rolname = :'name'", name=role.name)

    assert rows == [["t", "f"]]


def test_default_database_locale_is_not_c(postgres_server: PostgresServer) -> None:
    name = unique_name("default locale")
    postgres_server.create_database(name, owner=app_role(postgres_server).name)

    collate, ctype = postgres_server.database_locale(name)

    assert collate != "C"
    assert ctype != "C"
    assert collate.lower().replace("-", "") == postgres_server.locale.lower().replace("-", "")


def test_template0_database_with_c_locale(postgres_server: PostgresServer) -> None:
    role = app_role(postgres_server)
    name = 'we"ird name ' + unique_name("c")

    postgres_server.create_database(name, owner=role.name, collate="C", ctype="C", template="template0")

    assert postgres_server.database_locale(name) == ("C", "C")
    assert postgres_server.database_owner(name) == role.name
    assert name in postgres_server.databases()
    postgres_server.drop_database(name)
    assert name not in postgres_server.databases()


def test_createdb_role_creates_its_own_c_database_over_tcp(postgres_server: PostgresServer) -> None:
    """What the charm does when the provider's database has the wrong collation."""
    role = app_role(postgres_server)
    name = unique_name("synapse_c")

    postgres_server.create_database(name, collate="C", ctype="C", as_role=role)

    assert postgres_server.database_locale(name) == ("C", "C")
    assert postgres_server.database_owner(name) == role.name
    assert postgres_server.psql("CREATE TABLE t (x int); SELECT count(*) FROM t", dbname=name, role=role) == [["0"]]


def test_c_locale_from_template1_is_refused(postgres_server: PostgresServer) -> None:
    with pytest.raises(PostgresError, match="template0"):
        postgres_server.create_database(unique_name("t1"), collate="C", ctype="C", template="template1")


def test_provider_database_is_usable_by_the_role_and_not_c(postgres_server: PostgresServer) -> None:
    role = app_role(postgres_server)
    name = unique_name("synapse")

    postgres_server.provider_database(name, role)

    assert postgres_server.database_locale(name)[0] != "C"
    assert postgres_server.psql("CREATE TABLE t (x int); SELECT 1", dbname=name, role=role) == [["1"]]
    endpoint = postgres_server.endpoint(role, name)
    assert (endpoint.host, endpoint.port, endpoint.user, endpoint.database) == (
        "127.0.0.1",
        postgres_server.port,
        role.name,
        name,
    )


def test_sql_errors_raise(postgres_server: PostgresServer) -> None:
    with pytest.raises(PostgresError, match="syntax error"):
        postgres_server.execute("SELEC 1")


def test_stop_and_cleanup() -> None:
    server = PostgresServer()
    try:
        server.start()
        port = server.port
        assert server.is_running()

        server.stop()

        assert not server.is_running()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        server.cleanup()
    assert not server.base_dir.exists()
