"""Which unit runs Synapse's main process (src/main_unit.py), and the promote-main action."""

import dataclasses

import ops
import pytest
from ops import testing

from constants import CONTAINER_NAME, PEER_DATABASE_KEY, PEER_MAIN_UNIT_KEY, PEER_RELATION, SERVICE_NAME
from database_lifecycle import DatabaseRecord
from main_unit import PROMOTE_ACTION
from tests.unit.conftest import CharmEnv, record_side_effects

ACTIVE = ops.pebble.ServiceStatus.ACTIVE
READY = DatabaseRecord(source="database:1", use="synapse", state="ready").model_dump_json()


def peer(state: testing.State) -> testing.PeerRelation:
    """The peer relation of `state`."""
    (relation,) = state.get_relations(PEER_RELATION)
    assert isinstance(relation, testing.PeerRelation)
    return relation


def app_data(state: testing.State) -> dict[str, str]:
    """The peer app databag of `state`."""
    return dict(peer(state).local_app_data or {})


def with_peer(
    state: testing.State, *, leader: bool, app: dict[str, str] | None = None, units: dict[int, dict[str, str]]
) -> testing.State:
    """`state` with the peer app data updated by `app` and the other units `units` (id → databag)."""
    relation = peer(state)
    moved = dataclasses.replace(relation, local_app_data={**relation.local_app_data, **(app or {})}, peers_data=units)
    return dataclasses.replace(state, leader=leader, relations=(state.relations - {relation}) | {moved})


def running(state: testing.State) -> bool:
    """Whether Synapse's service runs in `state`."""
    return state.get_container(CONTAINER_NAME).service_statuses.get(SERVICE_NAME) == ACTIVE


def test_leader_records_itself_and_runs(env: CharmEnv) -> None:
    out = env.started()
    assert app_data(out)[PEER_MAIN_UNIT_KEY] == "synapse/0"
    assert running(out)


def test_no_op_hook_writes_nothing(env: CharmEnv) -> None:
    out = env.started()
    with record_side_effects() as effects:
        env.run(env.ctx.on.update_status(), out)
    assert effects.relation_writes == []


def test_main_kept_across_a_leader_change(env: CharmEnv) -> None:
    # unit 0 runs the main; unit 1 becomes the leader while unit 0 is still there.
    out = env.started()
    state = with_peer(out, leader=True, app={PEER_MAIN_UNIT_KEY: "synapse/1"}, units={1: {}})
    with record_side_effects() as effects:
        after = env.run(env.ctx.on.leader_elected(), state)
    assert app_data(after)[PEER_MAIN_UNIT_KEY] == "synapse/1"
    assert effects.relation_writes == []
    assert not running(after)
    assert isinstance(after.unit_status, ops.BlockedStatus)
    assert after.unit_status.message.startswith("standby: Synapse's main process runs on synapse/1")
    # And the old leader, still the main, keeps running without a restart.
    old = with_peer(out, leader=False, units={1: {}})
    with record_side_effects() as effects:
        kept = env.run(env.ctx.on.update_status(), old)
    assert running(kept)
    assert effects.pebble.calls == []


def test_departed_main_is_replaced_by_the_leader_with_the_data_in_postgresql(env: CharmEnv) -> None:
    out = env.started()
    state = with_peer(out, leader=True, app={PEER_MAIN_UNIT_KEY: "synapse/1", PEER_DATABASE_KEY: READY}, units={})
    after = env.run(env.ctx.on.update_status(), state)
    assert app_data(after)[PEER_MAIN_UNIT_KEY] == "synapse/0"


def sqlite_main_gone(env: CharmEnv) -> testing.State:
    """The leader (unit 0) after the main unit 1, which held the SQLite database, departed."""
    out = env.started()
    return with_peer(out, leader=True, app={PEER_MAIN_UNIT_KEY: "synapse/1"}, units={})


def test_departed_sqlite_main_is_not_replaced(env: CharmEnv) -> None:
    after = env.run(env.ctx.on.update_status(), sqlite_main_gone(env))
    assert app_data(after)[PEER_MAIN_UNIT_KEY] == "synapse/1"
    assert not running(after)
    assert isinstance(after.unit_status, ops.BlockedStatus)
    assert "synapse/1 is gone" in after.unit_status.message
    assert f"`juju run synapse/leader {PROMOTE_ACTION}`" in after.unit_status.message


def test_promote_main_takes_over_a_departed_sqlite_main(env: CharmEnv) -> None:
    after = env.run(env.ctx.on.action(PROMOTE_ACTION), sqlite_main_gone(env))
    assert env.ctx.action_results == {"main-unit": "synapse/0"}
    assert app_data(after)[PEER_MAIN_UNIT_KEY] == "synapse/0"
    assert running(after)


def test_promote_main_is_refused_while_the_main_is_alive(env: CharmEnv) -> None:
    state = with_peer(env.started(), leader=True, app={PEER_MAIN_UNIT_KEY: "synapse/1"}, units={1: {}})
    with pytest.raises(testing.ActionFailed) as excinfo:
        env.run(env.ctx.on.action(PROMOTE_ACTION), state)
    assert "synapse/1 is still part of the application" in excinfo.value.message


def test_promote_main_is_refused_on_a_non_leader(env: CharmEnv) -> None:
    state = with_peer(sqlite_main_gone(env), leader=False, units={})
    with pytest.raises(testing.ActionFailed) as excinfo:
        env.run(env.ctx.on.action(PROMOTE_ACTION), state)
    assert excinfo.value.message == f"run {PROMOTE_ACTION} on the leader unit"


@pytest.mark.parametrize("members", [2, 3, 5])
def test_never_two_mains(env: CharmEnv, members: int) -> None:
    # Every unit of an N-unit application, each as leader or not: only the recorded main runs Synapse.
    out = env.started()
    main = f"synapse/{members - 1}"
    mains = []
    for unit in range(members):
        for leader in (False, True):
            others: dict[int, dict[str, str]] = {other: {} for other in range(members) if other != unit}
            state = with_peer(out, leader=leader, app={PEER_MAIN_UNIT_KEY: main}, units=others)
            ctx = testing.Context(
                env.ctx.charm_spec.charm_type,
                meta=env.ctx.charm_spec.meta,
                config=env.ctx.charm_spec.config,
                actions=env.ctx.charm_spec.actions,
                unit_id=unit,
            )
            after = ctx.run(ctx.on.update_status(), state)
            assert app_data(after)[PEER_MAIN_UNIT_KEY] == main
            if running(after):
                mains.append(unit)
    # The recorded unit runs (as leader and not); no other does.
    assert mains == [members - 1, members - 1]


def test_leader_mirrors_the_main_units_database_record(env: CharmEnv) -> None:
    state = with_peer(
        env.started(), leader=True, app={PEER_MAIN_UNIT_KEY: "synapse/1"}, units={1: {PEER_DATABASE_KEY: READY}}
    )
    after = env.run(env.ctx.on.update_status(), state)
    assert app_data(after)[PEER_DATABASE_KEY] == READY
    with record_side_effects() as effects:
        env.run(env.ctx.on.update_status(), after)
    assert PEER_DATABASE_KEY not in {key for write in effects.relation_writes for key in write}
