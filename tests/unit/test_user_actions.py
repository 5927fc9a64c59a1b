"""User and registration-token actions (src/user_actions.py) and the registration policy config.

The actions' effects on Synapse are tested against a real Synapse in
tests/workload/test_user_actions.py. Here: parameter validation (bad input fails before
anything reaches Synapse), the unit-readiness failures, how Synapse's answers become
action results or failures, and the registration options as config and as rendered
homeserver.yaml.
"""

import dataclasses
import datetime
import json
import typing
from pathlib import Path

import ops
import pytest
import yaml
from ops import testing

from constants import ADMIN_SECRET_LABEL, CONFIG_PATH, CONTAINER_NAME, SERVICE_NAME
from server_secrets import ServerSecrets
from state import CharmConfig, InvalidStateError
from tests.unit.conftest import SERVER_NAME, CharmEnv, FakeSynapse, record_side_effects
from user_actions import MAX_PASSWORD_LENGTH, ActionError, parse_duration

TOKENS_PATH = "/_synapse/admin/v1/registration_tokens"
NEW_TOKEN_PATH = f"{TOKENS_PATH}/new"
LIST_PATH = f"{TOKENS_PATH}?valid=true"
USER_ACTIONS = ("promote-user-admin", "demote-user-admin", "anonymize-user", "reset-user-password")
# Valid params for every action, to check failures that do not depend on the params.
VALID_PARAMS: dict[str, dict[str, typing.Any]] = {
    "register-user": {"username": "alice"},
    "promote-user-admin": {"username": "alice"},
    "demote-user-admin": {"username": "alice"},
    "anonymize-user": {"username": "alice"},
    "reset-user-password": {"username": "alice"},
    "create-registration-token": {},
    "list-registration-tokens": {},
    "revoke-registration-token": {"token": "abc"},
}


def juju_view(state: testing.State) -> dict[str, typing.Any]:
    """What a failed action must leave alone: secrets, relation data and the Pebble plan."""
    secrets: list[tuple[typing.Any, ...]] = sorted(
        (s.label or "", sorted(dict(s.tracked_content).items()), sorted(dict(s.latest_content).items()))
        for s in state.secrets
    )
    relations: list[tuple[typing.Any, ...]] = sorted(
        (r.endpoint, sorted(dict(r.local_app_data).items())) for r in state.relations
    )
    return {"secrets": secrets, "relations": relations, "plan": state.get_container(CONTAINER_NAME).plan.to_dict()}


def failed(env: CharmEnv, state: testing.State, action: str, params: dict[str, typing.Any]) -> str:
    """Run an action that must fail without touching Juju or Pebble; return its message."""
    view = juju_view(state)
    with record_side_effects() as effects, pytest.raises(testing.ActionFailed) as excinfo:
        env.run(env.ctx.on.action(action, params=params), state)
    assert effects.nothing, effects
    if excinfo.value.state is not None:
        assert juju_view(excinfo.value.state) == view
    return excinfo.value.message


def failed_after_admin(env: CharmEnv, state: testing.State, action: str, params: dict[str, typing.Any]) -> str:
    """Run an action that must fail once it reached Synapse (the charm's admin account may be new)."""
    with record_side_effects() as effects, pytest.raises(testing.ActionFailed) as excinfo:
        env.run(env.ctx.on.action(action, params=params), state)
    assert effects.nothing, effects
    return excinfo.value.message


def shared_secret(state: testing.State) -> str:
    """The registration shared secret in the leader's server secret."""
    (secret,) = [s for s in state.secrets if s.label != ADMIN_SECRET_LABEL]
    return ServerSecrets.from_content(dict(secret.tracked_content)).registration_shared_secret


@pytest.fixture
def ready(env: CharmEnv, fake_synapse: FakeSynapse) -> testing.State:
    """A leader running Synapse, which the fake answers for; the fake knows the shared secret."""
    state = env.ready(env.started())
    fake_synapse.shared_secret = shared_secret(state)
    fake_synapse.requests.clear()
    return state


