"""Several units of the charm under ops.testing, one peer relation between them, and Juju in between.

No processes: each unit is an ops.testing State with its own Context (`unit_id`) and its own
/data directory (a host directory mounted into the synapse container). `PeerCluster` plays
Juju between the units:

- the application already runs on PostgreSQL (the main unit's database record is in its
  peer unit databag and mirrored by the leader in peer app data), Redis answers, the server
  secret exists, and every unit has published its address (`address`, its ingress address);
- after a hook, the unit's peer unit databag (and the leader's app databag) is copied into
  every other unit's view; `converge` runs relation-changed where a databag changed, until
  none does;
- a unit joins (`add_unit`: the others see it with Juju's databag only, then it runs its
  first hooks and publishes its address) or departs (`remove_unit`: the others run
  relation-departed without it).

Every hook is recorded as a `Hook`: its time, its Pebble lifecycle calls per container, the
layers added, files pushed, relation-data writes and secrets changed. `peer_event_scenario`
runs issue 16's benchmark scenario on three units and lists every expectation it violated;
tools/benchmark.py reports it with timings, tests/unit/test_charm_peer_events.py checks it.
"""

import contextlib
import dataclasses
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from unittest import mock

import ops
import yaml
from ops import testing

from charm import SynapseCharm
from constants import (
    CONFIG_PATH,
    CONTAINER_NAME,
    DATA_DIR,
    DATABASE_ENDPOINT,
    PEER_ADDRESS_KEY,
    PEER_DATABASE_KEY,
    PEER_MAIN_UNIT_KEY,
    PEER_RELATION,
    PEER_SECRET_ID_KEY,
    REDIS_ENDPOINT,
    SECRET_LABEL,
    SERVICE_NAME,
    WORKER_CONFIG_PATH,
)
from server_secrets import ServerSecrets
from state import DatabaseRecord
from tests.pebble_calls import record_pebble_calls
from topology import MAIN_INSTANCE, worker_name

APP_NAME = "synapse"
SERVER_NAME = "synapse.test"
SECRET_ID = "secret:cl0u5t3rb3nchs3cr3t0"
DB_HOST = "10.152.183.17"
REDIS_HOST = "10.152.183.30"
MAIN = 0  # synapse/0 leads and runs the main process
# The sidecar that reloads by exec'ing `nginx -s reload` (mocked to succeed) when the pod has it.
EXEC_MOCKS = {"nginx": ["nginx"]}
# A key no version of the charm reads, changed in the app and unit databags by the scenario.
UNRELATED_KEY = "benchmark-unrelated"
UPDATE_STATUS_RUNS = 5
# The phases of events that change no membership start with this.
UNCHANGED = "unchanged"

Databag = dict[str, str]
EventFactory = Callable[["SimUnit"], typing.Any]
# Synapse config files a restart depends on, as container paths.
SYNAPSE_FILES = (CONFIG_PATH, WORKER_CONFIG_PATH)


def unit_name(number: int) -> str:
    """The Juju name of unit `number`, e.g. synapse/1."""
    return f"{APP_NAME}/{number}"


def unit_address(number: int) -> str:
    """The pod address of unit `number`."""
    return f"10.1.1.{10 + number}"


def juju_databag(number: int) -> Databag:
    """What Juju puts in a unit's databag before its charm writes anything."""
    address = unit_address(number)
    return {"egress-subnets": f"{address}/32", "ingress-address": address, "private-address": address}


def _metadata() -> dict[str, typing.Any]:
    """The charm's metadata.yaml."""
    root = Path(__file__).resolve().parent.parent
    return dict(yaml.safe_load((root / "metadata.yaml").read_text()))


