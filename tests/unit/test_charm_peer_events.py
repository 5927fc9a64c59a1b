"""Peer-relation events on a 3-unit deployment restart nothing unless the membership changed (issue 16).

The scenario of tools/benchmark.py (tests/peer_cluster.py), once, with one update-status per
unit and phase: CI runs what `tox -e bench` checks.
"""

from pathlib import Path

from constants import CONTAINER_NAME, PEER_ADDRESS_KEY, SERVICE_NAME
from tests.peer_cluster import UNCHANGED, peer_event_scenario


def test_peer_events_restart_only_when_membership_changes(tmp_path: Path) -> None:
    scenario = peer_event_scenario(tmp_path, update_status_runs=1)

    assert scenario.violations == []
    counts = scenario.restarts()
    assert counts["first hooks"] == {0: (1, 0), 1: (1, 0), 2: (1, 0)}
    assert counts["synapse/3 joins"] == {0: (0, 1), 1: (0, 1), 2: (0, 1), 3: (1, 0)}
    assert counts["synapse/2 departs"] == {0: (0, 1), 1: (0, 1), 3: (0, 1)}
    assert [phase for phase in counts if phase.startswith(UNCHANGED)] == [
        f"{UNCHANGED} (3 units)",
        f"{UNCHANGED} (4 units)",
        f"{UNCHANGED} (3 units after)",
    ]
    assert scenario.changes() == 0
    # What the recording sees when something does change: the newcomer publishes its address,
    # the others restart Synapse after the new homeserver.yaml.
    joined = [hook for hook in scenario.hooks if hook.phase == "synapse/3 joins"]
    assert any(PEER_ADDRESS_KEY in write for hook in joined if hook.unit == 3 for write in hook.writes)
    restarts = [hook for hook in joined if hook.restarts]
    assert {hook.unit for hook in restarts} == {0, 1, 2}
    assert all(hook.calls == [(CONTAINER_NAME, "restart", (SERVICE_NAME,))] for hook in restarts)
