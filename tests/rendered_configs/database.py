"""Scenarios on PostgreSQL: the `database` relation (plain, secrets, TLS) and the legacy `db` relation.

The in-container collation script is answered by an ops.testing Exec mock saying the
charm created the C-collated `<database>_c`, or (postgresql-k8s's C/C.UTF-8 database) that
the provided database is used with allow_unsafe_locale (tests/workload/test_postgres_setup.py
runs the real script against a real PostgreSQL).
"""

import json

from ops import testing

from constants import DATABASE_ENDPOINT, LEGACY_DB_ENDPOINT
from relations.legacy_db import LEGACY_ROLES
from tests.rendered_configs import Stage, scenario

APP = "synapse"  # the database the charm asks for: its application name
PROVIDER = "postgresql-k8s"
USER = "relation_id_7"
# A test password with quotes and YAML/Jinja specials on purpose.
PASSWORD = "s3cret'\"{{ }}: #pass"
CA = "-----BEGIN CERTIFICATE-----\nMIIBcatalogueCA\n-----END CERTIFICATE-----\n"
EGRESS = "10.1.5.6/32"


def _prepared(
    stage: Stage, *relations: testing.RelationBase, answer: dict[str, object] | None = None, **kwargs: object
) -> testing.State:
    """A fresh leader with `relations`, whose collation script answers `answer` (default: it created `<db>_c`)."""
    stdout = json.dumps(answer or {"database": f"{APP}_c", "created": True}) + "\n"
    container = stage.container(execs={testing.Exec(["python"], stdout=stdout)})
    return stage.state(relations=relations, container=container, **kwargs)  # type: ignore[arg-type]


def _database(data: dict[str, str]) -> testing.Relation:
    """The `database` relation with the provider's app databag."""
    return testing.Relation(
        DATABASE_ENDPOINT, interface="postgresql_client", remote_app_name=PROVIDER, remote_app_data=data
    )


PLAIN = {"endpoints": "10.152.183.17:5432", "username": USER, "password": PASSWORD, "database": APP}


@scenario("postgresql-plain-credentials")
def plain(stage: Stage) -> testing.State:
    """Credentials in plain relation data, a read-only replica, pool options set."""
    relation = _database({**PLAIN, "read-only-endpoints": "10.152.183.18:5432", "version": "16.6"})
    return _prepared(stage, relation, config={"database_pool_min": 2, "database_pool_max": 30})


@scenario("postgresql-secrets-tls-ca")
def secrets_tls(stage: Stage) -> testing.State:
    """Credentials and TLS (with the provider's CA) from Juju secrets."""
    user = testing.Secret({"username": USER, "password": PASSWORD})
    tls = testing.Secret({"tls": "True", "tls-ca": CA})
    relation = _database(
        {"endpoints": "postgresql-k8s-primary.model.svc.cluster.local:5432", "database": APP}
        | {"secret-user": user.id, "secret-tls": tls.id}
    )
    return _prepared(stage, relation, secrets={user, tls})


@scenario("postgresql-tls-without-ca-ipv6")
def tls_without_ca(stage: Stage) -> testing.State:
    """TLS offered without a CA, on an IPv6 endpoint."""
    return _prepared(stage, _database({**PLAIN, "endpoints": "[fd00::17]:6432", "tls": "true"}))


@scenario("postgresql-k8s-c-utf8-allow-unsafe-locale")
def c_utf8(stage: Stage) -> testing.State:
    """postgresql-k8s's own database (collate C, ctype C.UTF-8): used as is, with allow_unsafe_locale."""
    answer: dict[str, object] = {"database": APP, "allow_unsafe_locale": True}
    return _prepared(stage, _database({**PLAIN, "version": "16.6"}), answer=answer)


@scenario("postgresql-legacy-db")
def legacy(stage: Stage) -> testing.State:
    """The legacy pgsql `db` relation, answered by the server unit."""
    master = f"dbname={APP} host=10.152.183.17 password='p a\\'ss' port=5432 user={USER} sslmode=require"
    relation = testing.Relation(
        LEGACY_DB_ENDPOINT,
        interface="pgsql",
        remote_app_name=PROVIDER,
        local_unit_data={"egress-subnets": EGRESS, "ingress-address": "10.1.5.6"},
        remote_units_data={
            0: {
                "database": APP,
                "roles": LEGACY_ROLES,
                "allowed-subnets": f"10.0.0.0/8,{EGRESS}",
                "master": master,
                "standbys": "dbname=synapse host=10.152.183.18 port=5432 user=u password=p",
                "version": "14",
            }
        },
    )
    return _prepared(stage, relation)