@dataclasses.dataclass
class Hook:
    """One hook on one unit and everything it changed."""

    phase: str
    unit: int
    label: str
    seconds: float
    calls: list[tuple[str, str, tuple[str, ...]]]  # (container, method, args), in order
    starts: int  # Synapse started while it was not running
    restarts: int  # Synapse restarted (restart, or replan) while it was running
    stops: int
    layers: list[str]
    pushes: list[str]
    writes: list[Databag]
    secrets_changed: bool

    @property
    def nothing(self) -> bool:
        """Whether the hook changed nothing at all."""
        return not (self.calls or self.layers or self.pushes or self.writes or self.secrets_changed)

    def describe(self) -> str:
        """What the hook changed, for a report line."""
        parts = [f"{container}:{name}({', '.join(args)})" for container, name, args in self.calls]
        parts += [f"layer {label}" for label in self.layers]
        parts += [f"push {path}" for path in self.pushes]
        parts += [f"relation-set {sorted(data)}" for data in self.writes]
        parts += ["a secret changed"] if self.secrets_changed else []
        return "; ".join(parts) or "nothing"


@dataclasses.dataclass
class SimUnit:
    """One unit: its number, Context, /data directory and last State."""

    number: int
    ctx: testing.Context[SynapseCharm]
    data_dir: Path
    state: testing.State

    @property
    def name(self) -> str:
        """The unit's Juju name."""
        return unit_name(self.number)

    def peer(self) -> testing.PeerRelation:
        """The peer relation as this unit sees it."""
        return typing.cast(testing.PeerRelation, self.state.get_relations(PEER_RELATION)[0])

    def file(self, path: PurePosixPath) -> bytes | None:
        """A file of the container's /data, as the charm left it."""
        host = self.data_dir / path.relative_to(DATA_DIR)
        return host.read_bytes() if host.exists() else None

    def homeserver(self) -> dict[str, typing.Any]:
        """Its parsed homeserver.yaml ({} when there is none)."""
        raw = self.file(CONFIG_PATH)
        return dict(yaml.safe_load(raw) or {}) if raw else {}

    def command(self) -> str | None:
        """The command of its Synapse service in the Pebble plan."""
        services = self.state.get_container(CONTAINER_NAME).plan.services
        return services[SERVICE_NAME].command if SERVICE_NAME in services else None

    def running(self) -> bool:
        """Whether its Synapse service runs."""
        return synapse_running(self.state)


def synapse_running(state: testing.State) -> bool:
    """Whether the (simulated) Pebble of `state` reports Synapse as running."""
    status = state.get_container(CONTAINER_NAME).service_statuses.get(SERVICE_NAME)
    return status == ops.pebble.ServiceStatus.ACTIVE


@contextlib.contextmanager
def _recording() -> Iterator[tuple[list[tuple[str, str, tuple[str, ...]]], list[str], list[str], list[Databag]]]:
    """Record lifecycle calls (with their container), layers, pushes and relation writes; call through."""
    calls: list[tuple[str, str, tuple[str, ...]]] = []
    layers: list[str] = []
    pushes: list[str] = []
    writes: list[Databag] = []
    original_push = ops.Container.push
    original_add_layer = ops.Container.add_layer
    original_update = ops.model._ModelBackend.update_relation_data

    def on_call(name: str, args: tuple[str, ...], container: ops.Container) -> None:
        calls.append((container.name, name, args))

    def push(self: ops.Container, path: str | PurePosixPath, *args: typing.Any, **kwargs: typing.Any) -> None:
        pushes.append(f"{self.name}:{path}")
        original_push(self, path, *args, **kwargs)

    def add_layer(self: ops.Container, label: str, *args: typing.Any, **kwargs: typing.Any) -> None:
        layers.append(f"{self.name}:{label}")
        original_add_layer(self, label, *args, **kwargs)

    def update(
        self: ops.model._ModelBackend, relation_id: int, entity: typing.Any, data: typing.Any, **kw: typing.Any
    ) -> None:
        writes.append(dict(data))
        original_update(self, relation_id, entity, data, **kw)

    with (
        record_pebble_calls(on_call),
        mock.patch.object(ops.Container, "push", push),
        mock.patch.object(ops.Container, "add_layer", add_layer),
        mock.patch.object(ops.model._ModelBackend, "update_relation_data", update),
    ):
        yield calls, layers, pushes, writes


