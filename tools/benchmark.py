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

Usage: python tools/benchmark.py [--runs N] [--import-runs N]   (tox -e bench)
"""

import argparse
import dataclasses
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "lib", ROOT / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import ops  # noqa: E402
import yaml  # noqa: E402
from ops import testing  # noqa: E402

from charm import SynapseCharm  # noqa: E402
from constants import CONTAINER_NAME, DATA_DIR, PEER_RELATION, SERVICE_NAME, SYNAPSE_PORT  # noqa: E402
from tests.pebble_calls import PebbleCalls, record_pebble_calls  # noqa: E402

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
        containers={container},
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


def import_times(runs: int) -> list[float]:
    """Seconds to `import charm` in a new interpreter each time (PYTHONPATH=src:lib), first one cold."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT / "src"), str(ROOT / "lib")))}
    code = "import time; t = time.perf_counter(); import charm; print(time.perf_counter() - t)"
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        ).stdout
        results.append(float(out.strip().splitlines()[-1]))
    return results


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


def baseline_times(runs: int) -> list[float]:
    """Seconds per update-status for NoOpCharm with the real charm's metadata, on the same kind of state."""
    meta, config, actions = (yaml.safe_load((ROOT / name).read_text()) for name in CHARM_YAML)
    ctx = testing.Context(NoOpCharm, meta=meta, config=config, actions=actions)
    samples = []
    with tempfile.TemporaryDirectory(prefix="synapse-bench-") as tmp:
        state = initial_state(Path(tmp))
        for _ in range(runs):
            began = time.perf_counter()
            state = ctx.run(ctx.on.update_status(), state)
            samples.append(time.perf_counter() - began)
    return samples


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
    """Run the benchmark; 1 when the restart count is not the expected one."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="sequences to run (default 20)")
    parser.add_argument("--import-runs", type=int, default=10, help="interpreters to time the import in")
    args = parser.parse_args()
    if args.runs < 1 or args.import_runs < 1:
        parser.error("--runs and --import-runs must be at least 1")

    if synapse_port_in_use():
        print(f"note: 127.0.0.1:{SYNAPSE_PORT} is in use; hook times include the charm's version query to it")
    began = time.perf_counter()
    times = import_times(args.import_runs)
    heaviest = heaviest_imports(5)
    results = [run_sequence() for _ in range(args.runs)]
    baseline = baseline_times(args.runs * UPDATE_STATUS_RUNS)
    print_timings(results, baseline)
    print_imports(times, heaviest)
    ok = print_restarts(results)
    print(f"\nbenchmark took {time.perf_counter() - began:.1f} s")
    if not ok:
        print(f"FAIL: expected {EXPECTED_STARTS} start and {EXPECTED_RESTARTS} restart in every sequence")
        return 1
    print(f"OK: {EXPECTED_STARTS} start and {EXPECTED_RESTARTS} restart in each of {len(results)} sequences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