def run(env: CharmEnv, state: testing.State, action: str, params: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """Run an action that must succeed; return its results."""
    env.run(env.ctx.on.action(action, params=params), state)
    return dict(env.ctx.action_results or {})


# --- parse_duration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", datetime.timedelta(days=7)),
        ("12h", datetime.timedelta(hours=12)),
        ("1d12h", datetime.timedelta(days=1, hours=12)),
        ("2w", datetime.timedelta(weeks=2)),
        ("30m", datetime.timedelta(minutes=30)),
        ("90s", datetime.timedelta(seconds=90)),
        ("1w2d3h4m5s", datetime.timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        (" 7D ", datetime.timedelta(days=7)),
        ("1d 12h", datetime.timedelta(days=1, hours=12)),
        ("0d1h", datetime.timedelta(hours=1)),
        ("36h", datetime.timedelta(days=1, hours=12)),
    ],
)
def test_parse_duration(text: str, expected: datetime.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0d", "expiry '0d' must be longer than zero"),
        ("0s0m", "expiry '0s0m' must be longer than zero"),
        ("7x", "expiry '7x' is not a duration such as 30m, 12h, 7d or 2w"),
        ("", "expiry '' is not a duration"),
        ("   ", "expiry '   ' is not a duration"),
        ("7", "expiry '7' is not a duration"),
        ("d", "expiry 'd' is not a duration"),
        ("7dd", "expiry '7dd' is not a duration"),
        ("-1d", "expiry '-1d' is not a duration"),
        ("1.5d", "expiry '1.5d' is not a duration"),
        ("7 days", "expiry '7 days' is not a duration"),
        ("P7D", "expiry 'P7D' is not a duration"),
        ("7d!", "expiry '7d!' is not a duration"),
        ("٣d", "expiry '٣d' is not a duration"),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(ActionError) as excinfo:
        parse_duration(text)
    assert message in str(excinfo.value)


# --- parameter validation: bad input never reaches Synapse ---------------------------------

LONG_PASSWORD = "p" * (MAX_PASSWORD_LENGTH + 1)
BAD_USERNAMES = [
    ("", "the username is empty"),
    ("   ", "the username is empty"),
    ("@:example.com", "the username is empty"),
    ("@alice", "'@alice' is not a Matrix user ID; use alice or @alice:example.com"),
    ("@alice:other.server", "'@alice:other.server' belongs to 'other.server', not to this server (example.com)"),
    ("@alice:example.com:8448", "belongs to 'example.com:8448'"),
    ("al ice", "'al ice' is not a valid Matrix username"),
    ("élise", "'élise' is not a valid Matrix username"),
    ("al\nice", "is not a valid Matrix username"),
]
BAD_PARAMS: list[typing.Any] = [
    *[(action, {"username": name}, message) for action in USER_ACTIONS for name, message in BAD_USERNAMES],
    *[(action, {}, "the username is empty") for action in USER_ACTIONS],
    ("reset-user-password", {"username": "alice", "password": LONG_PASSWORD}, "at most 512 characters"),
    ("reset-user-password", {"username": "@bob:elsewhere", "password": LONG_PASSWORD}, "at most 512 characters"),
    ("create-registration-token", {"token": "with space"}, "token must be 1 to 64 characters from A-Z a-z 0-9 . _ ~ -"),
    ("create-registration-token", {"token": "a" * 65}, "token must be 1 to 64 characters"),
    ("create-registration-token", {"token": "a/b"}, "token must be 1 to 64 characters"),
    ("create-registration-token", {"token": "tök"}, "token must be 1 to 64 characters"),
    ("create-registration-token", {"token": "abc\n"}, "token must be 1 to 64 characters"),
    ("revoke-registration-token", {"token": "abc\n"}, "token must be 1 to 64 characters"),
    ("create-registration-token", {"uses-allowed": 0}, "uses-allowed must be a whole number from 1 to 2147483647"),
    ("create-registration-token", {"uses-allowed": -1}, "uses-allowed must be a whole number from 1 to 2147483647"),
    ("create-registration-token", {"uses-allowed": True}, "uses-allowed must be a whole number from 1 to 2147483647"),
    ("create-registration-token", {"expiry": "7x"}, "expiry '7x' is not a duration"),
    ("create-registration-token", {"expiry": "0d"}, "expiry '0d' must be longer than zero"),
    ("create-registration-token", {"expiry": "-2w"}, "expiry '-2w' is not a duration"),
    ("create-registration-token", {"token": "ok", "uses-allowed": 1, "expiry": "1y"}, "expiry '1y' is not"),
    ("revoke-registration-token", {}, "token must be 1 to 64 characters"),
    ("revoke-registration-token", {"token": ""}, "token must be 1 to 64 characters"),
    ("revoke-registration-token", {"token": "a" * 65}, "token must be 1 to 64 characters"),
    ("revoke-registration-token", {"token": "a?b"}, "token must be 1 to 64 characters"),
]


@pytest.mark.parametrize("case", BAD_PARAMS, ids=lambda case: f"{case[0]}-{case[1]}")
def test_bad_params_fail_before_calling_synapse(
    env: CharmEnv, ready: testing.State, fake_synapse: FakeSynapse, case: tuple[str, dict[str, typing.Any], str]
) -> None:
    action, params, message = case
    assert message in failed(env, ready, action, params)
    assert fake_synapse.requests == []


def test_the_ready_fixture_reaches_synapse(env: CharmEnv, ready: testing.State, fake_synapse: FakeSynapse) -> None:
    """The state the validation tests use does call Synapse for good params."""
    assert run(env, ready, "register-user", {"username": "carol"})["user-id"] == f"@carol:{SERVER_NAME}"
    assert ("GET", "/health") in fake_synapse.paths()


@pytest.mark.parametrize("name", ["Alice", "alice!", "_alice", "a" * 250])
def test_existing_users_may_have_historical_names(
    env: CharmEnv, ready: testing.State, fake_synapse: FakeSynapse, name: str
) -> None:
    """Names a new user could not take are looked up, not refused (Synapse has such users)."""
    message = failed_after_admin(env, ready, "promote-user-admin", {"username": name})

    assert message == f"user @{name}:{SERVER_NAME} does not exist"
    assert any(path.startswith("/_synapse/admin/v2/users/") for _, path in fake_synapse.paths())


# --- the unit is not ready ------------------------------------------------------------------


def not_running(env: CharmEnv) -> testing.State:
    """A configured unit whose Synapse service is not running (it died or was stopped)."""
    state = env.started()
    assert state.get_container(CONTAINER_NAME).service_statuses[SERVICE_NAME] == ops.pebble.ServiceStatus.ACTIVE
    container = state.get_container(CONTAINER_NAME)
    stopped = dataclasses.replace(container, service_statuses={SERVICE_NAME: ops.pebble.ServiceStatus.INACTIVE})
    return dataclasses.replace(state, containers=frozenset({stopped}))


@pytest.mark.parametrize("action", list(VALID_PARAMS))
def test_actions_when_synapse_is_not_running(env: CharmEnv, fake_synapse: FakeSynapse, action: str) -> None:
    state = not_running(env)
    fake_synapse.requests.clear()

    message = failed(env, state, action, VALID_PARAMS[action])

    assert message == "Synapse is not ready yet; retry once the unit is active"
    assert fake_synapse.requests == []


@pytest.mark.parametrize("action", list(VALID_PARAMS))
def test_actions_when_synapse_does_not_answer(env: CharmEnv, action: str) -> None:
    message = failed(env, env.ready(env.started()), action, VALID_PARAMS[action])

    assert message == "Synapse is not ready yet; retry once the unit is active"


@pytest.mark.parametrize("action", list(VALID_PARAMS))
def test_actions_on_a_unit_without_the_server_secrets(env: CharmEnv, action: str) -> None:
    state = env.state(leader=False)

    message = failed(env, state, action, VALID_PARAMS[action])

    assert message == "the unit is not ready for this action: waiting for the leader to create the server's secrets"


@pytest.mark.parametrize("action", list(VALID_PARAMS))
def test_actions_without_the_container(env: CharmEnv, action: str) -> None:
    state = env.state(container=env.container(can_connect=False))

    message = failed(env, state, action, VALID_PARAMS[action])

    assert message == "the unit is not ready for this action: waiting for the synapse container"


@pytest.mark.parametrize("action", list(VALID_PARAMS))
def test_actions_with_invalid_config(env: CharmEnv, action: str) -> None:
    state = env.with_config(env.ready(env.started()), server_name="not a name")

    message = failed(env, state, action, VALID_PARAMS[action])

    assert "invalid config server_name: 'not a name' is not a valid host name" in message


@pytest.mark.parametrize("action", list(VALID_PARAMS))
def test_actions_with_unacknowledged_open_registration(env: CharmEnv, action: str) -> None:
    state = env.with_config(env.ready(env.started()), registration="open")

    message = failed(env, state, action, VALID_PARAMS[action])

    assert "enable_registration_without_verification=true" in message


# --- Synapse's answers ----------------------------------------------------------------------


def test_create_token_sends_the_params(env: CharmEnv, ready: testing.State, fake_synapse: FakeSynapse) -> None:
    expires = int(datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC).timestamp() * 1000)
    answer = {"token": "Given_1", "uses_allowed": 3, "pending": 0, "completed": 0, "expiry_time": expires}
    fake_synapse.script("POST", NEW_TOKEN_PATH, 200, json.dumps(answer))
    before = datetime.datetime.now(tz=datetime.UTC)

    results = run(env, ready, "create-registration-token", {"token": "Given_1", "uses-allowed": 3, "expiry": "1d12h"})

    after = datetime.datetime.now(tz=datetime.UTC)
    assert results == {"token": "Given_1", "uses-allowed": "3", "expiry": "2030-01-02T03:04:05+00:00"}
    (request,) = [r for r in fake_synapse.requests if r.path == NEW_TOKEN_PATH]
    body = request.json()
    assert set(body) == {"token", "uses_allowed", "expiry_time"}
    assert (body["token"], body["uses_allowed"]) == ("Given_1", 3)
    window = datetime.timedelta(days=1, hours=12)
    assert int((before + window).timestamp() * 1000) - 1 <= body["expiry_time"] <= (after + window).timestamp() * 1000
    assert request.headers["Authorization"].startswith("Bearer ")


