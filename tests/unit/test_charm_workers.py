"""Several units: the main process on one, a generic worker on every other (PostgreSQL + Redis), standby otherwise."""

import dataclasses
import re
import typing
from pathlib import Path

import ops
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ops import testing

from constants import (
    CONFIG_PATH,
    CONTAINER_NAME,
    NGINX_CONTAINER,
    NGINX_SERVICE,
    PEER_ADDRESS_KEY,
    PEER_DATABASE_KEY,
    PEER_MAIN_UNIT_KEY,
    PEER_RELATION,
    PEER_SECRET_ID_KEY,
    REDIS_ENDPOINT,
    REPLICATION_PORT,
    SERVICE_NAME,
    WORKER_CONFIG_PATH,
    WORKER_REPLICATION_SECRET_PATH,
)
from server_secrets import ServerSecrets
from state import DatabaseRecord
from tests.unit.conftest import CharmEnv, record_side_effects
from tests.unit.test_charm_database import APP, database_relation, provider_data
from topology import MAIN_INSTANCE, build_topology, worker_name

REDIS_HOST = "10.1.0.7"
SECRET_ID = "secret:d1a2b3c4e5f6g7h8i9j0"
WORKER_COMMAND = (
    "python -m synapse.app.generic_worker --config-path /data/homeserver.yaml --config-path /data/worker.yaml"
)
MAIN_COMMAND = "python -m synapse.app.homeserver --config-path /data/homeserver.yaml"


def address(number: int) -> str:
    """The pod address of unit `synapse/<number>` in these tests."""
    return f"10.0.0.{10 + number}"


def redis_relation(answered: bool = True) -> testing.Relation:
    """redis-k8s on the `redis` endpoint; its unit writes hostname and port once it is up."""
    data = {"hostname": REDIS_HOST, "port": "6379"} if answered else {}
    return testing.Relation(REDIS_ENDPOINT, interface="redis", remote_app_name="redis-k8s", remote_units_data={0: data})


@dataclasses.dataclass
class Deployment:
    """What every unit of one application shares: secrets, the database and redis relations, peer app data."""

    secrets: ServerSecrets
    database: testing.Relation
    redis: testing.Relation | None
    main: str = "synapse/0"
    leader: int = 0
    postgresql: bool = True

    def app_data(self) -> dict[str, str]:
        """The peer app databag the leader wrote."""
        data = {PEER_SECRET_ID_KEY: SECRET_ID, PEER_MAIN_UNIT_KEY: self.main}
        if self.postgresql:
            record = DatabaseRecord(source=f"database:{self.database.id}", use=APP, state="ready")
            data[PEER_DATABASE_KEY] = record.model_dump_json()
        return data

    def state(self, env: CharmEnv, number: int, units: typing.Iterable[int], data_dir: Path) -> testing.State:
        """The State of unit `synapse/<number>` among `units` (each published its address)."""
        peers = {other: {PEER_ADDRESS_KEY: address(other)} for other in units if other != number}
        peer = testing.PeerRelation(
            PEER_RELATION,
            local_app_data=self.app_data(),
            local_unit_data={PEER_ADDRESS_KEY: address(number)},
            peers_data=peers,
        )
        relations: list[testing.RelationBase] = [peer]
        if self.postgresql:
            relations.append(self.database)
        if self.redis is not None:
            relations.append(self.redis)
        secret = testing.Secret(self.secrets.to_content(), id=SECRET_ID, owner="app" if number == self.leader else None)
        return env.state(
            leader=number == self.leader,
            peer=False,
            relations=relations,
            secrets={secret},
            container=env.container(data_dir=data_dir),
            networks={testing.Network(PEER_RELATION, [address_info(number)], ingress_addresses=[address(number)])},
        )


def peer_relation(state: testing.State) -> testing.PeerRelation:
    """The peer relation of `state`."""
    return typing.cast(testing.PeerRelation, state.get_relations(PEER_RELATION)[0])


def main_unit_of(state: testing.State) -> str | None:
    """The main unit the leader recorded in peer app data."""
    data: typing.Mapping[str, str] = peer_relation(state).local_app_data
    return data.get(PEER_MAIN_UNIT_KEY)


def address_info(number: int) -> testing.BindAddress:
    """The peer binding of unit `number`, at its pod address."""
    return testing.BindAddress([testing.Address(address(number))])


def deployment(redis: bool = True, postgresql: bool = True) -> Deployment:
    """An application on PostgreSQL (prepared by synapse/0) with Redis related."""
    return Deployment(
        secrets=ServerSecrets.generate(),
        database=database_relation(provider_data()),
        redis=redis_relation() if redis else None,
        postgresql=postgresql,
    )


