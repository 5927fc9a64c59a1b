#!/usr/bin/env python3
"""Benchmark the charm: hook times, cold import time, and Synapse starts/restarts.

Runs the real SynapseCharm under ops.testing (a leader unit with its peer relation and the
synapse container, whose /data is a temporary directory), through the sequence

    install, leader-elected, pebble-ready, config-changed x3 (same config),
    update-status x5, config-changed with log_level=DEBUG (a real change)

feeding each output State back as the next input. Pebble lifecycle calls are recorded with
tests/pebble_calls.record_pebble_calls(). The expected figures are one start and then
exactly one restart (for the real change); the script exits 1 when any run differs, so it
doubles as a check.

It also times a no-op hook (update-status on a running unit) with the observability relations
(metrics-endpoint, grafana-dashboard, logging with two Loki units) all related against none,
and the one-off cost those relations add to a hook process (importing cosl).

Peer-relation events on a 3-unit deployment (issue 16; tests/peer_cluster.py plays Juju between
the units): synapse/0 (leader, main) and the workers synapse/1 and synapse/2 run their first
hooks (one start each); then peer relation-changed events that change no membership (a peer
rewrote its address, the database record rewritten identically, a key the charm does not read
changed in app and unit data) and update-status must make no Pebble lifecycle call, layer, push,
relation write or secret change; synapse/3 joins and publishes its address, later synapse/2
departs: each remaining unit restarts Synapse exactly once (its homeserver.yaml changed), and
the same unchanged events afterwards change nothing. Any violated expectation exits 1 too.

Usage: python tools/benchmark.py [--runs N] [--import-runs N] [--peer-runs N]   (tox -e bench)
"""

import argparse
import dataclasses
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "lib", ROOT / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import ops  # noqa: E402
import yaml  # noqa: E402
from ops import testing  # noqa: E402

from charm import SynapseCharm  # noqa: E402
from constants import (  # noqa: E402
    CONTAINER_NAME,
    DATA_DIR,
    GRAFANA_DASHBOARD_ENDPOINT,
    LOGGING_ENDPOINT,
    METRICS_ENDPOINT,
    NGINX_CONTAINER,
    PEER_RELATION,
    SERVICE_NAME,
    SYNAPSE_PORT,
)
from tests.pebble_calls import PebbleCalls, record_pebble_calls  # noqa: E402
from tests.peer_cluster import MAIN, Scenario, peer_event_scenario, unit_name  # noqa: E402
from tests.unit.conftest import record_side_effects  # noqa: E402

SERVER_NAME = "synapse.test"
SAME_CONFIG_RUNS = 3
UPDATE_STATUS_RUNS = 5
EXPECTED_STARTS = 1
EXPECTED_RESTARTS = 1
CHARM_YAML = ("metadata.yaml", "config.yaml", "actions.yaml")

# The events of one sequence, in order: (label used in the timing table, how many times).
SEQUENCE = (
    ("install", 1),
    ("leader-elected", 1),
    ("pebble-ready", 1),
    ("config-changed (same)", SAME_CONFIG_RUNS),
    ("update-status", UPDATE_STATUS_RUNS),
    ("config-changed (log_level=DEBUG)", 1),
)


@dataclasses.dataclass
class SequenceResult:
    """What one run of the sequence measured."""

    timings: dict[str, list[float]]
    starts: int
    restarts: int
    calls: list[tuple[str, str, tuple[str, ...]]]
    final_status: str


def initial_state(data_dir: Path) -> testing.State:
    """A fresh leader unit: peer relation, connectable container with /data mounted on `data_dir`."""
    container = testing.Container(
        CONTAINER_NAME,
        can_connect=True,
        mounts={"data": testing.Mount(location=str(DATA_DIR), source=data_dir)},
    )
    return testing.State(
        leader=True,
        config={"server_name": SERVER_NAME},
        containers={container, testing.Container(NGINX_CONTAINER, can_connect=False)},
        relations={testing.PeerRelation(endpoint=PEER_RELATION)},
    )


def _is_running(state: testing.State) -> bool:
    """Whether the (simulated) Pebble reports Synapse as running in `state`."""
    container = state.get_container(CONTAINER_NAME)
    return container.service_statuses.get(SERVICE_NAME) == ops.pebble.ServiceStatus.ACTIVE