@pytest.mark.parametrize("expiry", [None, ""])
def test_create_token_defaults(
    env: CharmEnv, ready: testing.State, fake_synapse: FakeSynapse, expiry: str | None
) -> None:
    answer = {"token": "random0", "uses_allowed": None, "pending": 0, "completed": 0, "expiry_time": None}
    fake_synapse.script("POST", NEW_TOKEN_PATH, 200, json.dumps(answer))

    results = run(env, ready, "create-registration-token", {} if expiry is None else {"expiry": expiry})

    assert results == {"token": "random0", "uses-allowed": "unlimited", "expiry": "never"}
    (request,) = [r for r in fake_synapse.requests if r.path == NEW_TOKEN_PATH]
    assert request.json() == {}


def test_create_an_existing_token(env: CharmEnv, ready: testing.State, fake_synapse: FakeSynapse) -> None:
    error = {"errcode": "M_INVALID_PARAM", "error": "Token already exists: taken"}
    fake_synapse.script("POST", NEW_TOKEN_PATH, 400, json.dumps(error))

    message = failed_after_admin(env, ready, "create-registration-token", {"token": "taken"})

    assert message == "registration token 'taken' cannot be created: Token already exists: taken"


def test_create_token_refused(env: CharmEnv, ready: testing.State, fake_synapse: FakeSynapse) -> None:
    error = {"errcode": "M_FORBIDDEN", "error": "You are not a server admin"}
    fake_synapse.script("POST", NEW_TOKEN_PATH, 403, json.dumps(error))

    message = failed_after_admin(env, ready, "create-registration-token", {})

    assert message == "Synapse refused: You are not a server admin (M_FORBIDDEN)"


