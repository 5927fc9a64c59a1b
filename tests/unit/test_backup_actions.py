"""The backup actions (src/backup_actions.py) in ops.testing: params, inputs, and every failure path.

The in-container script is replaced by scripted answers (its own behaviour is tested in
tests/unit/workload/test_backup_script.py and against real S3 in tests/workload/test_backup.py).
"""

import dataclasses
import json
import typing

import ops
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ops import testing

import backup_actions
from constants import BACKUP_ENDPOINT, CONTAINER_NAME, SIGNING_KEY_PATH
from server_secrets import ServerSecrets
from tests.unit.conftest import SERVER_NAME, CharmEnv
from workload.backup import BackupError, parse_answer, parse_backups

BACKUP_ID = "20260101T120000Z-1a2b3c"
S3_DATA = {"access-key": "a", "secret-key": "b", "bucket": "bkt", "endpoint": "http://127.0.0.1:9"}
MANIFEST = {
    "format": 1,
    "id": BACKUP_ID,
    "created": "2026-01-01T12:00:00+00:00",
    "server_name": SERVER_NAME,
    "database": "sqlite",
    "contents": ["identity", "media_store", "sqlite-database"],
    "size": 1234,
}

Answer = dict[str, typing.Any] | BackupError
Calls = list[tuple[str, dict[str, typing.Any]]]


def scripted(monkeypatch: pytest.MonkeyPatch, answers: dict[str, Answer]) -> Calls:
    """Replace the script runner: each command answers as given (commands not given answer {})."""
    calls: Calls = []

    def run(_container: ops.Container, command: str, request: dict[str, typing.Any]) -> dict[str, typing.Any]:
        calls.append((command, request))
        answer = answers.get(command, {})
        if isinstance(answer, BackupError):
            raise answer
        return answer

    monkeypatch.setattr(backup_actions, "run_script", run)
    return calls


PASSPHRASE = "a passphrase long enough"


def backup_state(env: CharmEnv, passphrase: str | None = PASSPHRASE) -> testing.State:
    """A running leader related to a bucket, with backup_passphrase set to a user secret."""
    secrets = set()
    config: dict[str, str] = {}
    if passphrase is not None:
        secret = testing.Secret({"passphrase": passphrase})
        secrets.add(secret)
        config["backup_passphrase"] = secret.id
    relation = testing.Relation(BACKUP_ENDPOINT, remote_app_data=S3_DATA)
    return env.started(config, relations={relation}, secrets=secrets)


def run_action(env: CharmEnv, state: testing.State, name: str, **params: str) -> dict[str, typing.Any]:
    """Run an action; its results."""
    env.run(env.ctx.on.action(name, params=params), state)
    return dict(env.ctx.action_results or {})


def failure(env: CharmEnv, state: testing.State, name: str, **params: str) -> str:
    """Run an action that must fail; its message."""
    with pytest.raises(testing.ActionFailed) as exc:
        env.run(env.ctx.on.action(name, params=params), state)
    return exc.value.message


ACTIONS: dict[str, dict[str, str]] = {
    "create-backup": {},
    "list-backups": {},
    "restore-backup": {"id": BACKUP_ID},
    "delete-backup": {"id": BACKUP_ID},
}


@pytest.mark.parametrize("name", list(ACTIONS))
def test_without_the_relation_every_action_says_how_to_relate(env: CharmEnv, name: str) -> None:
    message = failure(env, env.started(), name, **ACTIONS[name])
    assert "juju integrate synapse:backup s3-integrator" in message


@pytest.mark.parametrize("name", list(ACTIONS))
def test_before_the_provider_answers_every_action_waits(env: CharmEnv, name: str) -> None:
    state = env.started(relations={testing.Relation(BACKUP_ENDPOINT)})
    assert "waiting for the s3-integrator" in failure(env, state, name, **ACTIONS[name])


@pytest.mark.parametrize("name", ["create-backup", "restore-backup"])
def test_without_a_passphrase_it_says_how_to_set_one(env: CharmEnv, name: str) -> None:
    message = failure(env, backup_state(env, passphrase=None), name, **ACTIONS[name])
    assert "backup_passphrase is not set" in message
    assert "juju add-secret" in message and "juju config synapse backup_passphrase=" in message


