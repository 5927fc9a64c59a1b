"""Three units with PostgreSQL and Redis: the main and two generic workers, all real, all serving.

Every unit is a host of its own on a private network (tests/workload/cluster.py), running the
Synapse process its own rendered layer and files say, from its own data dir. PostgreSQL and
Redis (Debian's) run on `db.test`; a real Matrix client (matrix-nio) runs on `client.test`.
The tests run in file order on one cluster: first all three units, then one worker stops,
then the application scales down to two units, and last the main unit leaves.

Every unit's pod also has its nginx container, run on Debian's nginx with the config that
unit rendered (tests/workload/harness.py); the client always goes through a unit's nginx, on
NGINX_PORT at the unit's address, as ingress and nginx-route send it.
"""

import dataclasses
import json
import re
import secrets
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

import ops
import pytest
import yaml

from constants import (
    CONFIG_PATH,
    DATA_DIR,
    METRICS_PATH,
    NGINX_CONFIG_PATH,
    NGINX_CONTAINER,
    NGINX_PORT,
    NGINX_SERVICE,
    PEER_MAIN_UNIT_KEY,
    SERVICE_NAME,
    SYNAPSE_PORT,
    WORKER_CONFIG_PATH,
)
from tests.workload import harness
from tests.workload.cluster import Backends, Cluster
from tests.workload.netns import TestHost, TestNetwork