def _classify(calls: PebbleCalls, was_running: bool) -> tuple[int, int]:
    """(starts, restarts) among one hook's lifecycle calls, given whether Synapse ran before it."""
    starts = restarts = 0
    running = was_running
    for name, _ in calls.calls:
        if name == "stop":
            running = False
        elif name in ("replan", "start", "restart"):
            if running:
                restarts += 1
            else:
                starts += 1
                running = True
    return starts, restarts


def input_state(label: str, state: testing.State) -> testing.State:
    """The input state for the event `label`: the previous output, with the real config change applied."""
    if label.startswith("config-changed (log_level"):
        return dataclasses.replace(state, config={**state.config, "log_level": "DEBUG"})
    return state


def run_event(ctx: testing.Context[SynapseCharm], label: str, state: testing.State) -> testing.State:
    """Run the ops.testing event named by `label` on `state`; return the output state."""
    if label == "install":
        return ctx.run(ctx.on.install(), state)
    if label == "leader-elected":
        return ctx.run(ctx.on.leader_elected(), state)
    if label == "pebble-ready":
        return ctx.run(ctx.on.pebble_ready(state.get_container(CONTAINER_NAME)), state)
    if label == "update-status":
        return ctx.run(ctx.on.update_status(), state)
    return ctx.run(ctx.on.config_changed(), state)


def run_sequence() -> SequenceResult:
    """Run the whole sequence once on a fresh unit and a fresh /data."""
    ctx = testing.Context(SynapseCharm)
    timings: dict[str, list[float]] = {label: [] for label, _ in SEQUENCE}
    starts = restarts = 0
    all_calls: list[tuple[str, str, tuple[str, ...]]] = []
    with tempfile.TemporaryDirectory(prefix="synapse-bench-") as tmp:
        state = initial_state(Path(tmp))
        for label, times in SEQUENCE:
            for _ in range(times):
                state_in = input_state(label, state)
                was_running = _is_running(state_in)
                with record_pebble_calls() as calls:
                    began = time.perf_counter()
                    state = run_event(ctx, label, state_in)
                    timings[label].append(time.perf_counter() - began)
                hook_starts, hook_restarts = _classify(calls, was_running)
                starts += hook_starts
                restarts += hook_restarts
                all_calls.extend((label, name, args) for name, args in calls.calls)
        status = state.unit_status
        return SequenceResult(timings, starts, restarts, all_calls, f"{status.name}: {status.message}")


def _fresh_import_times(runs: int, module: str, before: str = "") -> list[float]:
    """Seconds to import `module` in a new interpreter each time (PYTHONPATH=src:lib), after `before`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT / "src"), str(ROOT / "lib")))}
    code = f"import time{', ' + before if before else ''}; t = time.perf_counter(); import {module}; "
    code += "print(time.perf_counter() - t)"
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        ).stdout
        results.append(float(out.strip().splitlines()[-1]))
    return results


def import_times(runs: int) -> list[float]:
    """Seconds to `import charm` in a new interpreter each time, first one cold."""
    return _fresh_import_times(runs, "charm")


def heaviest_imports(count: int) -> list[tuple[str, float]]:
    """The top-level modules that take longest to import (cumulative ms), from -X importtime."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT / "src"), str(ROOT / "lib")))}
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import charm"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    totals: dict[str, float] = {}
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|", 2))
        if not cumulative.isdigit() or name.startswith(" "):
            continue
        top = name.strip()
        if not name.startswith(" ") and "." not in top:
            totals[top] = max(totals.get(top, 0.0), int(cumulative) / 1000)
    return sorted(totals.items(), key=lambda item: item[1], reverse=True)[:count]


def synapse_port_in_use() -> bool:
    """Whether something listens on Synapse's port on loopback.

    ops.testing reports the ready check as up, so the charm asks 127.0.0.1 for Synapse's
    version in every hook: refused at once normally, answered by a live server otherwise.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", SYNAPSE_PORT)) == 0


def _ms(seconds: float) -> str:
    """Seconds as milliseconds for the table."""
    return f"{seconds * 1000:8.2f}"


class NoOpCharm(ops.CharmBase):
    """A charm that observes nothing: what ops.testing itself costs per event."""


def baseline_times(runs: int, state: testing.State | None = None) -> list[float]:
    """Seconds per update-status for NoOpCharm with the real charm's metadata, on `state` or the same kind of state."""
    meta, config, actions = (yaml.safe_load((ROOT / name).read_text()) for name in CHARM_YAML)
    ctx = testing.Context(NoOpCharm, meta=meta, config=config, actions=actions)
    samples = []
    with tempfile.TemporaryDirectory(prefix="synapse-bench-") as tmp:
        state = state or initial_state(Path(tmp))
        for _ in range(runs):
            began = time.perf_counter()
            state = ctx.run(ctx.on.update_status(), state)
            samples.append(time.perf_counter() - began)
    return samples


