"""Every action ends with results or a failure message, whatever its params and whatever Synapse answers.

ops.testing raises UncaughtCharmError for any exception a handler lets escape; these
tests let only results or testing.ActionFailed through.
"""

import typing
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ops import testing

from tests import strategies
from tests.unit.conftest import SERVER_NAME, CharmEnv, FakeSynapse, charm_spec
from tests.unit.test_user_actions import VALID_PARAMS, shared_secret

ALICE = quote(f"@alice:{SERVER_NAME}", safe="")
# Every (method, path) the actions call, with the answer keys the charm reads there.
ENDPOINTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/_synapse/admin/v1/register"): ("nonce",),
    ("POST", "/_synapse/admin/v1/register"): ("user_id", "access_token"),
    ("POST", "/_matrix/client/v3/login"): ("user_id", "access_token"),
    ("GET", f"/_synapse/admin/v2/users/{ALICE}"): ("name", "admin", "deactivated"),
    ("PUT", f"/_synapse/admin/v1/users/{ALICE}/admin"): (),
    ("POST", f"/_synapse/admin/v1/deactivate/{ALICE}"): ("id_server_unbind_result",),
    ("POST", f"/_synapse/admin/v1/reset_password/{ALICE}"): (),
    ("POST", "/_synapse/admin/v1/registration_tokens/new"): ("token", "uses_allowed", "expiry_time"),
    ("GET", "/_synapse/admin/v1/registration_tokens?valid=true"): ("registration_tokens",),
    ("DELETE", "/_synapse/admin/v1/registration_tokens/abc"): (),
}
TOKEN_KEYS = ("token", "uses_allowed", "pending", "completed", "expiry_time")
STATUSES = st.sampled_from([200, 200, 200, 400, 401, 403, 404, 429, 500])


def _answer_bodies(keys: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    """Bodies for an endpoint: mangled JSON, and token lists whose items are mangled."""
    if "registration_tokens" in keys:
        items = st.lists(strategies.json_objects_like(TOKEN_KEYS), max_size=3)
        lists = items.map(lambda tokens: strategies.json.dumps({"registration_tokens": tokens}).encode())
        return st.one_of(lists, strategies.mangled_json(keys))
    return strategies.mangled_json(keys)


def _param_values(schema: dict[str, typing.Any]) -> st.SearchStrategy[typing.Any]:
    """Values of a param's JSON-schema type (Juju checks the type, not the content)."""
    return {
        "string": st.one_of(strategies.texts, st.sampled_from(["alice", "@alice:example.com", "7d", "abc", ""])),
        "integer": strategies.hostile_ints,
        "boolean": st.booleans(),
    }[schema["type"]]


def _params(action: str) -> st.SearchStrategy[dict[str, typing.Any]]:
    """Params of `action`: any subset of its declared params, with hostile values."""
    _, _, actions = charm_spec()
    declared: dict[str, dict[str, typing.Any]] = (actions or {})[action].get("params", {})
    return st.fixed_dictionaries({}, optional={name: _param_values(schema) for name, schema in declared.items()})


def _run(env: CharmEnv, state: testing.State, action: str, params: dict[str, typing.Any]) -> None:
    """Run the action; it must end with results or a non-empty failure message (nothing else escapes)."""
    try:
        env.run(env.ctx.on.action(action, params=params), state)
    except testing.ActionFailed as exc:
        assert exc.message.strip()
        return
    assert env.ctx.action_results is not None


@pytest.fixture
def ready(env: CharmEnv, fake_synapse: FakeSynapse) -> testing.State:
    """A leader running Synapse, answered by the fake (which knows the shared secret)."""
    state = env.ready(env.started())
    fake_synapse.shared_secret = shared_secret(state)
    return state


@pytest.mark.parametrize("action", sorted(VALID_PARAMS))
@settings(max_examples=10)
@given(data=st.data())
def test_any_params(env: CharmEnv, ready: testing.State, action: str, data: st.DataObject) -> None:
    _run(env, ready, action, data.draw(_params(action)))


@pytest.mark.parametrize("action", sorted(VALID_PARAMS))
@settings(max_examples=10)
@given(data=st.data())
def test_any_synapse_answer(
    env: CharmEnv, ready: testing.State, fake_synapse: FakeSynapse, action: str, data: st.DataObject
) -> None:
    fake_synapse.scripted.clear()
    scripted = data.draw(st.lists(st.sampled_from(sorted(ENDPOINTS)), min_size=1, unique=True))
    for method, path in scripted:
        fake_synapse.script(method, path, data.draw(STATUSES), data.draw(_answer_bodies(ENDPOINTS[(method, path)])))
    params = dict(VALID_PARAMS[action])
    if action == "create-registration-token":
        params.update(
            data.draw(st.fixed_dictionaries({}, optional={"expiry": st.just("7d"), "uses-allowed": st.just(3)}))
        )

    _run(env, ready, action, params)


@pytest.mark.parametrize(
    ("expiry", "message"),
    [
        ("9" * 5000 + "d", "is not a duration"),
        ("99999999999w", "is too long: at most 36500d"),
        ("36501d", "is too long: at most 36500d"),
        ("1" * 12 + "s", "is too long"),
    ],
)
def test_expiry_overflow_fails_cleanly(env: CharmEnv, ready: testing.State, expiry: str, message: str) -> None:
    with pytest.raises(testing.ActionFailed) as excinfo:
        env.run(env.ctx.on.action("create-registration-token", params={"expiry": expiry}), ready)
    assert message in excinfo.value.message
    assert len(excinfo.value.message) < 200


def test_uses_allowed_above_synapse_int_column_fails(env: CharmEnv, ready: testing.State) -> None:
    with pytest.raises(testing.ActionFailed, match="from 1 to 2147483647"):
        env.run(env.ctx.on.action("create-registration-token", params={"uses-allowed": 2**31}), ready)


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        ({"token": "abc", "expiry_time": 10**30}, "expiry_time"),
        ({"token": "abc", "expiry_time": -1}, "expiry_time"),
        ({"token": None}, "token"),
        ({"token": "abc", "uses_allowed": "3"}, "uses_allowed"),
        ({}, "token: Field required"),
    ],
)
def test_unusable_token_answers_name_the_field(
    env: CharmEnv, ready: testing.State, fake_synapse: FakeSynapse, answer: dict[str, typing.Any], fragment: str
) -> None:
    fake_synapse.script(
        "POST", "/_synapse/admin/v1/registration_tokens/new", 200, strategies.json.dumps(answer).encode()
    )
    with pytest.raises(testing.ActionFailed) as excinfo:
        env.run(env.ctx.on.action("create-registration-token", params={}), ready)
    assert "Synapse's answer to POST /_synapse/admin/v1/registration_tokens/new is unusable" in excinfo.value.message
    assert fragment in excinfo.value.message
