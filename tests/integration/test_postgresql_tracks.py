"""PostgreSQL with Juju: postgresql-k8s 16/stable and 14/stable, as they really serve the charm.

Both give databases with collate C and ctype C.UTF-8, so Synapse runs on the provided
database with `allow_unsafe_locale` (no `<db>_c`). Then the relation is removed and added
again, which gives a new user: on 16 (tables owned by `charmed_<db>_owner`) Synapse runs on
at once; on 14 (tables reassigned to `operator`) the unit is Blocked naming the owner and
the statements, and Synapse is not started on the old credentials. Each track is its own
pair of applications, so the two run in one model. Skips without juju (conftest.py).
"""

import asyncio

import pytest
import yaml
from pytest_operator.plugin import OpsTest

from constants import CONFIG_PATH, CONTAINER_NAME, DATABASE_ENDPOINT, SYNAPSE_PORT
from tests.integration.test_charm import DEPLOY_TIMEOUT, RESOURCES
from workload.synapse_api import SynapseClient

POSTGRESQL = "postgresql-k8s"
TRACKS = ("16", "14")


def names(track: str) -> tuple[str, str]:
    """The Synapse and PostgreSQL application names for a track."""
    return f"synapse-pg{track}", f"postgresql-{track}"


async def homeserver(ops_test: OpsTest, app: str) -> dict[str, object]:
    """The unit's homeserver.yaml."""
    command = ("ssh", "--container", CONTAINER_NAME, f"{app}/0", "cat", str(CONFIG_PATH))
    code, stdout, stderr = await ops_test.juju(*command)
    assert code == 0, stderr
    return dict(yaml.safe_load(stdout))


async def client(ops_test: OpsTest, app: str) -> SynapseClient:
    """A client for the unit's Synapse."""
    assert ops_test.model is not None
    status = await ops_test.model.get_status()
    address = status.applications[app].units[f"{app}/0"].address
    return SynapseClient(f"http://{address}:{SYNAPSE_PORT}", timeout=10)


@pytest.mark.abort_on_fail
@pytest.mark.parametrize("track", TRACKS)
async def test_runs_on_the_provided_database(ops_test: OpsTest, track: str) -> None:
    """Related from the start: Synapse runs on the provided C/C.UTF-8 database; a user registers and logs in."""
    assert ops_test.model is not None
    app, postgresql = names(track)
    charm = await ops_test.build_charm(".")
    await asyncio.gather(
        ops_test.model.deploy(charm, application_name=app, resources=RESOURCES, config={"server_name": app}),
        ops_test.model.deploy(POSTGRESQL, application_name=postgresql, channel=f"{track}/stable", trust=True),
    )
    await ops_test.model.integrate(f"{app}:{DATABASE_ENDPOINT}", f"{postgresql}:database")
    async with ops_test.fast_forward():
        await ops_test.model.wait_for_idle(apps=[app, postgresql], status="active", timeout=DEPLOY_TIMEOUT)

    database = (await homeserver(ops_test, app))["database"]
    assert isinstance(database, dict)
    assert database["name"] == "psycopg2"
    assert database["args"]["dbname"] == app  # the provided database: no <db>_c
    assert database["allow_unsafe_locale"] is True
    unit = ops_test.model.applications[app].units[0]
    action = await (await unit.run_action("register-user", username="alice", password="alice-pa55word")).wait()
    assert action.status == "completed", action.message
    assert (await client(ops_test, app)).login(f"@alice:{app}", "alice-pa55word").user_id == f"@alice:{app}"


@pytest.mark.parametrize("track", TRACKS)
async def test_recreated_relation_runs_or_names_the_fix(ops_test: OpsTest, track: str) -> None:
    """Removed and added again (a new user): 16 runs on the same database; 14 names the owner and the fix."""
    assert ops_test.model is not None
    app, postgresql = names(track)
    await ops_test.model.applications[app].remove_relation(f"{app}:{DATABASE_ENDPOINT}", f"{postgresql}:database")
    async with ops_test.fast_forward():
        await ops_test.model.wait_for_idle(apps=[app], status="blocked", timeout=DEPLOY_TIMEOUT)
    await ops_test.model.integrate(f"{app}:{DATABASE_ENDPOINT}", f"{postgresql}:database")
    async with ops_test.fast_forward():
        await ops_test.model.wait_for_idle(apps=[app, postgresql], timeout=DEPLOY_TIMEOUT, idle_period=60)

    unit = ops_test.model.applications[app].units[0]
    database = (await homeserver(ops_test, app))["database"]
    assert isinstance(database, dict)
    if unit.workload_status == "active":
        assert database["args"]["dbname"] == app  # the same database: nothing moved
        assert (await client(ops_test, app)).login(f"@alice:{app}", "alice-pa55word")
        return
    assert track != "16", unit.workload_status_message
    assert unit.workload_status == "blocked"
    message = unit.workload_status_message
    assert f"cannot use database {app}" in message
    assert "owned by operator" in message
    assert f"connected to {app}, run: " in message
    assert not (await client(ops_test, app)).is_healthy()  # not started on the old user's credentials