class Unit(typing.NamedTuple):
    """One unit after a hook: its State and its /data directory."""

    state: testing.State
    data_dir: Path

    def homeserver(self) -> dict[str, typing.Any]:
        """Its parsed homeserver.yaml."""
        return yaml.safe_load((self.data_dir / CONFIG_PATH.name).read_text())

    def worker(self) -> dict[str, typing.Any] | None:
        """Its parsed worker.yaml, if any."""
        path = self.data_dir / WORKER_CONFIG_PATH.name
        return yaml.safe_load(path.read_text()) if path.exists() else None

    def command(self) -> str | None:
        """The command of its Synapse service in the Pebble plan."""
        services = self.state.get_container(CONTAINER_NAME).plan.services
        return services[SERVICE_NAME].command if SERVICE_NAME in services else None

    def running(self) -> bool:
        """Whether its Synapse service runs."""
        status = self.state.get_container(CONTAINER_NAME).service_statuses.get(SERVICE_NAME)
        return status == ops.pebble.ServiceStatus.ACTIVE


def run_unit(
    env: CharmEnv, app: Deployment, number: int, units: typing.Iterable[int], nginx_etc: Path | None = None
) -> Unit:
    """Run config-changed on unit `number` of `units` with a fresh volume (`env` then runs as that unit).

    With `nginx_etc`, the pod's nginx container is up, its /etc/nginx on that directory.
    """
    data_dir = env.new_data_dir()
    env.ctx = env.context(number)  # env now runs hooks as this unit
    state = app.state(env, number, list(units), data_dir)
    if nginx_etc is not None:
        nginx = testing.Container(
            NGINX_CONTAINER,
            can_connect=True,
            mounts={"etc": testing.Mount(location="/etc/nginx", source=nginx_etc)},
            execs={testing.Exec(["nginx"])},
        )
        state = dataclasses.replace(state, containers=frozenset({*state.containers, nginx}))
    out = env.run(env.ctx.on.config_changed(), state)
    return Unit(out, data_dir)


def upstreams(nginx_etc: Path) -> dict[str, str]:
    """The upstreams of the nginx.conf the charm pushed: name -> server."""
    found = re.findall(r'upstream (\w+) \{\s*server "([^"]+)";', (nginx_etc / "nginx.conf").read_text())
    return dict(found)


@pytest.mark.parametrize(
    ("number", "redis", "expected"),
    [
        (0, True, {"synapse_main": "127.0.0.1:8008"}),
        (1, True, {"synapse_main": f"{address(0)}:8008", "synapse_worker": "127.0.0.1:8008"}),
        (1, False, {"synapse_main": f"{address(0)}:8008"}),  # standby: everything to the main
    ],
)
def test_each_units_nginx_routes_to_its_worker_and_the_main(
    env: CharmEnv, tmp_path: Path, number: int, redis: bool, expected: dict[str, str]
) -> None:
    etc = tmp_path / "nginx-etc"
    etc.mkdir()
    unit = run_unit(env, deployment(redis=redis), number, range(3), nginx_etc=etc)
    assert upstreams(etc) == expected
    nginx = unit.state.get_container(NGINX_CONTAINER)
    assert nginx.service_statuses.get(NGINX_SERVICE) == ops.pebble.ServiceStatus.ACTIVE


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_main_and_worker_configs_for_one_to_five_units(env: CharmEnv, count: int) -> None:
    app = deployment()
    units = range(count)
    ran = [run_unit(env, app, number, units) for number in units]
    workers = [worker_name(f"synapse/{number}") for number in units if number != 0]

    configs = [unit.homeserver() for unit in ran]
    assert all(config == configs[0] for config in configs), "every unit shares one homeserver.yaml"
    shared = configs[0]
    if count == 1:
        assert "instance_map" not in shared and "redis" not in shared
        assert [listener["port"] for listener in shared["listeners"]] == [8008, 9000]
    else:
        assert shared["redis"] == {"enabled": True, "host": REDIS_HOST, "port": 6379}
        assert shared["instance_map"] == {
            MAIN_INSTANCE: {"host": address(0), "port": REPLICATION_PORT},
            **{f"synapse-{n}": {"host": address(n), "port": REPLICATION_PORT} for n in units if n},
        }
        assert shared["federation_sender_instances"] == workers
        assert shared["pusher_instances"] == workers
        assert shared["worker_replication_secret_path"] == str(WORKER_REPLICATION_SECRET_PATH)
        replication = [listener for listener in shared["listeners"] if listener["port"] == REPLICATION_PORT]
        assert replication[0]["resources"] == [{"names": ["replication"]}]
    main, *others = ran
    assert main.command() == MAIN_COMMAND and main.running()
    assert main.worker() is None
    others_note = f"main process, with {count - 1} generic worker{'s' if count > 2 else ''}" if count > 1 else ""
    assert main.state.unit_status == ops.ActiveStatus(others_note)
    for number, unit in enumerate(others, start=1):
        assert unit.command() == WORKER_COMMAND and unit.running()
        worker = unit.worker()
        assert worker is not None
        assert worker["worker_app"] == "synapse.app.generic_worker"
        assert worker["worker_name"] == f"synapse-{number}"
        assert [listener["port"] for listener in worker["worker_listeners"]] == [8008, REPLICATION_PORT, 9000]
        assert unit.state.unit_status == ops.ActiveStatus(
            f"generic worker synapse-{number} (main process on synapse/0)"
        ), unit.state.unit_status
        secret_file = unit.data_dir / "secrets" / WORKER_REPLICATION_SECRET_PATH.name
        assert secret_file.read_text() == app.secrets.worker_replication_secret
        assert secret_file.stat().st_mode & 0o777 == 0o600


