"""The charm's admin account and its access to Synapse's admin API (src/workload/admin.py).

AdminAPI runs inside a real ops.testing hook (its Juju secret is the unit's) and talks
HTTP to a loopback server that answers like Synapse's shared-secret registration, login
and one admin endpoint, checking the registration MAC and the access tokens.
"""

import json
import typing
from collections.abc import Callable, Iterator
from urllib.parse import unquote

import pytest
from ops import testing

from constants import ADMIN_LOCALPART, ADMIN_SECRET_LABEL
from tests.unit.conftest import SERVER_NAME, CharmEnv, FakeSynapse, Recorded
from workload.admin import AdminAPI, AdminCredentials, user_path
from workload.synapse_api import SynapseAPIError, SynapseClient

USERS_PATH = "/_synapse/admin/v2/users/"
REGISTER_PATH = "/_synapse/admin/v1/register"
LOGIN_PATH = "/_matrix/client/v3/login"
ADMIN_ID = f"@{ADMIN_LOCALPART}:{SERVER_NAME}"
ALICE = f"@alice:{SERVER_NAME}"
T = typing.TypeVar("T")


class AdminSynapse(FakeSynapse):
    """The fake Synapse plus GET /_synapse/admin/v2/users/<user ID>, with real token checks.

    Access tokens handed out by registration and login are valid until removed from
    `tokens` (as a logout would); only admins may call the admin endpoint.
    """

    def _register(self, body: dict[str, typing.Any]) -> tuple[int, dict[str, typing.Any]]:
        status, answer = super()._register(body)
        if status == 200:
            self.tokens[answer["access_token"]] = answer["user_id"]
        return status, answer

    def _answer(self, request: Recorded) -> tuple[int, bytes, str]:
        if (request.method, request.path) in self.scripted or not request.path.startswith(USERS_PATH):
            return super()._answer(request)
        status, body = self._admin_user(request)
        return status, json.dumps(body).encode(), "application/json"

    def _admin_user(self, request: Recorded) -> tuple[int, dict[str, typing.Any]]:
        authorization = request.headers.get("Authorization", "")
        if not authorization:
            return self._error(401, "M_MISSING_TOKEN", "Missing access token.")
        requester = self.tokens.get(authorization.removeprefix("Bearer "))
        if requester is None:
            return self._error(401, "M_UNKNOWN_TOKEN", "Invalid access token passed.")
        if not self.users.get(requester, ("", False))[1]:
            return self._error(403, "M_FORBIDDEN", "You are not a server admin")
        target = unquote(request.path.removeprefix(USERS_PATH))
        if target not in self.users:
            return self._error(404, "M_NOT_FOUND", "User not found")
        return 200, {"name": target, "admin": self.users[target][1], "deactivated": False}

    def log_in(self, user: str) -> str:
        """A valid access token for `user` (as a login by someone else would give)."""
        token = f"token-of-{user}-{len(self.tokens)}"
        self.tokens[token] = user
        return token

    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of each request, with the user left out of admin user paths."""
        return [(method, path if not path.startswith(USERS_PATH) else USERS_PATH) for method, path in self.paths()]


@pytest.fixture
def synapse() -> Iterator[AdminSynapse]:
    """A running AdminSynapse with Alice (not an admin) as a user."""
    fake = AdminSynapse()
    fake.users[ALICE] = ("alice's password", False)
    fake.start()
    try:
        yield fake
    finally:
        fake.close()


def admin_secret(content: dict[str, str]) -> testing.Secret:
    """The unit's admin-credentials secret with `content`."""
    return testing.Secret(content, owner="unit", label=ADMIN_SECRET_LABEL)


def quiet_state(env: CharmEnv, *secrets: testing.Secret) -> testing.State:
    """A state whose update-status hook does nothing but run what the test asks (no container)."""
    return env.state(container=env.container(can_connect=False), secrets=set(secrets))


def in_hook(
    env: CharmEnv, state: testing.State, synapse: AdminSynapse, call: Callable[[AdminAPI], T]
) -> tuple[T, testing.State]:
    """Run `call` on an AdminAPI inside a hook of the charm; return its result and the output State."""
    with env.ctx(env.ctx.on.update_status(), state) as manager:
        api = AdminAPI(manager.charm.model, SynapseClient(synapse.url), SERVER_NAME, synapse.shared_secret)
        result = call(api)
        out = manager.run()
    return result, out


def stored(state: testing.State) -> dict[str, str]:
    """The latest content of the admin secret in `state` (which must exist, once)."""
    (secret,) = [s for s in state.secrets if s.label == ADMIN_SECRET_LABEL]
    assert secret.owner == "unit"
    return dict(secret.latest_content)


def get_alice(api: AdminAPI) -> dict[str, typing.Any] | None:
    """The admin API's view of Alice."""
    return api.get_user(ALICE)


def registered_admin(synapse: AdminSynapse) -> dict[str, str]:
    """Make the charm's admin account exist in the fake; return secret content with a valid token."""
    password = "the admin's password"
    synapse.users[ADMIN_ID] = (password, True)
    return {"user-id": ADMIN_ID, "password": password, "access-token": synapse.log_in(ADMIN_ID)}