def observability_relations() -> set[testing.Relation]:
    """Prometheus, Grafana and two Loki units, as they answer."""
    loki = {
        unit: {"endpoint": json.dumps({"url": f"http://loki-{unit}.loki-endpoints.cos.svc:3100/loki/api/v1/push"})}
        for unit in (0, 1)
    }
    return {
        testing.Relation(METRICS_ENDPOINT, remote_app_name="prometheus", remote_units_data={0: {}}),
        testing.Relation(GRAFANA_DASHBOARD_ENDPOINT, remote_app_name="grafana", remote_units_data={0: {}}),
        testing.Relation(LOGGING_ENDPOINT, remote_app_name="loki", remote_units_data=loki),
    }


@dataclasses.dataclass
class NoOpResult:
    """No-op hooks of the charm, and of NoOpCharm on the same final state (what ops.testing costs)."""

    charm: list[float]
    ops_testing: list[float]
    changes: int  # Pebble lifecycle calls, layers added and relation writes of the timed hooks

    @property
    def own(self) -> float:
        """The charm's own median time per hook: the hook less ops.testing's share."""
        return statistics.median(self.charm) - statistics.median(self.ops_testing)


def _timed(ctx: testing.Context[typing.Any], state: testing.State) -> tuple[testing.State, float, int]:
    """Run update-status once: the output state, the seconds it took and the changes it made."""
    with record_side_effects() as effects:
        began = time.perf_counter()
        state = ctx.run(ctx.on.update_status(), state)
        took = time.perf_counter() - began
    return state, took, len(effects.pebble.calls) + len(effects.layers) + len(effects.relation_writes)


def noop_times(runs: int) -> tuple[NoOpResult, NoOpResult]:
    """Seconds per update-status on a running unit without, and with, the observability relations.

    The first hooks (untimed) start Synapse and publish; the timed ones must change nothing.
    NoOpCharm runs on the same states (whose databags hold what the charm published) for
    ops.testing's share. The four kinds of hook are interleaved so that load on the machine
    weighs on all of them alike.
    """
    ctx = testing.Context(SynapseCharm)
    meta, config, actions = (yaml.safe_load((ROOT / name).read_text()) for name in CHARM_YAML)
    noop_ctx = testing.Context(NoOpCharm, meta=meta, config=config, actions=actions)
    results = (NoOpResult([], [], 0), NoOpResult([], [], 0))
    with tempfile.TemporaryDirectory(prefix="synapse-bench-") as tmp:
        states = []
        for index, extra in enumerate((set(), observability_relations())):
            data = Path(tmp) / str(index)
            data.mkdir()
            state = initial_state(data)
            state = dataclasses.replace(state, relations=frozenset({*state.relations, *extra}))
            state = ctx.run(ctx.on.pebble_ready(state.get_container(CONTAINER_NAME)), state)
            states.append(ctx.run(ctx.on.update_status(), state))
        for _ in range(runs):
            for index, result in enumerate(results):
                states[index], took, changes = _timed(ctx, states[index])
                result.charm.append(took)
                result.changes += changes
                _, took, _ = _timed(noop_ctx, states[index])
                result.ops_testing.append(took)
    return results


def cosl_import_times(runs: int) -> list[float]:
    """Seconds to `import cosl` in a new interpreter that has imported the charm (what a related hook adds once)."""
    return _fresh_import_times(runs, "cosl", before="charm")


def print_observability(none: NoOpResult, related: NoOpResult, cosl: list[float], charm: float) -> None:
    """No-op hook time with all observability relations against none, and the per-process import cost."""
    print(f"\nNo-op update-status, Prometheus + Grafana + Loki related vs none ({len(none.charm)} hooks each, ms)")
    print(f"  {'':<22} {'hook':>8} {'ops.testing':>12} {'charm own':>10}")
    for label, result in (("none related", none), ("all three related", related)):
        hook, harness = statistics.median(result.charm), statistics.median(result.ops_testing)
        print(f"  {label:<22} {_ms(hook)} {_ms(harness):>12} {_ms(result.own):>10}")
    hook_ratio = statistics.median(related.charm) / statistics.median(none.charm)
    print(f"  ratio, whole hook (median)        {hook_ratio:6.2f}   (target <= 1.2, ops.testing included)")
    print(f"  ratio, charm's own time           {related.own / none.own:6.2f}")
    fresh = (charm + related.own + statistics.median(cosl)) / (charm + none.own)
    print(f"  import cosl once per hook process {_ms(statistics.median(cosl))}   (median of {len(cosl)} interpreters)")
    print(f"  ratio, fresh hook process         {fresh:6.2f}   (charm import + charm's own time, + cosl when related)")
    print(f"  changes made by the no-op hooks   {none.changes + related.changes:6d}   (Pebble calls, layers, writes)")


