"""Several units of the charm at once, as Juju runs them: one peer relation, shared relations, secrets.

Each unit is a `CharmDriver` (tests/workload/harness.py) with its own data dir and its own
test host (tests/workload/netns.py): its own network namespace and address, which is also its
binding address on every endpoint (a pod has one IP). The cluster plays Juju between them:

- after a unit runs a hook, its peer unit databag is copied into every other unit's
  `peers_data`, and the leader's peer app databag into every other unit's `local_app_data`;
  the units that saw a change run `relation-changed`, until no databag changes any more
  (`converge`, which fails loudly after MAX_CONVERGE_HOOKS hooks);
- the leader's application-owned Juju secrets (the server secrets) are copied into the
  other units' States, as every unit of an application can read them;
- relations to other applications (`relate`) are the same on every unit: one relation id,
  the same remote data, and the same secrets;
- units come (`add_unit`) and go (`remove_unit`: its processes stop, the others run
  `relation-departed`), and leadership moves (`set_leader`).

PostgreSQL and Redis for a cluster run on a host of the same network (`Backends`, on
`db.test`), listening on its address, so every unit's namespace reaches them:

    with TestNetwork() as network:
        backends = Backends.start(base / "db", network)
        cluster = Cluster(base, network, {"server_name": "example.test"}, venv=venv)
        cluster.deploy(3)
        cluster.relate(*backends.database_relation())
        cluster.relate(backends.redis_relation())
        cluster.driver(1).process.is_alive()
        cluster.close(); backends.stop()
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import socket
import subprocess
import time
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import ops
import yaml
from ops import testing

from charm import SynapseCharm
from constants import DATABASE_ENDPOINT, PEER_RELATION, REDIS_ENDPOINT
from tests.workload import harness
from tests.workload.netns import TestHost, TestNetwork
from tests.workload.postgres import APP_ROLE_NAME, PostgresServer, Role, unique_name

logger = logging.getLogger(__name__)

APP_NAME = "synapse"
DB_HOST = "db.test"
REDIS_BINARY = Path("/usr/bin/redis-server")
REDIS_PORT = 6379
START_TIMEOUT = 30.0
# Hooks one `converge` may run before it gives up: databags that keep changing are a bug.
MAX_CONVERGE_HOOKS = 60
METADATA = harness.REPO_ROOT / "metadata.yaml"

Databag = dict[str, str]
EventFactory = Callable[[harness.CharmDriver], typing.Any]


class ClusterError(Exception):
    """The cluster could not be driven as Juju would (e.g. databags never settle)."""


def unit_name(unit_id: int) -> str:
    """The Juju name of unit `unit_id`, e.g. synapse/1."""
    return f"{APP_NAME}/{unit_id}"


def endpoints() -> list[str]:
    """Every relation endpoint of the charm (requires, provides and peers in metadata.yaml)."""
    meta = yaml.safe_load(METADATA.read_text())
    return [name for section in ("requires", "provides", "peers") for name in meta.get(section) or {}]


def unit_networks(address: str) -> frozenset[testing.Network]:
    """The unit's bindings: `address` on every endpoint, as a pod has one IP."""
    return frozenset(
        testing.Network(
            endpoint,
            [testing.BindAddress([testing.Address(address)])],
            ingress_addresses=[address],
            egress_subnets=[f"{address}/32"],
        )
        for endpoint in endpoints()
    )


def juju_databag(address: str) -> Databag:
    """What Juju puts in a unit's databag before the charm writes anything."""
    return {"egress-subnets": f"{address}/32", "ingress-address": address, "private-address": address}


def _relation_created(relation_id: int) -> EventFactory:
    """relation-created of a relation, as a unit's State has it."""

    def event(driver: harness.CharmDriver) -> typing.Any:
        return driver.ctx.on.relation_created(driver.state.get_relation(relation_id))

    return event


def _relation_changed(relation_id: int) -> EventFactory:
    """relation-changed of a relation to another application, from its first remote unit."""

    def event(driver: harness.CharmDriver) -> typing.Any:
        relation = driver.state.get_relation(relation_id)
        remote_ids = sorted(getattr(relation, "remote_units_data", None) or {})
        return driver.ctx.on.relation_changed(relation, remote_unit=remote_ids[0] if remote_ids else None)

    return event


