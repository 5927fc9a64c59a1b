"""PostgreSQL with Juju: relate postgresql-k8s to a server that already has data on SQLite.

The charm must port the SQLite data, so a user registered before the relation still logs
in afterwards; removing the relation must stop Synapse rather than fall back to SQLite.
Needs what test_charm.py needs, plus permission to deploy postgresql-k8s (with --trust).
"""

import logging

import pytest
import yaml
from pytest_operator.plugin import OpsTest

from constants import CONFIG_PATH, CONTAINER_NAME, DATABASE_ENDPOINT, SQLITE_PATH, SYNAPSE_PORT
from tests.integration.test_charm import APP, DEPLOY_TIMEOUT, RESOURCES, SERVER_NAME, unit_address
from workload.synapse_api import SynapseClient

logger = logging.getLogger(__name__)

POSTGRESQL = "postgresql-k8s"
POSTGRESQL_CHANNEL = "16/stable"


async def container_file(ops_test: OpsTest, path: object) -> str:
    """A file's content in the unit's Synapse container."""
    code, stdout, stderr = await ops_test.juju("ssh", "--container", CONTAINER_NAME, f"{APP}/0", "cat", str(path))
    assert code == 0, stderr
    return stdout


async def container_file_exists(ops_test: OpsTest, path: object) -> bool:
    """Whether a file exists in the unit's Synapse container."""
    code, _, _ = await ops_test.juju("ssh", "--container", CONTAINER_NAME, f"{APP}/0", "test", "-f", str(path))
    return code == 0


@pytest.mark.abort_on_fail
async def test_deploy_on_sqlite_with_a_user(ops_test: OpsTest) -> None:
    """The charm runs on SQLite and registers a user there."""
    assert ops_test.model is not None
    charm = await ops_test.build_charm(".")
    await ops_test.model.deploy(charm, application_name=APP, resources=RESOURCES, config={"server_name": SERVER_NAME})
    await ops_test.model.deploy(POSTGRESQL, channel=POSTGRESQL_CHANNEL, trust=True)
    async with ops_test.fast_forward():
        await ops_test.model.wait_for_idle(apps=[APP, POSTGRESQL], status="active", timeout=DEPLOY_TIMEOUT)

    unit = ops_test.model.applications[APP].units[0]
    action = await (await unit.run_action("register-user", username="bob", password="before-the-switch")).wait()
    assert action.status == "completed", action.message
    assert yaml.safe_load(await container_file(ops_test, CONFIG_PATH))["database"]["name"] == "sqlite3"


@pytest.mark.abort_on_fail
async def test_relating_postgresql_ports_the_data(ops_test: OpsTest) -> None:
    """After the relation Synapse runs on PostgreSQL, and bob still logs in; SQLite is kept."""
    assert ops_test.model is not None
    await ops_test.model.integrate(f"{APP}:{DATABASE_ENDPOINT}", f"{POSTGRESQL}:database")
    async with ops_test.fast_forward():
        await ops_test.model.wait_for_idle(apps=[APP, POSTGRESQL], status="active", timeout=DEPLOY_TIMEOUT)

    database = yaml.safe_load(await container_file(ops_test, CONFIG_PATH))["database"]
    assert database["name"] == "psycopg2"
    assert database["args"]["host"]
    client = SynapseClient(f"http://{await unit_address(ops_test)}:{SYNAPSE_PORT}")
    assert client.login(f"@bob:{SERVER_NAME}", "before-the-switch").user_id == f"@bob:{SERVER_NAME}"
    assert await container_file_exists(ops_test, SQLITE_PATH)  # the SQLite file is kept


async def test_removing_the_relation_stops_synapse(ops_test: OpsTest) -> None:
    """Without its database Synapse is stopped and the unit says how to fix it."""
    assert ops_test.model is not None
    await ops_test.model.applications[APP].remove_relation(f"{APP}:{DATABASE_ENDPOINT}", f"{POSTGRESQL}:database")
    async with ops_test.fast_forward():
        await ops_test.model.wait_for_idle(apps=[APP], status="blocked", timeout=DEPLOY_TIMEOUT)

    unit = ops_test.model.applications[APP].units[0]
    assert "relate PostgreSQL again" in unit.workload_status_message
    assert not SynapseClient(f"http://{await unit_address(ops_test)}:{SYNAPSE_PORT}", timeout=5).is_healthy()
