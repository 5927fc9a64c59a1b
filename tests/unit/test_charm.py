"""The charm's reconcile, statuses, idempotence and register-user action (src/charm.py)."""

import dataclasses
import typing
from collections.abc import Callable

import ops
import pytest
import yaml
from ops import testing

from constants import (
    CHECK_READY,
    CONFIG_PATH,
    CONTAINER_NAME,
    LOG_CONFIG_PATH,
    PEER_ADDRESS_KEY,
    PEER_MAIN_UNIT_KEY,
    PEER_RELATION,
    PEER_SECRET_ID_KEY,
    SERVICE_NAME,
    SIGNING_KEY_PATH,
    SQLITE_DIR,
    SQLITE_PATH,
    SYNAPSE_VERSION,
)
from server_secrets import ServerSecrets
from tests.pebble_calls import record_pebble_calls
from tests.unit.conftest import CharmEnv, FakeSynapse, alive_check, ready_check, record_side_effects, synapse_mac
from workload.service import pebble_layer

ACTIVE = ops.pebble.ServiceStatus.ACTIVE
INACTIVE = ops.pebble.ServiceStatus.INACTIVE
WAITING_CONTAINER = ops.WaitingStatus("waiting for the synapse container")
WAITING_LEADER = ops.WaitingStatus("waiting for the leader to create the server's secrets")
WAITING_READY = ops.WaitingStatus("waiting for Synapse to become ready")
STANDBY = ops.BlockedStatus(
    "standby: Synapse's main process runs on the leader; relate `juju integrate synapse postgresql-k8s` and "
    "`juju integrate synapse redis-k8s` for workers"
)
STANDBY_BEHIND_UNIT_1 = ops.BlockedStatus(
    "standby: Synapse's main process runs on synapse/1; relate `juju integrate synapse postgresql-k8s` and "
    "`juju integrate synapse redis-k8s` for workers"
)
STORAGE = testing.Storage("data")


def service(state: testing.State) -> ops.pebble.ServiceStatus | None:
    """Synapse's service status in `state`, None if it has no such service."""
    return state.get_container(CONTAINER_NAME).service_statuses.get(SERVICE_NAME)


def failed_check() -> testing.CheckInfo:
    """The ready check, down after three failures."""
    return ready_check(successes=4, status=ops.pebble.CheckStatus.DOWN)


# --- starting states -----------------------------------------------------------------------


def no_container(env: CharmEnv) -> testing.State:
    """The container's Pebble is not reachable yet."""
    return env.state(container=env.container(can_connect=False), storages={STORAGE})


def no_config(env: CharmEnv) -> testing.State:
    """server_name left at its empty default."""
    return env.state({"server_name": ""}, storages={STORAGE})


def fresh_leader(env: CharmEnv) -> testing.State:
    """A new leader with an empty volume."""
    return env.state(storages={STORAGE})


def fresh_follower(env: CharmEnv) -> testing.State:
    """A non-leader before the leader has published the secret."""
    return env.state(leader=False, storages={STORAGE})


def follower(env: CharmEnv) -> testing.State:
    """A non-leader that can read the leader's published secret."""
    content = ServerSecrets.generate().to_content()
    secret = testing.Secret(content, id="secret:d2adf00dd2adf00dd2ad")
    peer = testing.PeerRelation(PEER_RELATION, local_app_data={PEER_SECRET_ID_KEY: secret.id})
    return env.state(leader=False, peer=peer, secrets={secret}, storages={STORAGE})


def running(env: CharmEnv) -> testing.State:
    """A leader whose Synapse runs and has passed its ready check."""
    return env.ready(dataclasses.replace(env.started(), storages=frozenset({STORAGE})))


def restarted_pod(env: CharmEnv) -> testing.State:
    """A configured unit whose pod was replaced: files on the volume, Synapse not started yet."""
    started = env.started()
    container = dataclasses.replace(
        started.get_container(CONTAINER_NAME),
        service_statuses={SERVICE_NAME: INACTIVE},
        check_infos=frozenset({alive_check(), ready_check(successes=0)}),
    )
    return dataclasses.replace(started, containers=frozenset({container}), storages=frozenset({STORAGE}))