def _peer_changed(relation_id: int, remote: int) -> EventFactory:
    """relation-changed of the peer relation, for a change of unit `remote`'s databag."""

    def event(driver: harness.CharmDriver) -> typing.Any:
        return driver.ctx.on.relation_changed(driver.state.get_relation(relation_id), remote_unit=remote)

    return event


@dataclasses.dataclass
class Unit:
    """One unit of the cluster: its number, its test host and its driver."""

    id: int
    host: TestHost
    driver: harness.CharmDriver

    @property
    def name(self) -> str:
        """The unit's Juju name."""
        return unit_name(self.id)

    @property
    def address(self) -> str:
        """The unit's address on the test network (its ingress-address)."""
        return self.host.address


class Cluster:
    """Units of the charm on one test network, sharing a peer relation (see the module docstring)."""

    def __init__(
        self,
        base: Path,
        network: TestNetwork,
        config: Mapping[str, str | int | float | bool],
        *,
        venv: Path,
        nginx: bool = False,
        trusted_ca: Path | None = None,
    ):
        self.base = base
        self.network = network
        self.config = dict(config)
        self.venv = venv
        self.nginx = nginx
        self.trusted_ca = trusted_ca
        self.units: dict[int, Unit] = {}
        self.leader: int | None = None
        self.removed: list[Unit] = []
        self.hooks = 0  # hooks run on all units, for tests that count them
        self._next_id = 0
        self._peer = testing.PeerRelation(PEER_RELATION)
        self._published: dict[int, Databag] = {}
        self._published_app: Databag = {}
        self._shared: dict[int, testing.RelationBase] = {}
        self._shared_secrets: dict[str, testing.Secret] = {}
        self._pending: list[tuple[int, int]] = []

    # -- reading ----------------------------------------------------------------------------

    @property
    def peer_relation_id(self) -> int:
        """The peer relation's id (the same on every unit)."""
        return self._peer.id

    def unit(self, unit_id: int) -> Unit:
        """Unit `unit_id` (KeyError when there is no such unit)."""
        return self.units[unit_id]

    def driver(self, unit_id: int) -> harness.CharmDriver:
        """Unit `unit_id`'s driver."""
        return self.units[unit_id].driver

    def peer(self, unit_id: int) -> testing.PeerRelation:
        """The peer relation as unit `unit_id` sees it."""
        return typing.cast(testing.PeerRelation, self.driver(unit_id).state.get_relation(self._peer.id))

    def unit_data(self, unit_id: int) -> Databag:
        """Unit `unit_id`'s own peer databag (what it published)."""
        return dict(self.peer(unit_id).local_unit_data)

    def app_data(self) -> Databag:
        """The peer app databag the leader wrote."""
        return dict(self._published_app)

    def status(self, unit_id: int) -> ops.StatusBase:
        """Unit `unit_id`'s status after its last hook."""
        return typing.cast(ops.StatusBase, self.driver(unit_id).state.unit_status)

    def relation(self, unit_id: int, relation_id: int) -> testing.RelationBase:
        """A relation as unit `unit_id` sees it."""
        return self.driver(unit_id).state.get_relation(relation_id)

    # -- units ------------------------------------------------------------------------------

    def deploy(self, count: int) -> list[Unit]:
        """`juju deploy -n count`: the units appear at once; unit 0 of them leads if none does yet."""
        new = [self._new_unit() for _ in range(count)]
        if self.leader is None:
            self.leader = new[0].id
            self._set_leader_flag(new[0].id, True)
        for unit in new:
            self._first_hooks(unit)
        for unit in new:
            for other in self.units:
                if other != unit.id:
                    self._queue(other, unit.id)
                    self._queue(unit.id, other)
        self.converge()
        return new

    def add_unit(self) -> Unit:
        """`juju add-unit`: a new unit joins; everyone converges."""
        return self.deploy(1)[0]

    def remove_unit(self, unit_id: int) -> None:
        """`juju remove-unit`: its processes stop, the others run relation-departed; the leader moves if needed."""
        unit = self.units.pop(unit_id)
        unit.driver.stop()
        self.removed.append(unit)
        self._published.pop(unit_id, None)
        self._pending = [(target, remote) for target, remote in self._pending if unit_id not in (target, remote)]
        for other in self.units:
            driver = self.driver(other)
            peer = self.peer(other)
            peers_data = {key: value for key, value in peer.peers_data.items() if key != unit_id}
            departed = dataclasses.replace(peer, peers_data=peers_data)
            self._replace_relation(driver, departed)
            self._run(other, lambda d: self._departed_event(d, unit_id))
        if self.leader == unit_id:
            self.leader = None
            if self.units:
                self.set_leader(min(self.units))
                return
        self.converge()

    def _departed_event(self, driver: harness.CharmDriver, departing: int) -> typing.Any:
        """relation-departed of the peer relation for unit `departing` (already gone from it)."""
        relation = driver.state.get_relation(self._peer.id)
        return driver.ctx.on.relation_departed(relation, remote_unit=departing, departing_unit=departing)

    def set_leader(self, unit_id: int) -> None:
        """Leadership moves to `unit_id` (leader-elected there); everyone converges."""
        if self.leader is not None and self.leader in self.units:
            self._set_leader_flag(self.leader, False)
        self.leader = unit_id
        self._set_leader_flag(unit_id, True)
        self._run(unit_id, lambda d: d.ctx.on.leader_elected())
        self.converge()

    def _set_leader_flag(self, unit_id: int, leader: bool) -> None:
        """Set State.leader of one unit (no hook)."""
        driver = self.driver(unit_id)
        driver.state = dataclasses.replace(driver.state, leader=leader)

    def _new_unit(self) -> Unit:
        """A unit with its host, driver and State: the peer relation with everyone's databags, shared relations."""
        unit_id = self._next_id
        self._next_id += 1
        host = self.network.add_host(f"{APP_NAME}-{unit_id}.test")
        self._refresh_hosts()
        base = self.base / f"unit-{unit_id}"
        driver = harness.CharmDriver(
            base / "data",
            self.config,
            venv=self.venv,
            leader=False,
            log_path=base / "synapse.log",
            context=testing.Context(SynapseCharm, app_name=APP_NAME, unit_id=unit_id),
            netns=host.namespace,
            hosts=self.network.hosts(),
            trusted_ca=self.trusted_ca,
            nginx=self.nginx,
        )
        own = juju_databag(host.address)
        peer = dataclasses.replace(
            self._peer,
            local_app_data=dict(self._published_app),
            local_unit_data=dict(own),
            peers_data={other: dict(data) for other, data in self._published.items()},
        )
        secrets = [*self._app_secrets_copy(), *(copy.deepcopy(s) for s in self._shared_secrets.values())]
        driver.state = dataclasses.replace(
            driver.state,
            relations=frozenset({peer, *(copy.deepcopy(rel) for rel in self._shared.values())}),
            networks=unit_networks(host.address),
            secrets=frozenset(secrets),
        )
        unit = Unit(unit_id, host, driver)
        for other in self.units:
            other_driver = self.driver(other)
            other_peer = self.peer(other)
            joined = dataclasses.replace(other_peer, peers_data={**other_peer.peers_data, unit_id: dict(own)})
            self._replace_relation(other_driver, joined)
        self.units[unit_id] = unit
        self._published[unit_id] = own
        return unit

    def _refresh_hosts(self) -> None:
        """Rewrite every unit's /etc/hosts with the network's hosts (in place: running processes see it)."""
        for unit in self.units.values():
            hosts_file = unit.driver.view.hosts_file
            if hosts_file is not None:
                lines = "".join(f"{address}\t{name}\n" for name, address in self.network.hosts().items())
                hosts_file.write_text(harness.BASE_HOSTS + lines)

    def _first_hooks(self, unit: Unit) -> None:
        """What Juju runs on a new unit.

        install, peer relation-created, leader-elected, config-changed, start, pebble-ready, then
        relation-created and -changed of the relations the application already has.
        """
        peer = self._peer.id
        steps: list[EventFactory] = [
            lambda d: d.ctx.on.install(),
            lambda d: d.ctx.on.relation_created(d.state.get_relation(peer)),
        ]
        if unit.id == self.leader:
            steps.append(lambda d: d.ctx.on.leader_elected())
        steps += [lambda d: d.ctx.on.config_changed(), lambda d: d.ctx.on.start()]
        steps.append(lambda d: "pebble_ready")
        if self.nginx:
            steps.append(lambda d: "nginx_pebble_ready")
        for relation_id in self._shared:
            steps += [_relation_created(relation_id), _relation_changed(relation_id)]
        for step in steps:
            self._run(unit.id, step)

    # -- relations to other applications ----------------------------------------------------------

    def relate(self, relation: testing.RelationBase, secrets: Iterable[testing.Secret] = ()) -> int:
        """Relate the application: the same relation (id, remote data) and `secrets` on every unit.

        Every unit runs relation-created and -changed, the leader first; then everyone converges.
        Returns the relation id.
        """
        self._shared[relation.id] = relation
        for secret in secrets:
            self._shared_secrets[secret.id] = secret
        for unit_id in self._ordered():
            driver = self.driver(unit_id)
            driver.state = dataclasses.replace(
                driver.state,
                relations=frozenset({*driver.state.relations, copy.deepcopy(relation)}),
                secrets=frozenset(
                    {*driver.state.secrets, *(copy.deepcopy(secret) for secret in self._shared_secrets.values())}
                ),
            )
            self._run(unit_id, _relation_created(relation.id))
            self._run(unit_id, _relation_changed(relation.id))
        self.converge()
        return relation.id

    def update_remote(
        self,
        relation_id: int,
        *,
        app_data: Mapping[str, str] | None = None,
        units_data: Mapping[int, Mapping[str, str]] | None = None,
    ) -> None:
        """The remote application changed its databags: relation-changed on every unit; converge."""
        shared = typing.cast(testing.Relation, self._shared[relation_id])
        changes: dict[str, typing.Any] = {}
        if app_data is not None:
            changes["remote_app_data"] = {**shared.remote_app_data, **app_data}
        if units_data is not None:
            changes["remote_units_data"] = {
                **shared.remote_units_data,
                **{key: dict(value) for key, value in units_data.items()},
            }
        self._shared[relation_id] = dataclasses.replace(shared, **changes)
        for unit_id in self._ordered():
            driver = self.driver(unit_id)
            current = typing.cast(testing.Relation, driver.state.get_relation(relation_id))
            self._replace_relation(driver, dataclasses.replace(current, **copy.deepcopy(changes)))
            self._run(unit_id, _relation_changed(relation_id))
        self.converge()

    def unrelate(self, relation_id: int) -> None:
        """`juju remove-relation`: relation-broken on every unit, then the relation is gone; converge."""
        self._shared.pop(relation_id)
        for unit_id in self._ordered():
            driver = self.driver(unit_id)
            self._run(unit_id, lambda d: d.ctx.on.relation_broken(d.state.get_relation(relation_id)))
            driver.state = dataclasses.replace(
                driver.state, relations=frozenset(rel for rel in driver.state.relations if rel.id != relation_id)
            )
        self.converge()

    def set_config(self, **changes: str | int | float | bool) -> None:
        """`juju config`: config-changed on every unit (the leader first); converge."""
        self.config.update(changes)
        for unit_id in self._ordered():
            self.driver(unit_id).set_config(**changes)
            self._run(unit_id, lambda d: d.ctx.on.config_changed())
        self.converge()

    def run(self, unit_id: int, event: harness.EventArg) -> testing.State:
        """Run one hook on a unit (an event name, as CharmDriver.run takes), then converge."""
        self._run(unit_id, lambda d: event)
        self.converge()
        return self.driver(unit_id).state

    def run_all(self, event: str) -> None:
        """Run the same hook (e.g. "update_status") on every unit, the leader first; converge."""
        for unit_id in self._ordered():
            self._run(unit_id, lambda d: event)
        self.converge()

    def run_action(
        self, unit_id: int, name: str, params: Mapping[str, typing.Any] | None = None
    ) -> dict[str, typing.Any]:
        """Run an action on a unit (as CharmDriver.run_action); then copy what it published and converge."""
        results = self.driver(unit_id).run_action(name, params)
        self.hooks += 1
        self._propagate(unit_id)
        self.converge()
        return results

    def _ordered(self) -> list[int]:
        """Unit ids, the leader first."""
        return sorted(self.units, key=lambda unit_id: (unit_id != self.leader, unit_id))

    # -- playing Juju between the units --------------------------------------------------------------

    def converge(self) -> None:
        """Run relation-changed on units whose peers' databags changed, until nothing changes."""
        hooks = 0
        while self._pending:
            target, remote = self._pending.pop(0)
            if target not in self.units or remote not in self.units:
                continue
            hooks += 1
            if hooks > MAX_CONVERGE_HOOKS:
                raise ClusterError(
                    f"the peer databags did not settle within {MAX_CONVERGE_HOOKS} hooks; last: "
                    f"{unit_name(target)} saw {unit_name(remote)} change. Unit databags: {self._published}; "
                    f"app databag: {self._published_app}"
                )
            self._run(target, _peer_changed(self._peer.id, remote))

    def _run(self, unit_id: int, event: EventFactory) -> None:
        """Run one hook on a unit, then copy what it published to the others (queueing their hooks)."""
        driver = self.driver(unit_id)
        driver.run(lambda: event(driver))
        self.hooks += 1
        self._propagate(unit_id)

    def _queue(self, target: int, remote: int) -> None:
        """Queue relation-changed on `target` for a change of `remote` (once)."""
        if (target, remote) not in self._pending:
            self._pending.append((target, remote))

    def _propagate(self, unit_id: int) -> None:
        """Copy unit `unit_id`'s databag (and, from the leader, the app databag and app secrets) to the others."""
        peer = self.peer(unit_id)
        own: Databag = dict(peer.local_unit_data)
        changed = own != self._published.get(unit_id)
        if changed:
            self._published[unit_id] = own
        app_changed = False
        if unit_id == self.leader:
            app: Databag = dict(peer.local_app_data)
            app_changed = app != self._published_app
            self._published_app = app
            self._share_app_secrets()
        if not changed and not app_changed:
            return
        for other in self.units:
            if other == unit_id:
                continue
            driver = self.driver(other)
            theirs = self.peer(other)
            updated = dataclasses.replace(
                theirs,
                peers_data={**theirs.peers_data, unit_id: dict(own)},
                local_app_data=dict(self._published_app),
            )
            self._replace_relation(driver, updated)
            self._queue(other, unit_id)

    def _app_secrets_copy(self) -> list[testing.Secret]:
        """Copies of the application-owned secrets the leader holds (none without a leader)."""
        if self.leader is None or self.leader not in self.units:
            return []
        return [copy.deepcopy(secret) for secret in self.driver(self.leader).state.secrets if secret.owner == "app"]

    def _share_app_secrets(self) -> None:
        """Give every other unit the leader's application-owned secrets (replacing older copies)."""
        for other in self.units:
            if other == self.leader:
                continue
            driver = self.driver(other)
            kept = [secret for secret in driver.state.secrets if secret.owner != "app"]
            driver.state = dataclasses.replace(driver.state, secrets=frozenset([*kept, *self._app_secrets_copy()]))

    @staticmethod
    def _replace_relation(driver: harness.CharmDriver, relation: testing.RelationBase) -> None:
        """Put `relation` in the driver's State in place of the one with its id."""
        others = {rel for rel in driver.state.relations if rel.id != relation.id}
        driver.state = dataclasses.replace(driver.state, relations=frozenset({*others, relation}))

    # -- the end ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every unit's processes."""
        for unit in [*self.units.values(), *self.removed]:
            unit.driver.stop()