def _classify(calls: list[tuple[str, str, tuple[str, ...]]], was_running: bool) -> tuple[int, int, int]:
    """(starts, restarts, stops) of Synapse among one hook's lifecycle calls, given whether it ran before."""
    starts = restarts = stops = 0
    running = was_running
    for container, name, _ in calls:
        if container != CONTAINER_NAME:
            continue
        if name == "stop":
            stops += 1 if running else 0
            running = False
        elif running:
            restarts += 1
        else:
            starts += 1
            running = True
    return starts, restarts, stops


class PeerCluster:
    """Units of one application on PostgreSQL and Redis, sharing a peer relation (see the module docstring)."""

    def __init__(self, base: Path, count: int):
        self.base = base
        self.meta = _metadata()
        self.hooks: list[Hook] = []
        self.phase = ""
        self.units: dict[int, SimUnit] = {}
        self.secrets = ServerSecrets.generate()
        self.database = testing.Relation(
            DATABASE_ENDPOINT,
            interface="postgresql_client",
            remote_app_name="postgresql-k8s",
            remote_app_data={
                "endpoints": f"{DB_HOST}:5432",
                "username": "relation_id_4",
                "password": "cluster-benchmark-password",
                "database": APP_NAME,
                "version": "16.6",
            },
        )
        self.redis = testing.Relation(
            REDIS_ENDPOINT,
            interface="redis",
            remote_app_name="redis-k8s",
            remote_units_data={0: {"hostname": REDIS_HOST, "port": "6379"}},
        )
        self._peer = testing.PeerRelation(PEER_RELATION)
        record = DatabaseRecord(source=f"{DATABASE_ENDPOINT}:{self.database.id}", use=APP_NAME, state="ready")
        self.record = record.model_dump_json()
        self.app_data: Databag = {
            PEER_SECRET_ID_KEY: SECRET_ID,
            PEER_MAIN_UNIT_KEY: unit_name(MAIN),
            PEER_DATABASE_KEY: self.record,
        }
        self.published: dict[int, Databag] = {}
        for number in range(count):
            data = {**juju_databag(number), PEER_ADDRESS_KEY: unit_address(number)}
            if number == MAIN:
                data[PEER_DATABASE_KEY] = self.record
            self.published[number] = data
        for number in range(count):
            self.units[number] = self._new_unit(number)
        self._pending: list[tuple[int, int]] = []
        self.unrelated_generation = 0

    # -- states ------------------------------------------------------------------------------

    def _containers(self, data_dir: Path) -> frozenset[testing.Container]:
        """Every container of metadata.yaml, connectable; /data of the synapse container on `data_dir`.

        Every other container gets its own directory at /etc/<name> (nginx's config lives there), so
        its files last from hook to hook as a pod's do.
        """
        containers = []
        for name in self.meta.get("containers") or {}:
            mounts = {}
            if name == CONTAINER_NAME:
                mounts = {"data": testing.Mount(location=str(DATA_DIR), source=data_dir)}
            else:
                etc = data_dir.parent / f"{data_dir.name}-{name}-etc"
                etc.mkdir(parents=True, exist_ok=True)
                mounts = {"etc": testing.Mount(location=f"/etc/{name}", source=etc)}
            execs = {testing.Exec(EXEC_MOCKS[name])} if name in EXEC_MOCKS else set()
            containers.append(testing.Container(name, can_connect=True, mounts=mounts, execs=execs))
        return frozenset(containers)

    def _networks(self, number: int) -> frozenset[testing.Network]:
        """The unit's bindings: its pod address on every endpoint."""
        address = unit_address(number)
        endpoints = [name for section in ("requires", "provides", "peers") for name in self.meta.get(section) or {}]
        return frozenset(
            testing.Network(
                endpoint,
                [testing.BindAddress([testing.Address(address)])],
                ingress_addresses=[address],
                egress_subnets=[f"{address}/32"],
            )
            for endpoint in endpoints
        )

    def _new_unit(self, number: int) -> SimUnit:
        """A fresh unit (new pod, empty volume) seeing the application's relations and secret."""
        data_dir = self.base / f"unit-{number}"
        data_dir.mkdir(parents=True)
        leader = number == MAIN
        secret = testing.Secret(
            self.secrets.to_content(),
            id=SECRET_ID,
            owner="app" if leader else None,
            label=SECRET_LABEL if leader else None,
        )
        state = testing.State(
            leader=leader,
            config={"server_name": SERVER_NAME},
            containers=self._containers(data_dir),
            relations={self._peer_view(number), self.database, self.redis},
            secrets={secret},
            networks=self._networks(number),
        )
        ctx = testing.Context(SynapseCharm, app_name=APP_NAME, unit_id=number)
        return SimUnit(number, ctx, data_dir, state)

    def _peer_view(self, number: int) -> testing.PeerRelation:
        """The peer relation as unit `number` sees the published databags (same relation id everywhere)."""
        return dataclasses.replace(
            self._peer,
            local_app_data=dict(self.app_data),
            local_unit_data=dict(self.published[number]),
            peers_data={other: dict(data) for other, data in self.published.items() if other != number},
        )

    def _sync_views(self) -> None:
        """Give every unit the published databags."""
        for unit in self.units.values():
            relations = {rel for rel in unit.state.relations if rel.id != self._peer.id}
            unit.state = dataclasses.replace(
                unit.state, relations=frozenset({*relations, self._peer_view(unit.number)})
            )

    # -- hooks -------------------------------------------------------------------------------

    def run(self, number: int, label: str, event: EventFactory) -> Hook:
        """Run one hook on unit `number`, record it, then publish what it wrote to the others."""
        unit = self.units[number]
        state_in = unit.state
        with _recording() as (calls, layers, pushes, writes):
            began = time.perf_counter()
            unit.state = unit.ctx.run(event(unit), state_in)
            seconds = time.perf_counter() - began
        starts, restarts, stops = _classify(calls, synapse_running(state_in))
        secrets_changed = unit.state.secrets != state_in.secrets
        hook = Hook(
            self.phase, number, label, seconds, calls, starts, restarts, stops, layers, pushes, writes, secrets_changed
        )
        self.hooks.append(hook)
        self._propagate(number)
        return hook

    def _propagate(self, number: int) -> None:
        """Publish unit `number`'s peer unit databag (and the leader's app databag); queue the others' hooks."""
        peer = self.units[number].peer()
        own: Databag = dict(peer.local_unit_data)
        changed = own != self.published[number]
        self.published[number] = own
        app_changed = False
        if number == MAIN:
            app: Databag = dict(peer.local_app_data)
            app_changed = app != self.app_data
            self.app_data = app
        if changed or app_changed:
            self._sync_views()
            for other in self.units:
                if other != number and (other, number) not in self._pending:
                    self._pending.append((other, number))

    def converge(self, limit: int = 60) -> None:
        """Run relation-changed where a peer's databag changed, until nothing changes (RuntimeError after `limit`)."""
        for _ in range(limit):
            if not self._pending:
                return
            target, remote = self._pending.pop(0)
            if target in self.units and remote in self.units:
                self.run(target, "peer-changed: a peer published (converging)", self.peer_changed(remote))
        raise RuntimeError(f"the peer databags did not settle within {limit} hooks: {self.published}")

    def peer_changed(self, remote: int) -> EventFactory:
        """relation-changed of the peer relation for a change of unit `remote`'s databag (or app data)."""
        return lambda unit: unit.ctx.on.relation_changed(unit.peer(), remote_unit=remote)

    def first_hooks(self, number: int) -> None:
        """What Juju runs on a new unit, in order, the peers' relation-changed included; then converge."""
        steps: list[tuple[str, EventFactory]] = [("install", lambda u: u.ctx.on.install())]
        steps += [
            (f"{endpoint} relation-created", self._created(endpoint))
            for endpoint in (PEER_RELATION, DATABASE_ENDPOINT, REDIS_ENDPOINT)
        ]
        if number == MAIN:
            steps.append(("leader-elected", lambda u: u.ctx.on.leader_elected()))
        steps += [("config-changed", lambda u: u.ctx.on.config_changed()), ("start", lambda u: u.ctx.on.start())]
        for name in self.meta.get("containers") or {}:
            steps.append((f"{name} pebble-ready", self._pebble_ready(name)))
        steps += [
            (f"{endpoint} relation-changed", self._remote_changed(endpoint))
            for endpoint in (DATABASE_ENDPOINT, REDIS_ENDPOINT)
        ]
        steps += [("peer-changed: first sight of a peer", self.peer_changed(other)) for other in self._others(number)]
        for label, event in steps:
            self.run(number, label, event)
        self.converge()

    @staticmethod
    def _created(endpoint: str) -> EventFactory:
        """relation-created of the unit's relation on `endpoint`."""
        return lambda unit: unit.ctx.on.relation_created(unit.state.get_relations(endpoint)[0])

    @staticmethod
    def _remote_changed(endpoint: str) -> EventFactory:
        """relation-changed of the unit's relation on `endpoint`, from the remote application's unit 0."""
        return lambda unit: unit.ctx.on.relation_changed(unit.state.get_relations(endpoint)[0], remote_unit=0)

    @staticmethod
    def _pebble_ready(container: str) -> EventFactory:
        """pebble-ready of `container`."""
        return lambda unit: unit.ctx.on.pebble_ready(unit.state.get_container(container))

    def _others(self, number: int) -> list[int]:
        """The other units, in order."""
        return [other for other in sorted(self.units) if other != number]

    # -- membership ----------------------------------------------------------------------------

    def add_unit(self, number: int) -> None:
        """Unit `number` joins: the others see it with Juju's databag, it runs its first hooks and publishes."""
        self.published[number] = juju_databag(number)
        existing = sorted(self.units)
        self.units[number] = self._new_unit(number)
        self._sync_views()
        for other in existing:
            self.run(other, "peer-joined", lambda u: u.ctx.on.relation_joined(u.peer(), remote_unit=number))
            self.run(other, "peer-changed: unit joined, no address yet", self.peer_changed(number))
        self.first_hooks(number)

    def remove_unit(self, number: int) -> None:
        """Unit `number` departs: it leaves every databag; the others run relation-departed; converge."""
        del self.units[number]
        del self.published[number]
        self._pending = [(target, remote) for target, remote in self._pending if number not in (target, remote)]
        self._sync_views()
        for other in sorted(self.units):
            self.run(
                other,
                "peer-departed",
                lambda u: u.ctx.on.relation_departed(u.peer(), remote_unit=number, departing_unit=number),
            )
        self.converge()

    # -- events that change nothing the charm reads ------------------------------------------------

    def unchanged_peer_events(self, update_status_runs: int = UPDATE_STATUS_RUNS) -> None:
        """On every unit: peer relation-changed events that change no membership, then update-status.

        Each peer rewrites its databag as it was; the main's database record (and the leader's
        mirror of it) is rewritten identically; a key the charm does not read changes in the
        app databag and in every unit databag (a new value each call).
        """
        self.unrelated_generation += 1
        self.published[MAIN][PEER_DATABASE_KEY] = self.record
        self.app_data[PEER_DATABASE_KEY] = self.record
        self._sync_views()
        for number in sorted(self.units):
            for other in self._others(number):
                self.run(number, "peer-changed: same address rewritten", self.peer_changed(other))
            remote = MAIN if number != MAIN else self._others(number)[0]
            self.run(number, "peer-changed: database record rewritten", self.peer_changed(remote))
        self.app_data[UNRELATED_KEY] = f"app-{self.unrelated_generation}"
        for other in self.units:
            self.published[other][UNRELATED_KEY] = f"unit-{self.unrelated_generation}"
        self._sync_views()
        for number in sorted(self.units):
            remote = MAIN if number != MAIN else self._others(number)[0]
            self.run(number, "peer-changed: unrelated app key", self.peer_changed(remote))
            for other in self._others(number):
                self.run(number, "peer-changed: unrelated unit key", self.peer_changed(other))
        for _ in range(update_status_runs):
            for number in sorted(self.units):
                self.run(number, "update-status", lambda u: u.ctx.on.update_status())
        self.converge()