def test_a_short_passphrase_is_refused(env: CharmEnv) -> None:
    assert "at least 12 characters" in failure(env, backup_state(env, passphrase="short"), "create-backup")


def test_a_missing_passphrase_secret_is_named(env: CharmEnv) -> None:
    state = env.with_config(backup_state(env), backup_passphrase="secret:aaaaaaaaaaaaaaaaaaaa")
    assert "does not exist" in failure(env, state, "create-backup")


def test_an_invalid_secret_id_blocks_with_the_fix(env: CharmEnv) -> None:
    state = env.run(env.ctx.on.config_changed(), env.with_config(env.started(), backup_passphrase="my passphrase"))
    assert isinstance(state.unit_status, ops.BlockedStatus)
    assert "backup_passphrase" in state.unit_status.message and "juju config" in state.unit_status.message


@pytest.mark.parametrize("bad", ["", "latest", "20260101T120000Z", "../x", "20260101T120000Z-1A2B3C"])
@pytest.mark.parametrize("name", ["restore-backup", "delete-backup"])
def test_a_bad_id_is_refused_before_anything_runs(
    env: CharmEnv, monkeypatch: pytest.MonkeyPatch, name: str, bad: str
) -> None:
    calls = scripted(monkeypatch, {})
    assert "is not a backup id" in failure(env, backup_state(env), name, id=bad)
    assert calls == []