# --- AdminCredentials -----------------------------------------------------------------------


def test_credentials_content_round_trip() -> None:
    credentials = AdminCredentials(user_id=ADMIN_ID, password="pw", access_token="tok")

    content = credentials.to_content()

    assert content == {"user-id": ADMIN_ID, "password": "pw", "access-token": "tok"}
    assert AdminCredentials.from_content(content) == credentials


@pytest.mark.parametrize(
    "content",
    [
        {},
        {"user-id": ADMIN_ID, "password": "pw"},
        {"user-id": ADMIN_ID, "access-token": "tok"},
        {"password": "pw", "access-token": "tok"},
    ],
)
def test_unusable_credentials_content(content: dict[str, str]) -> None:
    assert AdminCredentials.from_content(content) is None


def test_user_path_is_one_segment() -> None:
    assert user_path("@a/b:example.com:8448") == "%40a%2Fb%3Aexample.com%3A8448"
    assert user_path("@alice:example.com") == "%40alice%3Aexample.com"


# --- creation and reuse ----------------------------------------------------------------------


def test_first_request_creates_the_account(env: CharmEnv, synapse: AdminSynapse) -> None:
    assert in_hook(env, quiet_state(env), synapse, lambda api: api.admin_user_id)[0] is None

    alice, out = in_hook(env, quiet_state(env), synapse, get_alice)

    assert alice == {"name": ALICE, "admin": False, "deactivated": False}
    content = stored(out)
    assert content["user-id"] == ADMIN_ID
    assert synapse.users[ADMIN_ID] == (content["password"], True)
    assert len(content["password"]) >= 32
    assert synapse.tokens[content["access-token"]] == ADMIN_ID
    assert synapse.calls() == [("GET", REGISTER_PATH), ("POST", REGISTER_PATH), ("GET", USERS_PATH)]
    assert synapse.requests[-1].headers["Authorization"] == f"Bearer {content['access-token']}"
    assert in_hook(env, out, synapse, lambda api: api.admin_user_id)[0] == ADMIN_ID


def test_stored_credentials_are_reused(env: CharmEnv, synapse: AdminSynapse) -> None:
    content = registered_admin(synapse)

    _, out = in_hook(env, quiet_state(env, admin_secret(content)), synapse, get_alice)
    _, out = in_hook(env, out, synapse, get_alice)

    assert synapse.calls() == [("GET", USERS_PATH), ("GET", USERS_PATH)]
    assert stored(out) == content


def test_account_name_taken_by_someone_else(env: CharmEnv, synapse: AdminSynapse) -> None:
    synapse.users[ADMIN_ID] = ("not the charm's", False)

    _, out = in_hook(env, quiet_state(env), synapse, get_alice)

    content = stored(out)
    local = content["user-id"][1:].partition(":")[0]
    assert local.startswith(f"{ADMIN_LOCALPART}-")
    assert len(local) == len(ADMIN_LOCALPART) + 9
    assert synapse.users[content["user-id"]] == (content["password"], True)
    assert synapse.users[ADMIN_ID] == ("not the charm's", False)


def test_no_free_account_name(env: CharmEnv, synapse: AdminSynapse) -> None:
    synapse.script("POST", REGISTER_PATH, 400, '{"errcode": "M_USER_IN_USE", "error": "User ID already taken."}')

    with pytest.raises(SynapseAPIError) as excinfo:
        in_hook(env, quiet_state(env), synapse, get_alice)

    assert excinfo.value.errcode == "M_USER_IN_USE"
    assert "no free name" in excinfo.value.error
    assert synapse.calls().count(("POST", REGISTER_PATH)) == 2
    assert ("GET", USERS_PATH) not in synapse.calls()


def test_refused_registration_is_an_error(env: CharmEnv, synapse: AdminSynapse) -> None:
    with env.ctx(env.ctx.on.update_status(), quiet_state(env)) as manager:
        api = AdminAPI(manager.charm.model, SynapseClient(synapse.url), SERVER_NAME, "not the shared secret")
        with pytest.raises(SynapseAPIError) as excinfo:
            api.get_user(ALICE)
        out = manager.run()

    assert (excinfo.value.status, excinfo.value.errcode) == (403, "M_FORBIDDEN")
    assert out.secrets == frozenset()
    assert ("GET", USERS_PATH) not in synapse.calls()


# --- renewal ---------------------------------------------------------------------------------


def test_rejected_token_is_renewed_by_login(env: CharmEnv, synapse: AdminSynapse) -> None:
    content = registered_admin(synapse)
    del synapse.tokens[content["access-token"]]  # logged out

    alice, out = in_hook(env, quiet_state(env, admin_secret(content)), synapse, get_alice)

    assert alice is not None
    assert synapse.calls() == [("GET", USERS_PATH), ("POST", LOGIN_PATH), ("GET", USERS_PATH)]
    renewed = stored(out)
    assert renewed["access-token"] != content["access-token"]
    assert synapse.tokens[renewed["access-token"]] == ADMIN_ID
    assert {**renewed, "access-token": ""} == {**content, "access-token": ""}
    assert synapse.requests[-1].headers["Authorization"] == f"Bearer {renewed['access-token']}"