STARTS: dict[str, Callable[[CharmEnv], testing.State]] = {
    "no-container": no_container,
    "no-config": no_config,
    "fresh-leader": fresh_leader,
    "fresh-follower": fresh_follower,
    "follower": follower,
    "running": running,
    "restarted-pod": restarted_pod,
}

Event = Callable[[CharmEnv, testing.State], tuple[typing.Any, testing.State]]


def plain(name: str) -> Event:
    """An event with no arguments."""
    return lambda env, state: (getattr(env.ctx.on, name)(), state)


def peer_event(name: str) -> Event:
    """A peer relation event."""

    def make(env: CharmEnv, state: testing.State) -> tuple[typing.Any, testing.State]:
        relations = state.get_relations(PEER_RELATION)
        relation = relations[0] if relations else testing.PeerRelation(PEER_RELATION)
        if not isinstance(relation, testing.PeerRelation):
            raise TypeError(relation)
        if name == "relation_changed":
            # A second unit joined and wrote to its databag.
            peer = dataclasses.replace(relation, peers_data={1: {"ingress-address": "10.1.2.3"}})
            others = {r for r in state.relations if r.id != relation.id}
            state = dataclasses.replace(state, relations=frozenset({*others, peer}))
            return env.ctx.on.relation_changed(peer, remote_unit=1), state
        if not relations:
            state = dataclasses.replace(state, relations=frozenset({*state.relations, relation}))
        return getattr(env.ctx.on, name)(relation), state

    return make


def pebble_ready(env: CharmEnv, state: testing.State) -> tuple[typing.Any, testing.State]:
    """pebble-ready for the synapse container."""
    return env.ctx.on.pebble_ready(state.get_container(CONTAINER_NAME)), state


def check_event(name: str, info: Callable[[], testing.CheckInfo]) -> Event:
    """A Pebble check event, with the state's ready check set to match it."""

    def make(env: CharmEnv, state: testing.State) -> tuple[typing.Any, testing.State]:
        check = info()
        state = env.with_checks(state, alive_check(), check)
        return getattr(env.ctx.on, name)(state.get_container(CONTAINER_NAME), check), state

    return make


def storage_attached(env: CharmEnv, state: testing.State) -> tuple[typing.Any, testing.State]:
    """The data storage attached."""
    return env.ctx.on.storage_attached(STORAGE), state


def secret_changed(env: CharmEnv, state: testing.State) -> tuple[typing.Any, testing.State]:
    """A new revision of the server secret (seen by a non-leader)."""
    secret = next(iter(state.secrets))
    return env.ctx.on.secret_changed(secret), state


EVENTS: dict[str, Event] = {
    "install": plain("install"),
    "start": plain("start"),
    "leader-elected": plain("leader_elected"),
    "config-changed": plain("config_changed"),
    "upgrade-charm": plain("upgrade_charm"),
    "update-status": plain("update_status"),
    "pebble-ready": pebble_ready,
    "peers-relation-created": peer_event("relation_created"),
    "peers-relation-changed": peer_event("relation_changed"),
    "storage-attached": storage_attached,
    "secret-changed": secret_changed,
    "check-failed": check_event("pebble_check_failed", failed_check),
    "check-recovered": check_event("pebble_check_recovered", lambda: ready_check(successes=7)),
}
HAS_CHECKS = {"running", "restarted-pod"}


def combinations() -> list[tuple[str, str]]:
    """Every (start, event) pair Juju can deliver."""
    pairs = []
    for start in STARTS:
        for event in EVENTS:
            if event.startswith("check-") and start not in HAS_CHECKS:
                continue  # Pebble only reports checks it runs
            if event == "secret-changed" and start != "follower":
                continue  # the owner never gets secret-changed; others have no secret yet
            if event == "leader-elected" and start in ("fresh-follower", "follower"):
                continue  # only the leader sees leader-elected
            pairs.append((start, event))
    return pairs