def print_timings(results: list[SequenceResult], baseline: list[float]) -> None:
    """Median and max hook time per event over every run, and the ops.testing baseline."""
    print(f"\nHook times over {len(results)} sequences (ms)")
    print(f"  {'event':<34} {'n':>4} {'median':>8} {'max':>8}")
    for label, _ in SEQUENCE:
        samples = [t for result in results for t in result.timings[label]]
        print(f"  {label:<34} {len(samples):>4} {_ms(statistics.median(samples))} {_ms(max(samples))}")
    label = "(ops.testing alone: no-op charm)"
    print(f"  {label:<34} {len(baseline):>4} {_ms(statistics.median(baseline))} {_ms(max(baseline))}")


def print_imports(times: list[float], heaviest: list[tuple[str, float]]) -> None:
    """Cold and warm import times of the charm module."""
    print(f"\nImport of the charm module in a new interpreter ({len(times)} runs, ms)")
    print(f"  first (cold cache) {_ms(times[0])}")
    print(f"  median             {_ms(statistics.median(times))}")
    print(f"  min                {_ms(min(times))}")
    print("  heaviest top-level imports (cumulative, ms, one -X importtime run):")
    for name, ms in heaviest:
        print(f"    {name:<24} {ms:8.2f}")


# The unit whose peer relation-changed the no-op charm replays for ops.testing's share.
PEER_BASELINE_UNIT = 1


@dataclasses.dataclass
class PeerResult:
    """One run of the 3-unit peer-event scenario, and ops.testing's time for a peer event on its final state."""

    scenario: Scenario
    ops_testing: list[float]


def run_peer_scenario(baseline_runs: int) -> PeerResult:
    """The peer-event scenario on fresh units and volumes; then NoOpCharm's peer relation-changed on synapse/1."""
    meta, config, actions = (yaml.safe_load((ROOT / name).read_text()) for name in CHARM_YAML)
    ctx = testing.Context(NoOpCharm, meta=meta, config=config, actions=actions, unit_id=PEER_BASELINE_UNIT)
    with tempfile.TemporaryDirectory(prefix="synapse-bench-peers-") as tmp:
        scenario = peer_event_scenario(Path(tmp))
        state = scenario.final[PEER_BASELINE_UNIT]
        peer = state.get_relations(PEER_RELATION)[0]
        samples = []
        for _ in range(baseline_runs):
            began = time.perf_counter()
            ctx.run(ctx.on.relation_changed(peer, remote_unit=MAIN), state)
            samples.append(time.perf_counter() - began)
    return PeerResult(scenario, samples)


def print_peer_timings(results: list[PeerResult]) -> None:
    """Median and max hook time per peer-scenario event over every run, and the ops.testing baseline."""
    print(f"\nHook times on a 3-unit deployment (synapse/3 joins, synapse/2 departs), {len(results)} runs (ms)")
    print(f"  {'event':<48} {'n':>4} {'median':>8} {'max':>8}")
    labels: dict[str, list[float]] = {}
    for result in results:
        for label, samples in result.scenario.timings().items():
            labels.setdefault(label, []).extend(samples)
    for label, samples in labels.items():
        print(f"  {label:<48} {len(samples):>4} {_ms(statistics.median(samples))} {_ms(max(samples))}")
    baseline = [t for result in results for t in result.ops_testing]
    label = "(ops.testing alone: no-op charm, peer-changed)"
    print(f"  {label:<48} {len(baseline):>4} {_ms(statistics.median(baseline))} {_ms(max(baseline))}")


