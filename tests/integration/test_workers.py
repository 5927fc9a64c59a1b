"""Workers with Juju: three units over postgresql-k8s and redis-k8s, every unit serving through its nginx.

Needs what test_database.py needs, plus permission to deploy redis-k8s. conftest.py skips it
without juju.
"""

import json
import logging
import urllib.request

import pytest
import yaml
from pytest_operator.plugin import OpsTest

from constants import CONFIG_PATH, CONTAINER_NAME, NGINX_PORT, WORKER_CONFIG_PATH
from tests.integration.test_charm import APP, DEPLOY_TIMEOUT, RESOURCES, SERVER_NAME
from tests.integration.test_database import POSTGRESQL, POSTGRESQL_CHANNEL

logger = logging.getLogger(__name__)

REDIS = "redis-k8s"
REDIS_CHANNEL = "latest/edge"
UNITS = 3


async def unit_file(ops_test: OpsTest, unit: str, path: object) -> str | None:
    """A file's content in a unit's Synapse container (None if absent)."""
    code, stdout, _ = await ops_test.juju("ssh", "--container", CONTAINER_NAME, unit, "cat", str(path))
    return stdout if code == 0 else None


async def addresses(ops_test: OpsTest) -> dict[str, str]:
    """Unit name -> pod address."""
    assert ops_test.model is not None
    status = await ops_test.model.get_status()
    return {name: str(unit.address) for name, unit in status.applications[APP].units.items()}


def login(address: str, user: str, password: str) -> str:
    """Log in through a unit's nginx; the access token."""
    body = json.dumps(
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}
    )
    request = urllib.request.Request(
        f"http://{address}:{NGINX_PORT}/_matrix/client/v3/login",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (an http:// URL built here)
        return str(json.loads(response.read())["access_token"])


@pytest.mark.abort_on_fail
async def test_three_units_run_a_main_and_two_workers(ops_test: OpsTest) -> None:
    assert ops_test.model is not None
    charm = await ops_test.build_charm(".")
    await ops_test.model.deploy(
        charm, application_name=APP, resources=RESOURCES, config={"server_name": SERVER_NAME}, num_units=UNITS
    )
    await ops_test.model.deploy(POSTGRESQL, channel=POSTGRESQL_CHANNEL, trust=True)
    await ops_test.model.deploy(REDIS, channel=REDIS_CHANNEL)
    await ops_test.model.integrate(f"{APP}:database", f"{POSTGRESQL}:database")
    await ops_test.model.integrate(f"{APP}:redis", f"{REDIS}:redis")
    async with ops_test.fast_forward():
        await ops_test.model.wait_for_idle(apps=[APP, POSTGRESQL, REDIS], status="active", timeout=DEPLOY_TIMEOUT)

    units = sorted(await addresses(ops_test))
    workers = []
    for unit in units:
        if (worker := await unit_file(ops_test, unit, WORKER_CONFIG_PATH)) is not None:
            workers.append(yaml.safe_load(worker)["worker_name"])
    assert len(workers) == UNITS - 1, workers
    config = yaml.safe_load(await unit_file(ops_test, units[0], CONFIG_PATH) or "{}")
    assert sorted(config["federation_sender_instances"]) == sorted(workers)


async def test_every_unit_serves_clients(ops_test: OpsTest) -> None:
    assert ops_test.model is not None
    main = ops_test.model.applications[APP].units[0]
    for unit in ops_test.model.applications[APP].units:
        if await unit_file(ops_test, unit.name, WORKER_CONFIG_PATH) is None:
            main = unit
    action = await (await main.run_action("register-user", username="carol", password="through-workers")).wait()
    assert action.status == "completed", action.message
    for address in (await addresses(ops_test)).values():
        assert login(address, "carol", "through-workers")


async def test_scaling_down_converges(ops_test: OpsTest) -> None:
    assert ops_test.model is not None
    await ops_test.model.applications[APP].scale(scale=UNITS - 1)
    async with ops_test.fast_forward():
        await ops_test.model.wait_for_idle(apps=[APP], status="active", timeout=DEPLOY_TIMEOUT, wait_for_exact_units=2)
    units = sorted(await addresses(ops_test))
    config = yaml.safe_load(await unit_file(ops_test, units[0], CONFIG_PATH) or "{}")
    assert len(config["instance_map"]) == UNITS - 1
    for address in (await addresses(ops_test)).values():
        assert login(address, "carol", "through-workers")