def test_renewed_token_is_used_by_the_next_hook(env: CharmEnv, synapse: AdminSynapse) -> None:
    content = registered_admin(synapse)
    del synapse.tokens[content["access-token"]]
    _, out = in_hook(env, quiet_state(env, admin_secret(content)), synapse, get_alice)
    synapse.requests.clear()

    _, out = in_hook(env, out, synapse, get_alice)

    assert synapse.calls() == [("GET", USERS_PATH)]
    assert synapse.requests[0].headers["Authorization"] == f"Bearer {stored(out)['access-token']}"


def test_missing_token_is_renewed(env: CharmEnv, synapse: AdminSynapse) -> None:
    content = {**registered_admin(synapse), "access-token": ""}

    _, out = in_hook(env, quiet_state(env, admin_secret(content)), synapse, get_alice)

    assert synapse.calls() == [("GET", USERS_PATH), ("POST", LOGIN_PATH), ("GET", USERS_PATH)]
    assert "Authorization" not in synapse.requests[0].headers
    assert synapse.tokens[stored(out)["access-token"]] == ADMIN_ID


def test_new_account_when_the_password_no_longer_works(env: CharmEnv, synapse: AdminSynapse) -> None:
    content = registered_admin(synapse)
    del synapse.tokens[content["access-token"]]
    synapse.users[ADMIN_ID] = ("changed by someone", True)

    alice, out = in_hook(env, quiet_state(env, admin_secret(content)), synapse, get_alice)

    assert alice is not None
    assert synapse.calls() == [
        ("GET", USERS_PATH),
        ("POST", LOGIN_PATH),
        ("GET", REGISTER_PATH),
        ("POST", REGISTER_PATH),  # the usual name is taken (by the old account)
        ("GET", REGISTER_PATH),
        ("POST", REGISTER_PATH),
        ("GET", USERS_PATH),
    ]
    renewed = stored(out)
    assert renewed["user-id"].startswith(f"@{ADMIN_LOCALPART}-")
    assert synapse.users[renewed["user-id"]] == (renewed["password"], True)
    assert synapse.tokens[renewed["access-token"]] == renewed["user-id"]
    assert len([s for s in out.secrets if s.label == ADMIN_SECRET_LABEL]) == 1


def test_damaged_secret_content_makes_a_new_account(env: CharmEnv, synapse: AdminSynapse) -> None:
    secret = admin_secret({"user-id": ADMIN_ID})

    alice, out = in_hook(env, quiet_state(env, secret), synapse, get_alice)

    assert alice is not None
    content = stored(out)
    assert set(content) == {"user-id", "password", "access-token"}
    assert synapse.tokens[content["access-token"]] == content["user-id"]
    (after,) = out.secrets
    assert after.id == secret.id


def test_token_renewed_once_only(env: CharmEnv, synapse: AdminSynapse) -> None:
    content = registered_admin(synapse)
    synapse.script(
        "GET",
        USERS_PATH + user_path(ALICE),
        401,
        '{"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed."}',
    )

    with pytest.raises(SynapseAPIError) as excinfo:
        in_hook(env, quiet_state(env, admin_secret(content)), synapse, get_alice)

    assert excinfo.value.errcode == "M_UNKNOWN_TOKEN"
    assert synapse.calls() == [("GET", USERS_PATH), ("POST", LOGIN_PATH), ("GET", USERS_PATH)]


def test_other_errors_are_not_renewed(env: CharmEnv, synapse: AdminSynapse) -> None:
    content = registered_admin(synapse)
    synapse.users[ADMIN_ID] = (content["password"], False)  # no longer an admin

    with pytest.raises(SynapseAPIError) as excinfo:
        in_hook(env, quiet_state(env, admin_secret(content)), synapse, get_alice)

    assert (excinfo.value.status, excinfo.value.errcode) == (403, "M_FORBIDDEN")
    assert synapse.calls() == [("GET", USERS_PATH)]


def test_unknown_user_is_none(env: CharmEnv, synapse: AdminSynapse) -> None:
    content = registered_admin(synapse)

    user, _ = in_hook(
        env, quiet_state(env, admin_secret(content)), synapse, lambda api: api.get_user(f"@nobody:{SERVER_NAME}")
    )

    assert user is None


def test_rate_limited_login_makes_no_new_account(env: CharmEnv, synapse: AdminSynapse) -> None:
    content = registered_admin(synapse)
    del synapse.tokens[content["access-token"]]
    limited = {"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests", "retry_after_ms": 2000}
    synapse.script("POST", LOGIN_PATH, 429, json.dumps(limited))

    with pytest.raises(SynapseAPIError) as excinfo:
        in_hook(env, quiet_state(env, admin_secret(content)), synapse, get_alice)

    assert excinfo.value.errcode == "M_LIMIT_EXCEEDED"
    assert ("POST", REGISTER_PATH) not in synapse.calls()