# Starting states whose status does not depend on the event.
START_STATUS: dict[str, ops.StatusBase] = {
    "no-container": WAITING_CONTAINER,
    "no-config": ops.BlockedStatus(""),  # message checked separately
    "fresh-follower": WAITING_LEADER,
    "follower": STANDBY,
}


def expected_status(start: str, event: str) -> ops.StatusBase:
    """The status each starting state should end in."""
    if start in START_STATUS:
        return START_STATUS[start]
    if event == "check-failed" or (start == "restarted-pod" and event != "check-recovered"):
        return WAITING_READY
    return ops.ActiveStatus()


@pytest.mark.parametrize(("start", "event"), combinations())
def test_lifecycle(env: CharmEnv, start: str, event: str) -> None:
    state = STARTS[start](env)
    juju_event, state = EVENTS[event](env, state)

    out = env.ctx.run(juju_event, state)

    expected = expected_status(start, event)
    if isinstance(expected, ops.BlockedStatus) and start == "no-config":
        assert isinstance(out.unit_status, ops.BlockedStatus)
        assert "invalid config server_name" in out.unit_status.message
        assert "`juju config synapse server_name=...`" in out.unit_status.message
    else:
        assert out.unit_status == expected
    # A follower keeps the server's files current but runs no Synapse (only the leader does).
    should_run = start in ("fresh-leader", "running", "restarted-pod")
    assert (service(out) == ACTIVE) is should_run
    assert env.host_path(CONFIG_PATH).exists() is (should_run or start == "follower")
    if start == "fresh-leader":
        (peer,) = out.get_relations(PEER_RELATION)
        assert peer.local_app_data == {PEER_SECRET_ID_KEY: env.server_secret(out).id, PEER_MAIN_UNIT_KEY: "synapse/0"}


# --- readiness -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (ready_check(successes=1), ops.ActiveStatus()),
        (ready_check(successes=250), ops.ActiveStatus()),
        (ready_check(successes=0), WAITING_READY),
        (ready_check(successes=3, status=ops.pebble.CheckStatus.DOWN), WAITING_READY),
        (ready_check(successes=3, status=ops.pebble.CheckStatus.INACTIVE), WAITING_READY),
        # Pebble before 1.23 does not count successes: an up check is trusted then.
        (ready_check(successes=None), ops.ActiveStatus()),
    ],
    ids=["one-success", "many", "not-yet-run", "down", "inactive", "old-pebble"],
)
def test_active_needs_the_ready_check_to_have_passed(
    env: CharmEnv, check: testing.CheckInfo, expected: ops.StatusBase
) -> None:
    state = env.with_checks(env.started(), alive_check(), check)
    out = env.run(env.ctx.on.update_status(), state)
    assert out.unit_status == expected


def test_not_active_without_a_ready_check(env: CharmEnv) -> None:
    """A running service whose plan has no ready check (an older layer) is not reported Active."""
    out = env.started()
    layer = pebble_layer()
    del layer["checks"]
    container = dataclasses.replace(
        out.get_container(CONTAINER_NAME), layers={CONTAINER_NAME: ops.pebble.Layer(layer)}, check_infos=frozenset()
    )
    state = dataclasses.replace(out, containers=frozenset({container}))
    # An action collects the status without reconciling the layer first.
    with pytest.raises(testing.ActionFailed) as excinfo:
        env.run(env.ctx.on.action("register-user", params={"username": "Not Valid"}), state)
    assert excinfo.value.state is not None
    assert excinfo.value.state.unit_status == WAITING_READY


def test_maintenance_while_synapse_is_not_running(env: CharmEnv) -> None:
    """Statuses collected without a reconcile (an action) say Synapse is starting."""
    state = restarted_pod(env)
    with pytest.raises(testing.ActionFailed) as excinfo:
        env.run(env.ctx.on.action("register-user", params={"username": "alice"}), state)
    assert excinfo.value.state is not None
    assert excinfo.value.state.unit_status == ops.MaintenanceStatus("starting Synapse")


