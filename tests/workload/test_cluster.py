"""The multi-unit cluster (tests/workload/cluster.py) with today's charm: what Juju would do between units.

Each unit is its own test host with its own Synapse data dir; the cluster copies peer
databags and the leader's secrets between them, runs the hooks Juju would, and runs
PostgreSQL and Redis on a host of the same network.
"""

import socket
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

import ops
import pytest
import yaml

from constants import (
    CONFIG_PATH,
    DATA_DIR,
    PEER_ADDRESS_KEY,
    PEER_MAIN_UNIT_KEY,
    PEER_RELATION,
    PEER_SECRET_ID_KEY,
    SIGNING_KEY_PATH,
)
from tests.workload import harness
from tests.workload.cluster import Backends, Cluster, ClusterError
from tests.workload.netns import TestNetwork

CONFIG = {"server_name": "cluster.test"}

ClusterFactory = Callable[..., Cluster]


@pytest.fixture
def make_cluster(tmp_path: Path, synapse_venv: Path, test_network: TestNetwork) -> Iterator[ClusterFactory]:
    """Build clusters on the test network; their processes are stopped afterwards."""
    clusters: list[Cluster] = []

    def make(config: dict[str, str] | None = None) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster-{len(clusters)}", test_network, config or CONFIG, venv=synapse_venv)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()


@pytest.fixture
def backends(tmp_path: Path, test_network: TestNetwork) -> Iterator[Backends]:
    """PostgreSQL and Redis on db.test."""
    started = Backends.start(tmp_path / "db", test_network)
    yield started
    started.stop()


def host_file(cluster: Cluster, unit_id: int, path: object) -> Path:
    """Where a container path under /data of a unit is on the host."""
    return cluster.driver(unit_id).data_dir / Path(str(path)).relative_to(str(DATA_DIR))


def bound_address(cluster: Cluster, unit_id: int) -> str:
    """The ingress address the charm reads for the peer binding (ops' model, in a hook of that unit)."""
    driver = cluster.driver(unit_id)
    with driver.entered(), driver.ctx(driver.ctx.on.update_status(), driver.state) as manager:
        network = manager.charm.model.get_binding(PEER_RELATION).network  # type: ignore[union-attr]
        return str(network.ingress_address)


