"""Fixtures for the workload tests: the Synapse venv, charm drivers, and no leftover processes."""

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.workload import harness
from tests.workload.netns import Namespace, TestNetwork
from tests.workload.postgres import postgres_server_fixture  # noqa: F401 (provides the `postgres_server` fixture)

DriverFactory = Callable[..., harness.CharmDriver]


@pytest.fixture(scope="session")
def synapse_venv() -> Path:
    """The venv with matrix-synapse at SYNAPSE_VERSION (created on first use, then reused)."""
    if os.geteuid() != 0:
        pytest.fail("the workload tests need root: they use unshare, mount, setpriv and chown")
    return harness.ensure_synapse_venv()


@pytest.fixture(scope="session", autouse=True)
def _no_synapse_outlives_the_session() -> Iterator[None]:
    """Stop any real Synapse a test left running."""
    yield
    harness.stop_all()


@pytest.fixture
def make_driver(tmp_path: Path, synapse_venv: Path) -> Iterator[DriverFactory]:
    """Build CharmDrivers on fresh data dirs under tmp_path; their Synapse is stopped afterwards."""
    drivers: list[harness.CharmDriver] = []

    def make(
        config: Mapping[str, str | int | float | bool],
        *,
        data_dir: Path | None = None,
        identity: harness.Identity | None = None,
        leader: bool = True,
        netns: Namespace | None = None,
        hosts: Mapping[str, str] | None = None,
        trusted_ca: Path | None = None,
    ) -> harness.CharmDriver:
        base = tmp_path / f"unit-{len(drivers)}"
        driver = harness.CharmDriver(
            data_dir or base / "data",
            config,
            venv=synapse_venv,
            leader=leader,
            log_path=base / "synapse.log",
            identity=identity,
            netns=netns,
            hosts=hosts,
            trusted_ca=trusted_ca,
        )
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.stop()


@pytest.fixture
def test_network() -> Iterator[TestNetwork]:
    """A private network for test hosts (each its own network namespace); removed afterwards."""
    with TestNetwork() as network:
        yield network