def test_create_sends_what_the_script_needs_and_returns_the_id(env: CharmEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = scripted(monkeypatch, {"create": MANIFEST})
    results = run_action(env, backup_state(env), "create-backup")
    assert results["id"] == BACKUP_ID and results["server-name"] == SERVER_NAME
    assert results["contents"] == "identity,media_store,sqlite-database"
    assert "note" not in results
    ((command, request),) = calls
    assert command == "create"
    assert request["passphrase"] == "a passphrase long enough"
    assert request["server_name"] == SERVER_NAME
    assert request["sqlite"] == "/data/db/homeserver.db"
    assert request["s3"]["bucket"] == "bkt" and request["s3"]["secret_key"] == "b"
    assert set(request["secrets"]) == {
        "signing.key",
        "registration_shared_secret",
        "macaroon_secret_key",
        "form_secret",
    }


def test_create_when_the_unit_is_not_ready_fails(env: CharmEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = scripted(monkeypatch, {"create": MANIFEST})
    state = backup_state(env)
    container = state.get_container(CONTAINER_NAME)
    state = dataclasses.replace(state, containers=frozenset({dataclasses.replace(container, can_connect=False)}))
    assert "not ready for backups" in failure(env, state, "create-backup")
    assert calls == []


def test_list_returns_json_newest_first(env: CharmEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    newer = {**MANIFEST, "id": "20260202T120000Z-aaaaaa"}
    scripted(monkeypatch, {"list": {"backups": [MANIFEST, newer, {"id": "garbage"}]}})
    results = run_action(env, backup_state(env), "list-backups")
    assert results["count"] == "2"
    assert [entry["id"] for entry in json.loads(results["backups"])] == [newer["id"], BACKUP_ID]


def test_delete(env: CharmEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = scripted(monkeypatch, {"delete": {"deleted": BACKUP_ID}})
    assert run_action(env, backup_state(env), "delete-backup", id=BACKUP_ID) == {"deleted": BACKUP_ID}
    assert calls[0][1]["id"] == BACKUP_ID


ERRORS = {
    "s3-unreachable": "cannot reach the S3 endpoint",
    "s3-error": "S3 refused the request",
    "no-such-backup": "there is no backup",
    "wrong-passphrase": "the passphrase does not decrypt this backup",
    "corrupt": "the backup is damaged",
    "other-server": "belongs to server",
    "crashed": "the backup command failed",
    "timeout": "the backup command failed",
}


@pytest.mark.parametrize("error", list(ERRORS.items()))
@pytest.mark.parametrize(("name", "command"), [("create-backup", "create"), ("restore-backup", "stage")])
def test_every_script_failure_is_a_failed_action_with_a_message(
    env: CharmEnv, monkeypatch: pytest.MonkeyPatch, name: str, command: str, error: tuple[str, str]
) -> None:
    code, text = error
    calls = scripted(monkeypatch, {command: BackupError(code, "detail")})
    with pytest.raises(testing.ActionFailed) as exc:
        env.run(env.ctx.on.action(name, params=ACTIONS[name]), backup_state(env))
    assert text in exc.value.message
    out = exc.value.state
    assert out is not None
    assert out.get_container(CONTAINER_NAME).service_statuses["synapse"] == ops.pebble.ServiceStatus.ACTIVE
    if name == "restore-backup":  # nothing was changed: the staging area is dropped, nothing swapped
        assert [call[0] for call in calls] == ["stage", "commit"]


def test_restore_refuses_a_postgresql_backup_on_sqlite(env: CharmEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = {**MANIFEST, "database": "postgresql (not included)", "contents": ["identity", "media_store"]}
    calls = scripted(monkeypatch, {"stage": {"manifest": manifest}})
    assert "holds no database" in failure(env, backup_state(env), "restore-backup", id=BACKUP_ID)
    assert [call[0] for call in calls] == ["stage", "commit"]


def _restored_secrets(env: CharmEnv) -> ServerSecrets:
    """Write a different identity into the container's files, as `swap` would."""
    restored = ServerSecrets.generate()
    for name, path in backup_actions.IDENTITY_FILES.items():
        env.host_path(path).write_text(getattr(restored, name) + "\n")
    return restored


def test_restore_swaps_starts_and_then_takes_the_restored_identity(
    env: CharmEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = backup_state(env)
    restored: list[ServerSecrets] = []
    calls = scripted(monkeypatch, {"stage": {"manifest": MANIFEST}})
    original_swap = backup_actions.run_script

    def run(container: ops.Container, command: str, request: dict[str, typing.Any]) -> dict[str, typing.Any]:
        if command == "swap":
            restored.append(_restored_secrets(env))
        return original_swap(container, command, request)

    monkeypatch.setattr(backup_actions, "run_script", run)
    monkeypatch.setattr(backup_actions.BackupActions, "_wait_healthy", lambda self: None)
    out = env.run(env.ctx.on.action("restore-backup", params={"id": BACKUP_ID}), state)
    assert env.ctx.action_results and env.ctx.action_results["restored"] == BACKUP_ID
    assert [call[0] for call in calls] == ["stage", "swap", "commit"]
    secret = next(s for s in out.secrets if s.label == "synapse-server-secrets")
    # the identity is the backup's; the worker replication secret (not in backups) stays the server's
    taken = ServerSecrets.from_content(dict(secret.latest_content or {}))
    assert taken.model_dump(exclude={"worker_replication_secret"}) == restored[0].model_dump(
        exclude={"worker_replication_secret"}
    )
    assert taken.worker_replication_secret is not None
    # the next hook keeps the restored identity in the files
    env.run(env.ctx.on.update_status(), out)
    assert env.read(SIGNING_KEY_PATH).strip() == restored[0].signing_key


def test_a_restore_that_does_not_come_up_is_reverted(env: CharmEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    state = backup_state(env)
    before = env.read(SIGNING_KEY_PATH)
    calls = scripted(monkeypatch, {"stage": {"manifest": MANIFEST}})
    original = backup_actions.run_script

    def run(container: ops.Container, command: str, request: dict[str, typing.Any]) -> dict[str, typing.Any]:
        if command == "swap":
            _restored_secrets(env)
        if command == "revert":
            env.host_path(SIGNING_KEY_PATH).write_text(before)
        return original(container, command, request)

    def never_healthy(_: backup_actions.BackupActions) -> None:
        raise backup_actions.BackupActionError("Synapse did not become healthy within 300s")

    monkeypatch.setattr(backup_actions, "run_script", run)
    monkeypatch.setattr(backup_actions.BackupActions, "_wait_healthy", never_healthy)
    with pytest.raises(testing.ActionFailed) as exc:
        env.run(env.ctx.on.action("restore-backup", params={"id": BACKUP_ID}), state)
    assert "the previous data is back in place and Synapse runs on it" in exc.value.message
    assert [call[0] for call in calls] == ["stage", "swap", "revert"]
    out = exc.value.state
    assert out is not None
    assert out.get_container(CONTAINER_NAME).service_statuses["synapse"] == ops.pebble.ServiceStatus.ACTIVE
    assert env.read(SIGNING_KEY_PATH) == before
    secret = next(s for s in out.secrets if s.label == "synapse-server-secrets")
    assert ServerSecrets.from_content(dict(secret.latest_content or {})).signing_key == before.strip()


# -- the script's answers --------------------------------------------------------------------


def test_a_script_crash_through_pebble_is_a_backup_error(env: CharmEnv) -> None:
    state = backup_state(env)
    container = state.get_container(CONTAINER_NAME)
    crashed = testing.Exec(["python", "-c"], return_code=1, stderr="Traceback...\nKeyError: 'x'\n")
    state = dataclasses.replace(
        state, containers=frozenset({dataclasses.replace(container, execs=frozenset({crashed}))})
    )
    assert "the backup command failed (crashed: KeyError: 'x')" in failure(env, state, "list-backups")


def test_the_script_answer_through_pebble_is_parsed(env: CharmEnv) -> None:
    state = backup_state(env)
    container = state.get_container(CONTAINER_NAME)
    answer = testing.Exec(["python", "-c"], stdout=json.dumps({"ok": True, "backups": [MANIFEST]}) + "\n")
    state = dataclasses.replace(
        state, containers=frozenset({dataclasses.replace(container, execs=frozenset({answer}))})
    )
    results = run_action(env, state, "list-backups")
    assert results["count"] == "1"
    (execution,) = env.ctx.exec_history[CONTAINER_NAME]
    assert execution.command[:2] == ["python", "-c"]
    assert "a passphrase" not in " ".join(execution.command)  # credentials only on stdin
    assert json.loads(execution.stdin or "{}")["s3"]["secret_key"] == "b"


@given(st.text(max_size=300))
def test_any_stdout_is_an_answer_or_a_backup_error(stdout: str) -> None:
    try:
        parse_answer(stdout)
    except BackupError:
        pass


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c) | st.dictionaries(st.text(max_size=10), c),
        max_leaves=20,
    )
)
def test_any_list_answer_parses_or_is_a_backup_error(value: typing.Any) -> None:
    try:
        parse_backups({"backups": value})
    except BackupError:
        pass


def test_a_failing_cleanup_does_not_hide_the_reason(env: CharmEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    scripted(monkeypatch, {"stage": BackupError("wrong-passphrase", ""), "commit": BackupError("io", "busy")})
    assert "passphrase does not decrypt" in failure(env, backup_state(env), "restore-backup", id=BACKUP_ID)


def test_when_moving_the_previous_data_back_fails_synapse_stays_stopped(
    env: CharmEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted(monkeypatch, {"stage": {"manifest": MANIFEST}, "revert": BackupError("io", "disk full")})

    def never_healthy(_: backup_actions.BackupActions) -> None:
        raise backup_actions.BackupActionError("Synapse did not become healthy within 300s")

    monkeypatch.setattr(backup_actions.BackupActions, "_wait_healthy", never_healthy)
    monkeypatch.setattr(backup_actions.BackupActions, "_restored_identity", lambda self: ServerSecrets.generate())
    with pytest.raises(testing.ActionFailed) as exc:
        env.run(env.ctx.on.action("restore-backup", params={"id": BACKUP_ID}), backup_state(env))
    assert "Synapse is stopped; the previous data is in /data/.backup-previous" in exc.value.message
    assert exc.value.state is not None
    status = exc.value.state.get_container(CONTAINER_NAME).service_statuses["synapse"]
    assert status == ops.pebble.ServiceStatus.INACTIVE