def test_workload_version_from_synapse(env: CharmEnv, fake_synapse: FakeSynapse) -> None:
    out = env.run(env.ctx.on.update_status(), env.ready(env.started()))
    assert out.workload_version == SYNAPSE_VERSION
    assert ("GET", "/_matrix/federation/v1/version") in fake_synapse.paths()


def test_workload_version_not_asked_before_ready(env: CharmEnv, fake_synapse: FakeSynapse) -> None:
    state = dataclasses.replace(env.ready(env.started(), successes=0), workload_version="")
    fake_synapse.requests.clear()
    out = env.run(env.ctx.on.update_status(), state)
    assert out.workload_version == ""
    assert fake_synapse.requests == []


def test_workload_version_when_synapse_does_not_answer(env: CharmEnv) -> None:
    out = env.run(env.ctx.on.update_status(), env.ready(env.started()))
    assert out.workload_version == ""
    assert out.unit_status == ops.ActiveStatus()


def test_workload_version_when_synapse_answers_without_one(env: CharmEnv, fake_synapse: FakeSynapse) -> None:
    fake_synapse.script("GET", "/_matrix/federation/v1/version", 200, '{"server": {}}')
    out = env.run(env.ctx.on.update_status(), env.ready(env.started()))
    assert out.workload_version == ""
    fake_synapse.script("GET", "/_matrix/federation/v1/version", 500, '{"errcode": "M_UNKNOWN", "error": "x"}')
    out = env.run(env.ctx.on.update_status(), env.ready(env.started()))
    assert out.workload_version == ""


# --- idempotence -------------------------------------------------------------------------


def test_first_pebble_ready_starts_synapse_once(env: CharmEnv) -> None:
    with record_side_effects() as effects:
        out = env.pebble_ready(env.state())
    assert effects.pebble.calls == [("replan", ())]
    assert effects.layers == [CONTAINER_NAME]
    assert service(out) == ACTIVE
    # The leader records itself as the main unit, publishes its address and the server secrets' id.
    assert len(effects.relation_writes) == 3


def test_repeated_hooks_change_nothing(env: CharmEnv) -> None:
    out = env.ready(env.started(config={"log_level": "debug", "report_stats": True}))
    files = {path: env.read(path) for path in (CONFIG_PATH, LOG_CONFIG_PATH, SIGNING_KEY_PATH)}
    with record_side_effects() as effects:
        for _ in range(3):
            out = env.run(env.ctx.on.config_changed(), out)
        for _ in range(5):
            out = env.run(env.ctx.on.update_status(), out)
    assert effects.pebble.calls == []
    assert effects.pushes == []
    assert effects.layers == []
    assert effects.relation_writes == []
    assert out.unit_status == ops.ActiveStatus()
    assert {path: env.read(path) for path in files} == files
    assert len(out.secrets) == 1


def test_log_level_change_restarts_once(env: CharmEnv) -> None:
    out = env.ready(env.started())
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.config_changed(), env.with_config(out, log_level="warning"))
        out = env.run(env.ctx.on.update_status(), out)
    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]
    assert effects.pushes == [str(LOG_CONFIG_PATH)]
    assert effects.layers == []
    assert yaml.safe_load(env.read(LOG_CONFIG_PATH))["root"]["level"] == "WARNING"


def test_config_change_restarts_once(env: CharmEnv) -> None:
    out = env.ready(env.started())
    with record_side_effects() as effects:
        env.run(env.ctx.on.config_changed(), env.with_config(out, max_upload_size="1G", block_non_admin_invites=True))
    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]
    assert effects.pushes == [str(CONFIG_PATH)]
    doc = yaml.safe_load(env.read(CONFIG_PATH))
    assert (doc["max_upload_size"], doc["block_non_admin_invites"]) == ("1G", True)


