"""Fixtures for every test suite."""

import collections.abc

import pytest

from tests import pgsql_leader


@pytest.fixture(autouse=True)
def pgsql_leader_settings() -> collections.abc.Iterator[pgsql_leader.LeaderSettings]:
    """ops-lib-pgsql's leader-get/leader-set, backed by memory (ops.testing has no hook tools)."""
    import pgsql.client

    saved = pgsql.client._leader_get, pgsql.client._leader_set
    yield pgsql_leader.install()
    pgsql.client._leader_get, pgsql.client._leader_set = saved