def test_repeated_peer_events_on_a_worker_change_nothing(env: CharmEnv) -> None:
    app = deployment()
    first = run_unit(env, app, 1, range(3))
    state = env.ready(first.state)
    peer = state.get_relations(PEER_RELATION)[0]
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_changed(peer, remote_unit=2), state)
    assert effects.nothing, effects
    assert Unit(out, first.data_dir).running()


def test_a_unit_leaving_leaves_every_list_and_restarts_the_rest_once(env: CharmEnv) -> None:
    app = deployment()
    first = run_unit(env, app, 1, range(3))
    state = env.ready(first.state)
    # synapse/2 departs: Juju drops its databag from the peer relation.
    peer = peer_relation(state)
    left = dataclasses.replace(peer, peers_data={0: peer.peers_data[0]})
    state = env.replace_relation(state, left)
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_departed(left, remote_unit=2, departing_unit=2), state)
    config = Unit(out, first.data_dir).homeserver()
    assert set(config["instance_map"]) == {MAIN_INSTANCE, "synapse-1"}
    assert config["federation_sender_instances"] == ["synapse-1"]
    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]


def test_the_last_worker_leaving_returns_the_main_to_one_process(env: CharmEnv) -> None:
    app = deployment()
    main = run_unit(env, app, 0, range(2))
    assert "instance_map" in main.homeserver()
    state = env.ready(main.state)
    left = dataclasses.replace(peer_relation(state), peers_data={})
    out = env.run(
        env.ctx.on.relation_departed(left, remote_unit=1, departing_unit=1), env.replace_relation(state, left)
    )
    after = Unit(out, main.data_dir)
    config = after.homeserver()
    assert "instance_map" not in config and "federation_sender_instances" not in config
    assert not (main.data_dir / "secrets" / WORKER_REPLICATION_SECRET_PATH.name).exists()
    assert after.running() and after.command() == MAIN_COMMAND


@pytest.mark.parametrize(
    ("redis", "postgresql", "missing"),
    [
        (False, True, "`juju integrate synapse redis-k8s`"),
        (True, False, "`juju integrate synapse postgresql-k8s`"),
        (False, False, "`juju integrate synapse postgresql-k8s` and `juju integrate synapse redis-k8s`"),
    ],
)
def test_standby_without_redis_or_postgresql_names_what_to_relate(
    env: CharmEnv, redis: bool, postgresql: bool, missing: str
) -> None:
    app = deployment(redis=redis, postgresql=postgresql)
    unit = run_unit(env, app, 1, range(2))
    assert isinstance(unit.state.unit_status, ops.BlockedStatus)
    assert missing in unit.state.unit_status.message
    assert not unit.running() and unit.worker() is None
    main = run_unit(env, app, 0, range(2))
    assert "instance_map" not in main.homeserver()


def test_standby_waits_for_redis_to_answer(env: CharmEnv) -> None:
    app = deployment()
    app.redis = redis_relation(answered=False)
    unit = run_unit(env, app, 1, range(2))
    assert unit.state.unit_status == ops.WaitingStatus(
        "standby: waiting for Redis to answer on the redis relation before running a worker"
    )
    assert not unit.running()


def test_main_kept_across_a_leader_change(env: CharmEnv) -> None:
    app = deployment()
    app.leader = 2  # synapse/2 is elected; synapse/0 still runs and stays the main
    units = [run_unit(env, app, number, range(3)) for number in range(3)]
    assert units[0].command() == MAIN_COMMAND
    assert units[2].command() == WORKER_COMMAND
    assert main_unit_of(units[2].state) == "synapse/0"