def test_layer_change_replans_once(env: CharmEnv) -> None:
    out = env.started()
    old = pebble_layer()
    old["services"][SERVICE_NAME]["command"] = "python -m synapse.app.homeserver --config-path /data/old.yaml"
    del old["checks"]
    container = dataclasses.replace(
        out.get_container(CONTAINER_NAME),
        layers={CONTAINER_NAME: ops.pebble.Layer(old)},
        check_infos=frozenset(),
    )
    state = dataclasses.replace(out, containers=frozenset({container}))
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.upgrade_charm(), state)
    assert effects.pebble.calls == [("replan", ())]
    assert effects.layers == [CONTAINER_NAME]
    assert effects.pushes == []
    plan = out.get_container(CONTAINER_NAME).plan
    assert plan.services[SERVICE_NAME].command == pebble_layer()["services"][SERVICE_NAME]["command"]
    assert CHECK_READY in plan.checks


def test_invalid_config_after_a_good_one(env: CharmEnv) -> None:
    out = env.ready(env.started())
    before = env.read(CONFIG_PATH)
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.config_changed(), env.with_config(out, max_upload_size="lots"))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "invalid config max_upload_size" in out.unit_status.message
    assert "`juju config synapse max_upload_size=...`" in out.unit_status.message
    assert effects.nothing, effects
    assert env.read(CONFIG_PATH) == before
    assert service(out) == ACTIVE  # the last good configuration keeps serving


def test_blocked_unit_restarts_synapse_on_the_last_good_config(env: CharmEnv) -> None:
    state = restarted_pod(env)
    before = env.read(CONFIG_PATH)
    with record_side_effects() as effects:
        out = env.pebble_ready(env.with_config(state, log_level="chatty"))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "invalid config log_level" in out.unit_status.message
    assert effects.pebble.calls == [("replan", ())]
    assert effects.pushes == []
    assert env.read(CONFIG_PATH) == before
    assert service(out) == ACTIVE


def test_blocked_fresh_unit_starts_nothing(env: CharmEnv) -> None:
    with record_side_effects() as effects:
        out = env.pebble_ready(env.state({"server_name": "not a name"}))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    # Only the leader's record of itself as the main unit (src/main_unit.py) and its address: no file, no Pebble call.
    assert effects.relation_writes == [{PEER_MAIN_UNIT_KEY: "synapse/0"}, {PEER_ADDRESS_KEY: "192.0.2.0"}]
    assert (effects.pebble.calls, effects.pushes, effects.layers) == ([], [], [])
    assert service(out) is None
    assert list(env.data_dir.iterdir()) == []


def test_recovering_from_blocked(env: CharmEnv) -> None:
    out = env.ready(env.started())
    out = env.run(env.ctx.on.config_changed(), env.with_config(out, ip_range_whitelist="10.0.0.0/33"))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.config_changed(), env.with_config(out, ip_range_whitelist="10.0.0.0/8"))
    assert out.unit_status == ops.ActiveStatus()
    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]
    assert yaml.safe_load(env.read(CONFIG_PATH))["ip_range_whitelist"] == ["10.0.0.0/8"]


# --- server_name lock --------------------------------------------------------------------


def with_database(env: CharmEnv) -> None:
    """Create the SQLite database file Synapse would have written."""
    env.host_path(SQLITE_DIR).mkdir(parents=True, exist_ok=True)
    env.host_path(SQLITE_PATH).write_bytes(b"SQLite format 3\x00")


def test_server_name_cannot_change_once_there_is_data(env: CharmEnv) -> None:
    out = env.ready(env.started(config={"server_name": "a.example.com"}))
    with_database(env)
    before = env.read(CONFIG_PATH)
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.config_changed(), env.with_config(out, server_name="b.example.com"))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    message = out.unit_status.message
    assert "a.example.com" in message and "b.example.com" in message
    assert "`juju config synapse server_name=a.example.com`" in message
    assert effects.nothing, effects
    assert env.read(CONFIG_PATH) == before
    assert service(out) == ACTIVE


