"""Deploy the charm with Juju on Kubernetes and drive it as an operator would.

Needs the juju and charmcraft CLIs, a bootstrapped controller on Kubernetes (e.g. MicroK8s)
and a route from this machine to the pod network (true on a single-node MicroK8s): the
tests talk to the unit's Synapse at its pod address. conftest.py skips them without juju.
"""

import asyncio
import logging
import urllib.request
from pathlib import Path

import pytest
import yaml
from pytest_operator.plugin import OpsTest

from constants import METRICS_PORT, SYNAPSE_PORT, SYNAPSE_VERSION
from workload.synapse_api import SynapseClient

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
METADATA = yaml.safe_load((ROOT / "metadata.yaml").read_text())
APP = METADATA["name"]
# Every container's image (Synapse and the nginx sidecar), as deploy needs them all.
RESOURCES = {
    container["resource"]: METADATA["resources"][container["resource"]]["upstream-source"]
    for container in METADATA["containers"].values()
}
SERVER_NAME = "synapse.test"
DEPLOY_TIMEOUT = 30 * 60
SETTLE_TIMEOUT = 10 * 60
# With update-status every 10 s, this many seconds let a few reconciles run.
UPDATE_STATUS_WINDOW = 35


async def unit_address(ops_test: OpsTest) -> str:
    """The pod address of the first unit."""
    assert ops_test.model is not None
    unit = ops_test.model.applications[APP].units[0]
    status = await ops_test.model.get_status()
    address = status.applications[APP].units[unit.name].address
    assert address, f"{unit.name} has no address yet"
    return str(address)


def process_start_time(address: str) -> float:
    """When the running Synapse process started, from its Prometheus metrics."""
    url = f"http://{address}:{METRICS_PORT}/_synapse/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("process_start_time_seconds "):
            return float(line.split()[1])
    raise AssertionError(f"{url} has no process_start_time_seconds")


async def settle(ops_test: OpsTest, timeout: int = SETTLE_TIMEOUT) -> None:
    """Let update-status run a few times, then wait until the app is active and idle."""
    assert ops_test.model is not None
    async with ops_test.fast_forward():
        await asyncio.sleep(UPDATE_STATUS_WINDOW)
        await ops_test.model.wait_for_idle(apps=[APP], status="active", raise_on_error=True, timeout=timeout)


@pytest.mark.abort_on_fail
async def test_build_and_deploy(ops_test: OpsTest) -> None:
    """The charm builds, deploys with the upstream image and becomes active."""
    assert ops_test.model is not None
    charm = await ops_test.build_charm(".")
    await ops_test.model.deploy(
        charm,
        application_name=APP,
        resources=RESOURCES,
        config={"server_name": SERVER_NAME},
    )
    async with ops_test.fast_forward():
        await ops_test.model.wait_for_idle(apps=[APP], status="active", raise_on_error=True, timeout=DEPLOY_TIMEOUT)
    await settle(ops_test)

    unit = ops_test.model.applications[APP].units[0]
    assert unit.workload_status == "active", unit.workload_status_message
    assert unit.workload_version == SYNAPSE_VERSION
    assert SynapseClient(f"http://{await unit_address(ops_test)}:{SYNAPSE_PORT}").is_healthy()


@pytest.mark.abort_on_fail
async def test_register_user(ops_test: OpsTest) -> None:
    """register-user returns the new admin's ID and a password that logs in."""
    assert ops_test.model is not None
    unit = ops_test.model.applications[APP].units[0]

    action = await unit.run_action("register-user", username="alice", admin=True)
    action = await action.wait()

    assert action.status == "completed", action.results
    user = action.results["user-id"]
    password = action.results["password"]
    assert user == f"@alice:{SERVER_NAME}"
    assert len(password) >= 16
    client = SynapseClient(f"http://{await unit_address(ops_test)}:{SYNAPSE_PORT}")
    login = client.login(user, password)
    assert login.user_id == user
    details = client.request("GET", f"/_synapse/admin/v2/users/{user}", access_token=login.access_token)
    assert details["admin"] is True


async def test_registering_the_same_user_again_fails(ops_test: OpsTest) -> None:
    """A second register-user for alice fails with a clear message instead of changing her."""
    assert ops_test.model is not None
    unit = ops_test.model.applications[APP].units[0]

    action = await (await unit.run_action("register-user", username="alice")).wait()

    assert action.status == "failed"
    assert "already exists" in action.message


async def test_same_config_keeps_synapse_running(ops_test: OpsTest) -> None:
    """config-changed with the same (or an equivalent) value leaves Synapse running, not restarted."""
    assert ops_test.model is not None
    app = ops_test.model.applications[APP]
    address = await unit_address(ops_test)
    started = process_start_time(address)

    # The same server_name (Juju may not even run a hook), then values that differ only in
    # case: config-changed runs, and they normalise to what Synapse already has.
    await app.set_config({"server_name": SERVER_NAME})
    await app.set_config({"max_upload_size": "50m", "log_level": "info"})
    await settle(ops_test)

    assert app.units[0].workload_status == "active", app.units[0].workload_status_message
    assert process_start_time(address) == started


async def test_real_config_change_restarts_synapse(ops_test: OpsTest) -> None:
    """A change Synapse reads restarts it, and the unit comes back active."""
    assert ops_test.model is not None
    app = ops_test.model.applications[APP]
    address = await unit_address(ops_test)
    started = process_start_time(address)

    await app.set_config({"log_level": "DEBUG"})
    await settle(ops_test)

    assert app.units[0].workload_status == "active", app.units[0].workload_status_message
    assert process_start_time(address) > started