def test_the_leader_takes_over_when_the_main_is_gone_on_postgresql(env: CharmEnv) -> None:
    app = deployment()
    app.leader = 1
    unit = run_unit(env, app, 1, [1, 2])  # synapse/0 is gone
    assert main_unit_of(unit.state) == "synapse/1"
    assert unit.command() == MAIN_COMMAND
    config = unit.homeserver()
    assert config["instance_map"][MAIN_INSTANCE]["host"] == address(1)
    assert config["federation_sender_instances"] == ["synapse-2"]


def test_a_worker_refuses_actions_that_need_the_main(env: CharmEnv) -> None:
    app = deployment()
    unit = run_unit(env, app, 1, range(2))
    with pytest.raises(testing.ActionFailed, match="run the action on the main unit"):
        env.run(env.ctx.on.action("list-registration-tokens"), env.ready(unit.state))


def test_blocked_worker_keeps_its_worker_running(env: CharmEnv) -> None:
    app = deployment()
    unit = run_unit(env, app, 1, range(2))
    stopped = dataclasses.replace(
        unit.state.get_container(CONTAINER_NAME),
        service_statuses={SERVICE_NAME: ops.pebble.ServiceStatus.INACTIVE},
    )
    state = env.with_config(dataclasses.replace(unit.state, containers=frozenset({stopped})), server_name="not a name")
    out = env.run(env.ctx.on.config_changed(), state)
    assert isinstance(out.unit_status, ops.BlockedStatus)
    after = Unit(out, unit.data_dir)
    assert after.running() and after.command() == WORKER_COMMAND


def test_blocked_standby_never_starts_a_second_main(env: CharmEnv) -> None:
    app = deployment(redis=False)
    unit = run_unit(env, app, 1, range(2))
    assert not unit.running()
    out = env.run(env.ctx.on.config_changed(), env.with_config(unit.state, server_name="not a name"))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert not Unit(out, unit.data_dir).running()


def test_topology_orders_workers_by_unit_number() -> None:
    addresses = {f"synapse/{n}": address(n) for n in (10, 2, 0, 1)}
    topology = build_topology("synapse/2", "synapse/0", addresses, workers_possible=True)
    assert topology is not None
    assert topology.worker_names == ["synapse-1", "synapse-2", "synapse-10"]
    assert topology.role == "worker"
    assert build_topology("synapse/2", "synapse/0", addresses, workers_possible=False).role == "standby"  # type: ignore[union-attr]
    assert build_topology("synapse/2", "synapse/9", addresses, workers_possible=True) is None


@pytest.mark.parametrize("case", ["no worker secret yet", "no main recorded"])
def test_bad_redis_data_blocks_on_any_path(env: CharmEnv, case: str) -> None:
    app = deployment()
    app.redis = testing.Relation(
        REDIS_ENDPOINT, remote_app_name="redis-k8s", remote_units_data={0: {"hostname": "a b", "port": "6379"}}
    )
    if case == "no worker secret yet":
        content = app.secrets.to_content()
        del content["worker-replication-secret"]
        app.secrets = ServerSecrets.from_content(content)
    else:
        app.main = ""
    unit = run_unit(env, app, 1, range(2))
    assert isinstance(unit.state.unit_status, ops.BlockedStatus)
    assert "the redis relation's unit redis-k8s/0 sent an invalid hostname" in unit.state.unit_status.message
    assert not unit.running()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    redis=st.dictionaries(st.sampled_from(["hostname", "port", "password", "other"]), st.text(max_size=40)),
    peers=st.dictionaries(
        st.integers(min_value=0, max_value=3),
        st.dictionaries(st.sampled_from([PEER_ADDRESS_KEY, "database", "other"]), st.text(max_size=40)),
    ),
    main=st.sampled_from(["synapse/0", "synapse/1", "synapse/9", "", "x y"]),
)
def test_any_peer_and_redis_data_on_a_worker_ends_in_a_status_and_never_a_second_main(
    env: CharmEnv, redis: dict[str, str], peers: dict[int, dict[str, str]], main: str
) -> None:
    """Hostile Redis and peer databags on a non-leader: the hook ends in a status; a main runs only on the main unit."""
    app = deployment()
    app.redis = testing.Relation(REDIS_ENDPOINT, remote_app_name="redis-k8s", remote_units_data={0: redis})
    app.main = main
    data_dir = env.new_data_dir()
    env.ctx = env.context(1)
    state = app.state(env, 1, [0, 1, 2], data_dir)
    peer = peer_relation(state)
    drawn = dataclasses.replace(peer, peers_data={n: data for n, data in peers.items() if n != 1})
    out = env.run(env.ctx.on.config_changed(), env.replace_relation(state, drawn))
    assert isinstance(out.unit_status, ops.ActiveStatus | ops.BlockedStatus | ops.WaitingStatus | ops.MaintenanceStatus)
    unit = Unit(out, data_dir)
    if unit.running() and unit.command() == MAIN_COMMAND:
        assert main == "synapse/1"