# ---------------------------------------------------------------------------------------
# The scenario: peer events cause no restarts unless the membership changed
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Scenario:
    """Every hook of one scenario run and the expectations it violated."""

    hooks: list[Hook]
    violations: list[str]
    final: dict[int, testing.State]  # each remaining unit's last State (its /data is the caller's `base`)

    def timings(self) -> dict[str, list[float]]:
        """Seconds per hook label, labels in the order they first ran."""
        result: dict[str, list[float]] = {}
        for hook in self.hooks:
            result.setdefault(hook.label, []).append(hook.seconds)
        return result

    def restarts(self) -> dict[str, dict[int, tuple[int, int]]]:
        """Phase -> unit -> (Synapse starts, restarts) in that phase."""
        result: dict[str, dict[int, tuple[int, int]]] = {}
        for hook in self.hooks:
            starts, restarts = result.setdefault(hook.phase, {}).get(hook.unit, (0, 0))
            result[hook.phase][hook.unit] = (starts + hook.starts, restarts + hook.restarts)
        return result

    def changes(self, phase_prefix: str = UNCHANGED) -> int:
        """Lifecycle calls, layers, pushes, relation writes and changed secrets of the phases named so."""
        return sum(
            len(hook.calls) + len(hook.layers) + len(hook.pushes) + len(hook.writes) + hook.secrets_changed
            for hook in self.hooks
            if hook.phase.startswith(phase_prefix)
        )


