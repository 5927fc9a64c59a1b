"""Integration tests need a Juju controller on Kubernetes; skip them all when juju is absent.

They run with `tox -e integration` on a machine with the juju and charmcraft CLIs and a
bootstrapped controller (for example on MicroK8s). Without the juju CLI every test here is
collected and reported as skipped, with the reason below.
"""

import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SKIP_REASON = (
    "the juju CLI is not on PATH: the integration tests deploy the charm to a Juju controller on "
    "Kubernetes (install juju and charmcraft, bootstrap a controller, then run `tox -e integration`)"
)


def juju_available() -> bool:
    """Whether the juju CLI is on PATH."""
    return shutil.which("juju") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test of this directory as skipped when juju is not available."""
    if juju_available():
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(skip)