def test_server_name_lock_survives_a_pod_restart(env: CharmEnv) -> None:
    state = restarted_pod(env)
    with_database(env)
    out = env.pebble_ready(env.with_config(state, server_name="other.example"))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "example.com" in out.unit_status.message
    assert yaml.safe_load(env.read(CONFIG_PATH))["server_name"] == "example.com"
    assert service(out) == ACTIVE


def test_server_name_lock_compares_normalised_names(env: CharmEnv) -> None:
    out = env.ready(env.started(config={"server_name": "a.example.com"}))
    with_database(env)
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.config_changed(), env.with_config(out, server_name=" A.Example.COM. "))
    assert out.unit_status == ops.ActiveStatus()
    assert effects.nothing, effects


def test_server_name_may_change_before_there_is_data(env: CharmEnv) -> None:
    out = env.ready(env.started(config={"server_name": "a.example.com"}))
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.config_changed(), env.with_config(out, server_name="b.example.com"))
    assert out.unit_status == ops.ActiveStatus()
    doc = yaml.safe_load(env.read(CONFIG_PATH))
    assert (doc["server_name"], doc["public_baseurl"]) == ("b.example.com", "https://b.example.com/")
    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]


# --- register-user: failures that need no live Synapse -----------------------------------


def register(env: CharmEnv, state: testing.State, **params: typing.Any) -> str:
    """Run register-user expecting it to fail; return the failure message."""
    with pytest.raises(testing.ActionFailed) as excinfo:
        env.run(env.ctx.on.action("register-user", params=params), state)
    return excinfo.value.message


@pytest.mark.parametrize(
    ("username", "fragment"),
    [
        ("Alice", "'Alice' is not a valid username: use lower-case letters"),
        ("al ice", "is not a valid username"),
        ("_alice", "usernames may not begin with '_'"),
        ("@alice:otherserver", "belongs to 'otherserver', not to this server (example.com)"),
        ("@alice", "is not a Matrix user ID"),
        ("a" * 250, "too long for a Matrix user ID"),
        ("", "the username is empty"),
    ],
)
def test_register_user_rejects_bad_usernames(env: CharmEnv, username: str, fragment: str) -> None:
    state = env.ready(env.started())
    assert fragment in register(env, state, username=username)


def test_register_user_rejects_a_long_password(env: CharmEnv, fake_synapse: FakeSynapse) -> None:
    state = env.ready(env.started())
    fake_synapse.requests.clear()
    message = register(env, state, username="alice", password="p" * 513)
    assert "at most 512 characters" in message
    assert fake_synapse.requests == []


def test_register_user_when_synapse_is_not_running(env: CharmEnv) -> None:
    message = register(env, restarted_pod(env), username="alice")
    assert message == "Synapse is not ready yet; retry once the unit is active"


def test_register_user_when_synapse_does_not_answer(env: CharmEnv) -> None:
    message = register(env, env.ready(env.started()), username="alice")
    assert message == "Synapse is not ready yet; retry once the unit is active"


def test_register_user_with_invalid_config(env: CharmEnv) -> None:
    state = env.with_config(env.ready(env.started()), server_name="")
    assert "invalid config server_name" in register(env, state, username="alice")


def test_register_user_before_the_secrets_exist(env: CharmEnv) -> None:
    message = register(env, env.state(leader=False), username="alice")
    assert "waiting for the leader to create the server's secrets" in message


# --- register-user against a Synapse-like server -----------------------------------------


def shared_secret(env: CharmEnv, state: testing.State) -> str:
    """The registration shared secret of the leader's Juju secret."""
    return ServerSecrets.from_content(dict(env.server_secret(state).tracked_content)).registration_shared_secret


def test_register_user_generates_a_password(env: CharmEnv, fake_synapse: FakeSynapse) -> None:
    state = env.ready(env.started())
    fake_synapse.shared_secret = shared_secret(env, state)

    env.run(env.ctx.on.action("register-user", params={"username": "@alice:example.com"}), state)

    results = env.ctx.action_results or {}
    assert results["user-id"] == "@alice:example.com"
    assert len(results["password"]) >= 24
    assert fake_synapse.users["@alice:example.com"] == (results["password"], False)
    body = fake_synapse.requests[-1].json()
    assert body["mac"] == synapse_mac(fake_synapse.shared_secret, body["nonce"], "alice", results["password"], False)