def _snapshot(cluster: PeerCluster) -> dict[int, tuple[bytes | None, ...]]:
    """The Synapse config files of every unit."""
    return {number: tuple(unit.file(path) for path in SYNAPSE_FILES) for number, unit in cluster.units.items()}


class _Checker:
    """Collects the violated expectations of one scenario run."""

    def __init__(self, cluster: PeerCluster):
        self.cluster = cluster
        self.violations: list[str] = []

    def _phase_hooks(self, phase: str, number: int) -> list[Hook]:
        """The hooks unit `number` ran in `phase`."""
        return [hook for hook in self.cluster.hooks if hook.phase == phase and hook.unit == number]

    def fail(self, message: str) -> None:
        """Record a violated expectation of the current phase."""
        self.violations.append(f"{self.cluster.phase}: {message}")

    def nothing_changed(self) -> None:
        """Every hook of the current phase changed nothing."""
        for hook in self.cluster.hooks:
            if hook.phase == self.cluster.phase and not hook.nothing:
                self.fail(f"{unit_name(hook.unit)} {hook.label}: {hook.describe()}")

    def restarted(self, number: int, starts: int, restarts: int, new: bool = False) -> None:
        """Unit `number` started and restarted Synapse that many times in the current phase, and never stopped it.

        Other containers (the nginx sidecar) are started by a new unit only, never restarted.
        """
        hooks = self._phase_hooks(self.cluster.phase, number)
        got = (sum(h.starts for h in hooks), sum(h.restarts for h in hooks), sum(h.stops for h in hooks))
        if got != (starts, restarts, 0):
            calls = [f"{h.label}: {h.describe()}" for h in hooks if h.calls]
            self.fail(
                f"{unit_name(number)} started/restarted/stopped Synapse {got[0]}/{got[1]}/{got[2]} times, "
                f"expected {starts}/{restarts}/0 ({'; '.join(calls) or 'no lifecycle calls'})"
            )
        for hook in hooks:
            if not new and any(container != CONTAINER_NAME for container, _, _ in hook.calls):
                self.fail(f"{unit_name(number)} {hook.label}: {hook.describe()}")

    def membership_changed(self, before: dict[int, tuple[bytes | None, ...]], new: int | None = None) -> None:
        """Each unit that stayed restarted once (its homeserver.yaml changed); a new unit started once."""
        after = _snapshot(self.cluster)
        for number in sorted(self.cluster.units):
            if number == new:
                self.restarted(number, 1, 0, new=True)
                continue
            changed = before.get(number) != after[number]
            if before.get(number, (None,))[0] == after[number][0]:
                self.fail(f"homeserver.yaml of {unit_name(number)} did not change")
            self.restarted(number, 0, 1 if changed else 0)

    def deployment(self) -> None:
        """One homeserver.yaml everywhere, listing the units there are; the main and workers running, Active."""
        units = self.cluster.units
        configs = {number: unit.homeserver() for number, unit in units.items()}
        if any(config != configs[MAIN] for config in configs.values()):
            self.fail("the units' homeserver.yaml differ")
        expected = {MAIN_INSTANCE} | {worker_name(unit.name) for number, unit in units.items() if number != MAIN}
        got = set(configs[MAIN].get("instance_map") or {})
        if got != expected:
            self.fail(f"instance_map lists {sorted(got)}, expected {sorted(expected)}")
        for number, unit in units.items():
            module = "homeserver" if number == MAIN else "generic_worker"
            active = isinstance(unit.state.unit_status, ops.ActiveStatus)
            if not (active and unit.running() and f"synapse.app.{module} " in (unit.command() or "")):
                self.fail(
                    f"{unit.name} does not run synapse.app.{module}: {unit.command()!r}, {unit.state.unit_status}"
                )