SERVER_NAME = "workers.test"
NIO_CLIENT = Path(__file__).with_name("nio_client.py")
CLIENT_TIMEOUT = 120
MAIN_COMMAND = ("python", "-m", "synapse.app.homeserver", "--config-path", str(CONFIG_PATH))
WORKER_COMMAND = (
    "python",
    "-m",
    "synapse.app.generic_worker",
    "--config-path",
    str(CONFIG_PATH),
    "--config-path",
    str(WORKER_CONFIG_PATH),
)
# Synapse's per-servlet request counter (every process's metrics listener).
_REQUESTS = re.compile(r"^synapse_http_server_requests_received_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.M)


@dataclasses.dataclass
class World:
    """The network, PostgreSQL and Redis, the three-unit cluster, the client host and the user."""

    network: TestNetwork
    backends: Backends
    cluster: Cluster
    client_host: TestHost
    client: harness.SystemView
    user_id: str
    password: str
    room_id: str = ""  # the room the client created (set by the first client test)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, synapse_venv: Path) -> Iterator[World]:
    """PostgreSQL and Redis related from the start, then `juju deploy -n 3`; a user registered on the main."""
    base = tmp_path_factory.mktemp("workers")
    with TestNetwork() as network:
        backends = Backends.start(base / "db", network)
        client_host = network.add_host("client.test")
        cluster = Cluster(
            base,
            network,
            {"server_name": SERVER_NAME, "ip_range_whitelist": str(network.subnet)},
            venv=synapse_venv,
            nginx=True,
        )
        try:
            cluster.relate(*backends.database_relation(secret=True))
            cluster.relate(backends.redis_relation())
            cluster.deploy(3)
            password = secrets.token_urlsafe(12)
            user_id = cluster.run_action(0, "register-user", {"username": "alice", "password": password})["user-id"]
            client = harness.SystemView.create(base / "client", netns=client_host.namespace, hosts=network.hosts())
            yield World(network, backends, cluster, client_host, client, str(user_id), password)
        finally:
            cluster.close()
            backends.stop()


# --- helpers ------------------------------------------------------------------------------


def host_file(cluster: Cluster, unit_id: int, path: object) -> Path:
    """Where a container path under /data of a unit is on the host."""
    return cluster.driver(unit_id).data_dir / Path(str(path)).relative_to(str(DATA_DIR))


def homeserver(cluster: Cluster, unit_id: int) -> dict[str, typing.Any]:
    """A unit's rendered homeserver.yaml."""
    return typing.cast(dict[str, typing.Any], yaml.safe_load(host_file(cluster, unit_id, CONFIG_PATH).read_text()))


def requests_received(cluster: Cluster, unit_id: int, servlet: str) -> float:
    """How many requests the unit's Synapse process counted for `servlet` (its metrics listener)."""
    with cluster.driver(unit_id).entered():
        status, body = harness.http_get(METRICS_PATH, base_url=harness.METRICS_URL)
    assert status == 200
    return sum(
        float(match["value"])
        for match in _REQUESTS.finditer(body.decode())
        if f'servlet="{servlet}"' in match["labels"]
    )


def entry_url(world: World, unit_id: int) -> str:
    """Where clients reach a unit: its nginx, on the unit's address."""
    return f"http://{world.cluster.unit(unit_id).address}:{NGINX_PORT}"


def nginx_config(cluster: Cluster, unit_id: int) -> str:
    """The nginx.conf a unit's charm pushed (where that unit's nginx reads it)."""
    nginx = cluster.driver(unit_id).nginx
    assert nginx is not None
    return (nginx.config_dir / Path(str(NGINX_CONFIG_PATH)).name).read_text()


def matrix_client(world: World, homeserver_url: str, steps: list[dict[str, typing.Any]]) -> list[typing.Any]:
    """Run the nio client on the client host as the user; its step results (fails the test with its error)."""
    request = json.dumps({"homeserver": homeserver_url, "user": world.user_id, "steps": steps})
    done = subprocess.run(
        world.client.argv([sys.executable, str(NIO_CLIENT), request]),
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT + 60,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    answer = json.loads(lines[-1]) if lines else {"error": done.stderr[-2000:]}
    assert done.returncode == 0 and "results" in answer, f"{answer}\n{done.stderr[-2000:]}"
    return typing.cast(list[typing.Any], answer["results"])


def message_bodies_on_main(world: World, token: str, room_id: str, main: int = 0) -> list[str]:
    """The room's text messages as the main process (on unit `main`) serves them (newest first)."""
    with world.cluster.driver(main).entered():
        status, page = harness.http_json(
            "GET", f"/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50", token=token
        )
    assert status == 200, page
    return [event["content"]["body"] for event in page["chunk"] if event["type"] == "m.room.message"]


def send_and_sync(world: World, unit_id: int, room_id: str, body: str) -> str:
    """Through unit `unit_id`: log in, send `body` to the room and /sync until it comes back; the token."""
    login, _, sender = matrix_client(
        world,
        entry_url(world, unit_id),
        [
            {"op": "login", "password": world.password},
            {"op": "send", "room": room_id, "body": body},
            {"op": "wait_for", "room": room_id, "body": body, "timeout": 60},
        ],
    )
    assert sender == world.user_id
    return str(login["access_token"])


# --- the tests, in order --------------------------------------------------------------------


def test_the_main_and_two_workers_run_each_from_its_own_units_files(world: World) -> None:
    cluster = world.cluster
    commands = [cluster.driver(unit_id).process.spec for unit_id in (0, 1, 2)]
    assert [spec.command if spec else None for spec in commands] == [MAIN_COMMAND, WORKER_COMMAND, WORKER_COMMAND]
    for unit_id in (0, 1, 2):
        driver = cluster.driver(unit_id)
        assert driver.process.is_alive()
        assert SERVICE_NAME in driver.container.plan.services
        with driver.entered():
            assert harness.is_healthy()
    assert cluster.status(0) == ops.ActiveStatus("main process, with 2 generic workers"), cluster.status(0)
    for unit_id in (1, 2):
        expected = ops.ActiveStatus(f"generic worker synapse-{unit_id} (main process on synapse/0)")
        assert cluster.status(unit_id) == expected, cluster.status(unit_id)
    # homeserver.yaml is the same on every unit; each worker has its own worker.yaml.
    config = homeserver(cluster, 0)
    assert homeserver(cluster, 1) == config == homeserver(cluster, 2)
    addresses = [cluster.unit(unit_id).address for unit_id in (0, 1, 2)]
    assert {name: entry["host"] for name, entry in config["instance_map"].items()} == {
        "main": addresses[0],
        "synapse-1": addresses[1],
        "synapse-2": addresses[2],
    }
    assert config["redis"]["host"] == world.backends.host.address
    assert config["database"]["args"]["host"] == world.backends.host.address
    assert config["federation_sender_instances"] == config["pusher_instances"] == ["synapse-1", "synapse-2"]
    assert not host_file(cluster, 0, WORKER_CONFIG_PATH).exists()
    names = [yaml.safe_load(host_file(cluster, unit_id, WORKER_CONFIG_PATH).read_text()) for unit_id in (1, 2)]
    assert [worker["worker_name"] for worker in names] == ["synapse-1", "synapse-2"]
    # Each unit's nginx sends to its own worker, and the rest to the main.
    main_upstream = f"{addresses[0]}:{SYNAPSE_PORT}"
    for unit_id in (1, 2):
        assert f'server "127.0.0.1:{SYNAPSE_PORT}"' in nginx_config(cluster, unit_id)
        assert f'server "{main_upstream}"' in nginx_config(cluster, unit_id)
    # Converged: another round of hooks restarts nothing.
    starts = [cluster.driver(unit_id).starts for unit_id in (0, 1, 2)]
    cluster.run_all("update_status")
    assert [cluster.driver(unit_id).starts for unit_id in (0, 1, 2)] == starts
    assert all(cluster.driver(unit_id).last_calls.restarts == 0 for unit_id in (0, 1, 2))


def test_each_units_nginx_accepts_its_config_and_serves(world: World) -> None:
    for unit_id in (0, 1, 2):
        driver = world.cluster.driver(unit_id)
        nginx = driver.nginx
        assert nginx is not None
        assert nginx.is_alive()
        assert nginx.starts == 1
        assert driver.nginx_container.service_statuses[NGINX_SERVICE] == ops.pebble.ServiceStatus.ACTIVE
        assert NGINX_SERVICE in driver.state.get_container(NGINX_CONTAINER).plan.services
        checked = subprocess.run(nginx.argv(["nginx", "-t"]), capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr
        assert "syntax is ok" in checked.stderr
        with driver.entered():
            status, body = harness.http_get("/health", base_url=f"http://127.0.0.1:{NGINX_PORT}")
        assert (status, body) == (200, b"OK")


def test_a_client_through_a_worker_unit_is_served_by_the_worker_and_read_back_on_the_main(world: World) -> None:
    syncs_before = [requests_received(world.cluster, unit_id, "SyncRestServlet") for unit_id in (0, 1)]
    sends_before = requests_received(world.cluster, 1, "RoomSendEventRestServlet")

    login, room_id, event_id, sender = matrix_client(
        world,
        entry_url(world, 1),
        [
            {"op": "login", "password": world.password},
            {"op": "create_room", "alias": "lobby"},
            {"op": "send", "room_from": 1, "body": "hello from a worker"},
            {"op": "wait_for", "room_from": 1, "body": "hello from a worker", "timeout": 60},
        ],
    )

    assert sender == world.user_id
    assert event_id.startswith("$")
    syncs_after = [requests_received(world.cluster, unit_id, "SyncRestServlet") for unit_id in (0, 1)]
    assert syncs_after[1] > syncs_before[1], "the worker did not serve /sync"
    assert syncs_after[0] == syncs_before[0], "the main served /sync"
    assert requests_received(world.cluster, 1, "RoomSendEventRestServlet") > sends_before
    assert "hello from a worker" in message_bodies_on_main(world, login["access_token"], room_id)
    world.room_id = room_id


def test_a_worker_stops_and_the_rest_keeps_serving(world: World) -> None:
    room_id = world.room_id
    world.cluster.driver(2).stop()
    assert not world.cluster.driver(2).process.is_alive()

    token = send_and_sync(world, 1, room_id, "while synapse-2 is down")

    assert "while synapse-2 is down" in message_bodies_on_main(world, token, room_id)
    with world.cluster.driver(0).entered():
        assert harness.is_healthy()


def test_scaling_down_to_two_units_converges_and_traffic_still_flows(world: World) -> None:
    cluster = world.cluster
    room_id = world.room_id
    starts = [cluster.driver(unit_id).starts for unit_id in (0, 1)]
    routes = [nginx_config(cluster, unit_id) for unit_id in (0, 1)]
    reloads = [typing.cast(harness.NginxProcess, cluster.driver(unit_id).nginx).reloads for unit_id in (0, 1)]

    cluster.remove_unit(2)

    for unit_id in (0, 1):
        config = homeserver(cluster, unit_id)
        assert set(config["instance_map"]) == {"main", "synapse-1"}
        assert config["federation_sender_instances"] == config["pusher_instances"] == ["synapse-1"]
        assert cluster.driver(unit_id).process.is_alive()
    assert cluster.status(0) == ops.ActiveStatus("main process, with 1 generic worker"), cluster.status(0)
    assert cluster.status(1) == ops.ActiveStatus("generic worker synapse-1 (main process on synapse/0)")
    # The shared file changed once: each remaining process restarted once.
    assert [cluster.driver(unit_id).starts - before for unit_id, before in zip((0, 1), starts, strict=True)] == [1, 1]
    # Nobody's routes changed: each nginx runs on, never reloaded.
    assert [nginx_config(cluster, unit_id) for unit_id in (0, 1)] == routes
    nginxes = [typing.cast(harness.NginxProcess, cluster.driver(unit_id).nginx) for unit_id in (0, 1)]
    assert [(nginx.starts, nginx.reloads) for nginx in nginxes] == [(1, reloads[0]), (1, reloads[1])]
    token = send_and_sync(world, 1, room_id, "after scaling down")
    assert "after scaling down" in message_bodies_on_main(world, token, room_id)


def test_the_main_unit_leaves_and_the_leader_takes_over_with_everything(world: World) -> None:
    """With the data in PostgreSQL, the unit left becomes the main (and leader) and serves the whole history."""
    cluster = world.cluster

    cluster.remove_unit(0)

    assert cluster.leader == 1
    assert cluster.app_data()[PEER_MAIN_UNIT_KEY] == "synapse/1"
    spec = cluster.driver(1).process.spec
    assert spec is not None and spec.command == MAIN_COMMAND
    assert not host_file(cluster, 1, WORKER_CONFIG_PATH).exists()
    assert "instance_map" not in homeserver(cluster, 1)
    assert f'server "127.0.0.1:{SYNAPSE_PORT}"' in nginx_config(cluster, 1)
    cluster.run_all("update_status")
    assert cluster.status(1) == ops.ActiveStatus(), cluster.status(1)
    token = send_and_sync(world, 1, world.room_id, "on the new main")
    bodies = message_bodies_on_main(world, token, world.room_id, main=1)
    assert {"hello from a worker", "while synapse-2 is down", "after scaling down", "on the new main"} <= set(bodies)