def test_list_tokens(env: CharmEnv, ready: testing.State, fake_synapse: FakeSynapse) -> None:
    expires = int(datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=datetime.UTC).timestamp() * 1000)
    tokens = [
        {"token": "abc", "uses_allowed": 5, "pending": 1, "completed": 2, "expiry_time": expires},
        {"token": "def", "uses_allowed": None, "pending": 0, "completed": 0, "expiry_time": None},
    ]
    fake_synapse.script("GET", LIST_PATH, 200, json.dumps({"registration_tokens": tokens}))

    results = run(env, ready, "list-registration-tokens", {})

    assert results["count"] == "2"
    assert json.loads(results["tokens"]) == [
        {"token": "abc", "uses-allowed": 5, "pending": 1, "completed": 2, "expiry": "2031-05-06T07:08:09+00:00"},
        {"token": "def", "uses-allowed": "unlimited", "pending": 0, "completed": 0, "expiry": "never"},
    ]


def test_list_no_tokens(env: CharmEnv, ready: testing.State, fake_synapse: FakeSynapse) -> None:
    fake_synapse.script("GET", LIST_PATH, 200, json.dumps({"registration_tokens": []}))

    assert run(env, ready, "list-registration-tokens", {}) == {"count": "0", "tokens": "[]"}


def test_admin_account_kept_in_a_unit_secret(env: CharmEnv, ready: testing.State, fake_synapse: FakeSynapse) -> None:
    fake_synapse.script("GET", LIST_PATH, 200, json.dumps({"registration_tokens": []}))

    out = env.run(env.ctx.on.action("list-registration-tokens"), ready)

    (secret,) = [s for s in out.secrets if s.label == ADMIN_SECRET_LABEL]
    assert secret.owner == "unit"
    content: dict[str, str] = dict(secret.latest_content)
    assert content["user-id"] == f"@synapse-charm-admin:{SERVER_NAME}"
    assert fake_synapse.users[content["user-id"]] == (content["password"], True)
    (listing,) = [r for r in fake_synapse.requests if r.path == LIST_PATH]
    assert listing.headers["Authorization"] == f"Bearer {content['access-token']}"