# ---------------------------------------------------------------------------------------
# PostgreSQL and Redis on a host of the network
# ---------------------------------------------------------------------------------------


def _accepts(host: TestHost, port: int) -> bool:
    """Whether `host` accepts TCP connections on its address and `port` (from inside its namespace)."""
    with host.namespace.entered(), socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host.address, port)) == 0


class Redis:
    """Debian's redis-server on a test host, listening on its address (no password, no persistence)."""

    def __init__(self, directory: Path, host: TestHost, port: int = REDIS_PORT):
        self.directory = directory
        self.host = host
        self.port = port
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start redis-server and wait until it accepts connections."""
        if not REDIS_BINARY.exists():
            raise ClusterError(f"{REDIS_BINARY} is missing: install Debian's redis-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            str(REDIS_BINARY),
            "--bind",
            self.host.address,
            "--port",
            str(self.port),
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.log_path),
        ]
        self._popen = subprocess.Popen(
            ["setpriv", "--pdeathsig=TERM", *self.host.namespace.wrap(argv)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not _accepts(self.host, self.port):
            if self._popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ClusterError(f"redis-server did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def log_path(self) -> Path:
        """redis-server's log file."""
        return self.directory / "redis.log"

    def log_tail(self, lines: int = 20) -> str:
        """The end of the log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop redis-server (a no-op when not running)."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        self._popen = None


@dataclasses.dataclass
class Backends:
    """PostgreSQL and Redis on `db.test`, reachable from every unit of the network."""

    host: TestHost
    postgres: PostgresServer
    redis: Redis

    @classmethod
    def start(cls, directory: Path, network: TestNetwork) -> Backends:
        """Add the `db.test` host and start both servers on its address."""
        host = network.add_host(DB_HOST)
        postgres = PostgresServer()
        redis = Redis(directory / "redis", host)
        try:
            postgres.host = host.address
            postgres.initdb()
            # Relation users log in over TCP from the units' addresses, with their passwords.
            postgres.set_hba([f"host all all {network.subnet} scram-sha-256", "host all all 127.0.0.1/32 trust"])
            # A thread's network namespace is inherited by the processes it starts.
            with host.namespace.entered():
                postgres.start()
            postgres.app_role = postgres.create_role(APP_ROLE_NAME, createdb=True)
            redis.start()
        except Exception:
            postgres.cleanup()
            redis.stop()
            raise
        return cls(host, postgres, redis)

    def provided_database(self) -> tuple[Role, str]:
        """A relation user and the database postgresql-k8s would create for it (default locale)."""
        role = self.postgres.create_role(unique_name("relation_id"), createdb=True)
        database = unique_name("synapse")
        self.postgres.provider_database(database, role)
        return role, database

    def database_relation(self, *, secret: bool = False) -> tuple[testing.Relation, list[testing.Secret]]:
        """A `database` relation as postgresql-k8s answers it (v0), and the secrets it shares.

        Plain `username` and `password` by default; with `secret`, in a `secret-user` Juju secret
        (granted to the application: every unit reads it).
        """
        role, database = self.provided_database()
        data = {
            "endpoints": f"{self.postgres.host}:{self.postgres.port}",
            "database": database,
            "version": str(self.postgres.version),
        }
        secrets = []
        if secret:
            user = testing.Secret({"username": role.name, "password": role.password})
            data["secret-user"] = user.id
            secrets.append(user)
        else:
            data.update({"username": role.name, "password": role.password})
        relation = testing.Relation(
            DATABASE_ENDPOINT, interface="postgresql_client", remote_app_name="postgresql-k8s", remote_app_data=data
        )
        return relation, secrets

    def redis_relation(self) -> testing.Relation:
        """A `redis` relation answered as redis-k8s does: hostname and port in its unit's databag."""
        return testing.Relation(
            REDIS_ENDPOINT,
            interface="redis",
            remote_app_name="redis-k8s",
            remote_units_data={0: {"hostname": self.host.address, "port": str(self.redis.port)}},
        )

    def stop(self) -> None:
        """Stop both servers (PostgreSQL's files are removed)."""
        self.redis.stop()
        self.postgres.cleanup()