def test_register_admin_with_a_given_password(env: CharmEnv, fake_synapse: FakeSynapse) -> None:
    state = env.ready(env.started())
    fake_synapse.shared_secret = shared_secret(env, state)

    env.run(env.ctx.on.action("register-user", params={"username": "bob", "password": "s3cret", "admin": True}), state)

    assert env.ctx.action_results == {"user-id": "@bob:example.com"}
    assert fake_synapse.users["@bob:example.com"] == ("s3cret", True)


def test_register_existing_user(env: CharmEnv, fake_synapse: FakeSynapse) -> None:
    state = env.ready(env.started())
    fake_synapse.shared_secret = shared_secret(env, state)
    fake_synapse.users["@alice:example.com"] = ("old", False)
    assert register(env, state, username="alice") == "user @alice:example.com already exists"
    assert fake_synapse.users["@alice:example.com"] == ("old", False)


def test_register_refused_by_synapse(env: CharmEnv, fake_synapse: FakeSynapse) -> None:
    state = env.ready(env.started())
    fake_synapse.shared_secret = "a different secret"
    message = register(env, state, username="alice")
    assert "HMAC incorrect" in message and "M_FORBIDDEN" in message
    assert fake_synapse.users == {}


def test_register_when_synapse_answers_garbage(env: CharmEnv, fake_synapse: FakeSynapse) -> None:
    state = env.ready(env.started())
    fake_synapse.script("GET", "/_synapse/admin/v1/register", 200, "<html>maintenance</html>", content_type="text/html")
    assert register(env, state, username="alice") == (
        "Synapse's answer to GET /_synapse/admin/v1/register is not JSON; check Synapse's logs (`juju debug-log`) "
        "and retry"
    )


# --- one main process: only the recorded main unit runs Synapse (src/main_unit.py) ----------


def taken_over(state: testing.State, main: str = "synapse/1") -> testing.State:
    """`state` as a non-leader after the leader recorded another unit (`main`) as the main unit."""
    (peer,) = (relation for relation in state.relations if relation.endpoint == PEER_RELATION)
    assert isinstance(peer, testing.PeerRelation)
    moved = dataclasses.replace(
        peer, local_app_data={**peer.local_app_data, PEER_MAIN_UNIT_KEY: main}, peers_data={1: {}}
    )
    return dataclasses.replace(state, leader=False, relations=(state.relations - {peer}) | {moved})


def test_unit_that_loses_leadership_keeps_running_as_the_main(env: CharmEnv) -> None:
    state = dataclasses.replace(running(env), leader=False)
    with record_side_effects() as effects:
        out = env.ctx.run(env.ctx.on.update_status(), state)
    assert out.unit_status == ops.ActiveStatus()
    assert effects.nothing, effects
    assert service(out) == ACTIVE


def test_unit_that_is_no_longer_the_main_stops_synapse_and_keeps_its_files(env: CharmEnv) -> None:
    state = taken_over(running(env))
    before = env.host_path(CONFIG_PATH).read_text()

    with record_pebble_calls() as calls:
        out = env.ctx.run(env.ctx.on.update_status(), state)

    assert out.unit_status == STANDBY_BEHIND_UNIT_1
    assert calls.calls == [("stop", (SERVICE_NAME,))]
    assert service(out) != ACTIVE
    assert env.host_path(CONFIG_PATH).read_text() == before


def test_actions_on_a_standby_unit_say_to_use_the_leader(env: CharmEnv) -> None:
    state = taken_over(running(env))

    with pytest.raises(testing.ActionFailed) as excinfo:
        env.ctx.run(env.ctx.on.action("register-user", params={"username": "alice"}), state)

    assert excinfo.value.message == f"the unit is not ready for this action: {STANDBY_BEHIND_UNIT_1.message}"