def test_synapse_answers_garbage(env: CharmEnv, ready: testing.State, fake_synapse: FakeSynapse) -> None:
    fake_synapse.script("GET", LIST_PATH, 200, "<html>proxy error</html>", content_type="text/html")

    message = failed_after_admin(env, ready, "list-registration-tokens", {})

    assert message == (
        "Synapse's answer to GET /_synapse/admin/v1/registration_tokens is not JSON; "
        "check Synapse's logs (`juju debug-log`) and retry"
    )


# --- registration policy config -------------------------------------------------------------

CONFIG_OPTIONS = ("registration", "enable_registration_without_verification", "allow_guest_access")
REGISTRATION_KEYS = (
    "enable_registration",
    "registration_requires_token",
    "enable_registration_without_verification",
    "allow_guest_access",
)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, (False, False, False, False)),
        ({"registration": "disabled"}, (False, False, False, False)),
        ({"registration": "token"}, (True, True, False, False)),
        ({"registration": " TOKEN "}, (True, True, False, False)),
        ({"registration": "open", "enable_registration_without_verification": True}, (True, False, True, False)),
        ({"registration": "Open", "enable_registration_without_verification": True}, (True, False, True, False)),
        # The acknowledgement alone opens nothing.
        ({"enable_registration_without_verification": True}, (False, False, False, False)),
        ({"registration": "token", "enable_registration_without_verification": True}, (True, True, False, False)),
        ({"allow_guest_access": True}, (False, False, False, True)),
        ({"registration": "token", "allow_guest_access": True}, (True, True, False, True)),
    ],
)
def test_rendered_registration_settings(
    env: CharmEnv, config: dict[str, typing.Any], expected: tuple[bool, ...]
) -> None:
    out = env.started(config)

    doc = yaml.safe_load(env.read(CONFIG_PATH))
    assert tuple(doc[key] for key in REGISTRATION_KEYS) == expected
    assert all(type(doc[key]) is bool for key in REGISTRATION_KEYS)
    assert not isinstance(out.unit_status, ops.BlockedStatus)


@pytest.mark.parametrize("value", ["disabled", "token", "open", "DISABLED", " Token", "oPeN "])
def test_registration_modes_case_and_spaces(value: str) -> None:
    config = CharmConfig.from_juju(
        {"server_name": SERVER_NAME, "registration": value, "enable_registration_without_verification": True}, "app"
    )
    assert config.registration == value.strip().lower()


@pytest.mark.parametrize("value", ["", "yes", "true", "enabled", "invite", "token,open", "öpen"])
def test_unknown_registration_mode(env: CharmEnv, value: str) -> None:
    out = env.run(env.ctx.on.config_changed(), env.state({"registration": value}))

    assert out.unit_status == ops.BlockedStatus(
        f"invalid config registration: {value!r} is not one of disabled, token, open; "
        "fix it with `juju config synapse registration=...`"
    )


def test_open_registration_needs_the_acknowledgement() -> None:
    with pytest.raises(InvalidStateError) as excinfo:
        CharmConfig.from_juju({"server_name": SERVER_NAME, "registration": "open"}, "my-synapse")

    message = str(excinfo.value)
    assert message.startswith("invalid config registration=open:")
    assert "without email or captcha verification" in message
    assert "`juju config my-synapse enable_registration_without_verification=true`" in message
    assert "`juju config my-synapse registration=token`" in message


def test_unacknowledged_open_registration_blocks_and_keeps_synapse_as_it_was(env: CharmEnv) -> None:
    state = env.ready(env.started({"registration": "token"}))
    rendered = env.read(CONFIG_PATH)

    with record_side_effects() as effects:
        out = env.run(env.ctx.on.config_changed(), env.with_config(state, registration="open"))

    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "enable_registration_without_verification" in out.unit_status.message
    assert "juju config synapse enable_registration_without_verification=true" in out.unit_status.message
    assert "juju config synapse registration=token" in out.unit_status.message
    assert effects.pebble.calls == []
    assert effects.pushes == []
    assert env.read(CONFIG_PATH) == rendered

    out = env.run(env.ctx.on.config_changed(), env.with_config(out, enable_registration_without_verification=True))

    assert not isinstance(out.unit_status, ops.BlockedStatus)
    assert yaml.safe_load(env.read(CONFIG_PATH))["enable_registration_without_verification"] is True


def test_registration_defaults() -> None:
    options = yaml.safe_load((Path(__file__).parents[2] / "config.yaml").read_text())["options"]
    defaults = {name: options[name]["default"] for name in CONFIG_OPTIONS}
    assert defaults == {"registration": "disabled", **dict.fromkeys(CONFIG_OPTIONS[1:], False)}
    config = CharmConfig.from_juju({"server_name": SERVER_NAME}, "app")
    assert {name: getattr(config, name) for name in CONFIG_OPTIONS} == defaults