def print_peer_restarts(results: list[PeerResult]) -> list[str]:
    """Synapse starts/restarts per unit and phase (run 1); the violated expectations of every run."""
    first = results[0].scenario.restarts()
    units = sorted({unit for counts in first.values() for unit in counts})
    print("\nSynapse starts/restarts per unit and phase, 3-unit deployment (run 1)")
    print(f"  {'phase':<28}" + "".join(f" {unit_name(unit):>10}" for unit in units))
    for phase, counts in first.items():
        cells = "".join(f" {'/'.join(map(str, counts[unit])) if unit in counts else '-':>10}" for unit in units)
        print(f"  {phase:<28}{cells}")
    print("  expected: first hooks 1/0 each; no-membership-change phases 0/0; a join or departure 0/1 on")
    print("  every unit that stays (1/0 on the new one)")
    same = sum(1 for result in results[1:] if result.scenario.restarts() == first)
    if len(results) > 1:
        print(f"  runs 2-{len(results)}: {same} of {len(results) - 1} counted the same as run 1")
    changes = sum(result.scenario.changes() for result in results)
    print(f"  changes made by the no-membership-change hooks {changes:6d}   (Pebble calls, layers, pushes, writes)")
    violations: list[str] = []
    for number, result in enumerate(results, 1):
        violations += [f"run {number}: {violation}" for violation in result.scenario.violations]
    for violation in violations:
        print(f"  VIOLATED {violation}")
    return violations


def print_restarts(results: list[SequenceResult]) -> bool:
    """Starts and restarts per sequence; True when every run matched the expectation."""
    print("\nSynapse starts and restarts per sequence")
    print(f"  {'':<10} {'starts':>7} {'restarts':>9}")
    print(f"  {'expected':<10} {EXPECTED_STARTS:>7} {EXPECTED_RESTARTS:>9}")
    ok = True
    for number, result in enumerate(results, 1):
        good = result.starts == EXPECTED_STARTS and result.restarts == EXPECTED_RESTARTS
        ok = ok and good
        if not good or number == 1 or result.calls != results[0].calls:
            mark = "" if good else "   <-- unexpected"
            print(f"  {'run ' + str(number):<10} {result.starts:>7} {result.restarts:>9}{mark}")
            for label, name, args in result.calls:
                print(f"      {label}: {name}({', '.join(args)})")
    same = sum(1 for result in results[1:] if result.calls == results[0].calls)
    if len(results) > 1:
        print(f"  runs 2-{len(results)}: {same} of {len(results) - 1} made the same calls as run 1")
    print(f"  final unit status: {results[-1].final_status}")
    return ok


def main() -> int:
    """Run the benchmark; 1 when a restart count or any other expectation is not the expected one."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="sequences to run (default 20)")
    parser.add_argument("--import-runs", type=int, default=10, help="interpreters to time the import in")
    parser.add_argument("--peer-runs", type=int, default=3, help="3-unit peer-event scenarios to run (default 3)")
    args = parser.parse_args()
    if args.runs < 1 or args.import_runs < 1 or args.peer_runs < 1:
        parser.error("--runs, --import-runs and --peer-runs must be at least 1")

    if synapse_port_in_use():
        print(f"note: 127.0.0.1:{SYNAPSE_PORT} is in use; hook times include the charm's version query to it")
    began = time.perf_counter()
    times = import_times(args.import_runs)
    heaviest = heaviest_imports(5)
    results = [run_sequence() for _ in range(args.runs)]
    baseline = baseline_times(args.runs * UPDATE_STATUS_RUNS)
    none, related = noop_times(args.runs * UPDATE_STATUS_RUNS)
    cosl = cosl_import_times(args.import_runs)
    peers = [run_peer_scenario(UPDATE_STATUS_RUNS) for _ in range(args.peer_runs)]
    print_timings(results, baseline)
    print_peer_timings(peers)
    print_imports(times, heaviest)
    print_observability(none, related, cosl, statistics.median(times))
    changes = none.changes + related.changes
    violations = print_peer_restarts(peers)
    ok = print_restarts(results)
    print(f"\nbenchmark took {time.perf_counter() - began:.1f} s")
    failed = False
    if not ok:
        print(f"FAIL: expected {EXPECTED_STARTS} start and {EXPECTED_RESTARTS} restart in every sequence")
        failed = True
    if changes:
        print(f"FAIL: the no-op hooks with the observability relations made {changes} changes")
        failed = True
    if violations:
        print(f"FAIL: {len(violations)} expectations of the 3-unit peer-event scenario violated (VIOLATED above)")
        failed = True
    if failed:
        return 1
    print(f"OK: {EXPECTED_STARTS} start and {EXPECTED_RESTARTS} restart in each of {len(results)} sequences")
    print(
        f"OK: 3-unit peer events restart nothing unless membership changed, then each remaining unit once "
        f"({len(peers)} runs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