def peer_event_scenario(base: Path, update_status_runs: int = UPDATE_STATUS_RUNS) -> Scenario:
    """Issue 16's benchmark on a fresh 3-unit deployment; the violated expectations in `violations`.

    1. first hooks of synapse/0 (leader, main), synapse/1 and synapse/2 (workers): one start each;
    2. peer relation-changed events with unchanged membership (a peer rewrote its address, the
       database record rewritten identically, an unrelated key in app and unit data), then
       update-status: no lifecycle call, layer, push, relation write or secret change;
    3. synapse/3 joins and publishes its address: one restart on each other unit, one start on it;
    4. the unchanged events again on the four units: nothing;
    5. synapse/2 departs: one restart on each remaining unit;
    6. the unchanged events again on the three units: nothing.
    """
    cluster = PeerCluster(base, 3)
    check = _Checker(cluster)
    cluster.phase = "first hooks"
    for number in sorted(cluster.units):
        cluster.first_hooks(number)
        check.restarted(number, 1, 0, new=True)
    check.deployment()
    steps: list[tuple[str, Callable[[], None], int | None]] = [
        (f"{UNCHANGED} (3 units)", lambda: cluster.unchanged_peer_events(update_status_runs), None),
        ("synapse/3 joins", lambda: cluster.add_unit(3), 3),
        (f"{UNCHANGED} (4 units)", lambda: cluster.unchanged_peer_events(update_status_runs), None),
        ("synapse/2 departs", lambda: cluster.remove_unit(2), None),
        (f"{UNCHANGED} (3 units after)", lambda: cluster.unchanged_peer_events(update_status_runs), None),
    ]
    for phase, step, new in steps:
        cluster.phase = phase
        before = _snapshot(cluster)
        step()
        if phase.startswith(UNCHANGED):
            check.nothing_changed()
        else:
            check.membership_changed(before, new)
        check.deployment()
    return Scenario(cluster.hooks, check.violations, {n: unit.state for n, unit in cluster.units.items()})