def test_two_units_on_sqlite_one_main_one_standby_with_the_same_identity(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()

    cluster.deploy(2)

    main, standby = cluster.unit(0), cluster.unit(1)
    assert main.driver.process.is_alive()
    assert main.driver.starts == 1
    with main.driver.entered():
        assert harness.is_healthy()
    assert not standby.driver.process.is_alive()
    assert standby.driver.starts == 0
    status = cluster.status(1)
    assert isinstance(status, ops.BlockedStatus), status
    assert "standby" in status.message
    assert "synapse/0" in status.message
    assert "postgresql-k8s" in status.message
    assert "redis-k8s" in status.message
    # The leader's peer app data reached the other unit, and with it the server secret.
    assert cluster.app_data()[PEER_MAIN_UNIT_KEY] == "synapse/0"
    assert dict(cluster.peer(1).local_app_data) == dict(cluster.peer(0).local_app_data)
    secret_id = cluster.app_data()[PEER_SECRET_ID_KEY]
    seen = {secret.id: secret.owner for secret in cluster.driver(1).state.secrets}
    assert seen.get(secret_id) == "app"
    assert host_file(cluster, 1, SIGNING_KEY_PATH).read_text() == host_file(cluster, 0, SIGNING_KEY_PATH).read_text()
    assert host_file(cluster, 1, CONFIG_PATH).read_text() == host_file(cluster, 0, CONFIG_PATH).read_text()
    # Each unit sees the other's databag as published; addresses are the units' own.
    assert dict(cluster.peer(0).peers_data[1]) == cluster.unit_data(1)
    assert dict(cluster.peer(1).peers_data[0]) == cluster.unit_data(0)
    assert [cluster.unit_data(unit_id)["ingress-address"] for unit_id in (0, 1)] == [main.address, standby.address]
    assert [bound_address(cluster, unit_id) for unit_id in (0, 1)] == [main.address, standby.address]
    # The charm publishes the address of its peer binding: its host's.
    assert [cluster.unit_data(unit_id)[PEER_ADDRESS_KEY] for unit_id in (0, 1)] == [main.address, standby.address]
    assert main.address != standby.address

    # Converged: a hook on each unit changes no databag, so no peer hook follows, and nothing restarts.
    hooks = cluster.hooks
    cluster.run_all("update_status")
    assert cluster.hooks == hooks + 2
    assert main.driver.starts == 1
    assert main.driver.last_calls.restarts == 0


def test_units_come_and_go_and_leadership_moves_without_moving_the_main(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()
    cluster.deploy(2)

    third = cluster.add_unit()

    assert third.id == 2
    assert set(cluster.peer(0).peers_data) == {1, 2}
    assert set(cluster.peer(2).peers_data) == {0, 1}
    assert dict(cluster.peer(2).local_app_data) == dict(cluster.peer(0).local_app_data)
    assert isinstance(cluster.status(2), ops.BlockedStatus)
    assert not third.driver.process.is_alive()
    assert cluster.driver(0).starts == 1

    cluster.remove_unit(2)

    assert set(cluster.units) == {0, 1}
    assert set(cluster.peer(0).peers_data) == {1}
    assert set(cluster.peer(1).peers_data) == {0}
    assert cluster.driver(0).starts == 1

    cluster.set_leader(1)

    assert cluster.driver(1).state.leader
    assert not cluster.driver(0).state.leader
    assert cluster.app_data()[PEER_MAIN_UNIT_KEY] == "synapse/0"
    assert cluster.driver(0).process.is_alive()
    assert cluster.driver(0).starts == 1
    assert not cluster.driver(1).process.is_alive()

    # The main leaves with the SQLite database on its storage: the new leader does not start an empty server.
    cluster.remove_unit(0)

    assert not cluster.unit(1).driver.process.is_alive()
    status = cluster.status(1)
    assert isinstance(status, ops.BlockedStatus), status
    assert "the main unit synapse/0 is gone" in status.message
    assert "promote-main" in status.message


def test_a_databag_that_never_settles_fails_loudly(
    make_cluster: ClusterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = make_cluster()
    cluster.deploy(2)
    counter = iter(range(10**6))
    original = Cluster._propagate

    def restless(self: Cluster, unit_id: int) -> None:
        """Every hook writes a new value, as a charm that stamps its databag would."""
        driver = self.driver(unit_id)
        peer = self.peer(unit_id)
        stamped = type(peer)(**{**peer.__dict__, "local_unit_data": {**peer.local_unit_data, "n": str(next(counter))}})
        self._replace_relation(driver, stamped)
        original(self, unit_id)

    monkeypatch.setattr(Cluster, "_propagate", restless)
    with pytest.raises(ClusterError, match="did not settle"):
        cluster.run(0, "update_status")


def _redis_ping(address: str, port: int) -> bytes:
    """Send PING to Redis; return its answer."""
    with socket.create_connection((address, port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64)


def test_postgresql_and_redis_serve_every_unit_and_shared_relations_are_identical(
    make_cluster: ClusterFactory, backends: Backends
) -> None:
    cluster = make_cluster()
    database, secrets = backends.database_relation(secret=True)
    database_id = cluster.relate(database, secrets)
    redis_id = cluster.relate(backends.redis_relation())

    cluster.deploy(2)

    for unit_id in (0, 1):
        with cluster.unit(unit_id).host.namespace.entered():
            assert _redis_ping(backends.host.address, backends.redis.port) == b"+PONG\r\n"
            assert backends.postgres.app_role is not None
            assert backends.postgres.can_login(backends.postgres.app_role)
    # The same relations, remote data and secrets on every unit.
    for relation_id in (database_id, redis_id):
        seen = [cluster.relation(unit_id, relation_id) for unit_id in (0, 1)]
        assert seen[0].remote_app_data == seen[1].remote_app_data  # type: ignore[attr-defined]
        assert seen[0].remote_units_data == seen[1].remote_units_data  # type: ignore[attr-defined]
    assert {secret.id for secret in cluster.driver(1).state.secrets} >= {secrets[0].id}
    # The main runs on PostgreSQL on db.test, with the credentials of the secret.
    main = cluster.driver(0)
    assert main.process.is_alive()
    homeserver = yaml.safe_load(host_file(cluster, 0, CONFIG_PATH).read_text())
    assert homeserver["database"]["name"] == "psycopg2"
    assert homeserver["database"]["args"]["host"] == backends.host.address
    with main.entered():
        assert harness.is_healthy()
    # With both related, the other unit asks for no relation.
    status = typing.cast(ops.StatusBase, cluster.status(1))
    assert "juju integrate" not in status.message
