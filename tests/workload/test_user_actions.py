"""User and registration-token actions, and the registration policy, against a real Synapse.

One unit (module scope) runs Synapse on the charm's config with registration=token; the
tests run in file order: the charm's admin account, registration tokens, user actions,
renewal of the admin account, then the registration modes (each a config change, so one
restart each) and, last, actions while Synapse is down. Users get distinct names, so a
test does not depend on another's users.
"""

import dataclasses
import json
import typing
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from ops import testing

from constants import ADMIN_LOCALPART, ADMIN_SECRET_LABEL, CONFIG_PATH, DATA_DIR, PEER_RELATION, SECRET_LABEL
from tests.workload import harness
from tests.workload.conftest import DriverFactory

SERVER_NAME = "test.local"
CONFIG = {"server_name": SERVER_NAME, "registration": "token"}
USER_ACTIONS = ("promote-user-admin", "demote-user-admin", "anonymize-user", "reset-user-password")
ALL_ACTIONS: dict[str, dict[str, typing.Any]] = {
    "register-user": {"username": "zed"},
    "promote-user-admin": {"username": "zed"},
    "demote-user-admin": {"username": "zed"},
    "anonymize-user": {"username": "zed"},
    "reset-user-password": {"username": "zed"},
    "create-registration-token": {},
    "list-registration-tokens": {},
    "revoke-registration-token": {"token": "abc"},
}
PASSWORD = "a long enough password"


# --- helpers ------------------------------------------------------------------------------


def uid(local: str) -> str:
    """A user ID of the test server."""
    return f"@{local}:{SERVER_NAME}"


def whoami(token: str) -> int:
    """The HTTP status of /account/whoami with `token`."""
    return harness.http_json("GET", "/_matrix/client/v3/account/whoami", token=token)[0]


def admin_user_view(user: str, token: str) -> tuple[int, dict[str, typing.Any]]:
    """GET /_synapse/admin/v2/users/<user> as the holder of `token`."""
    return harness.http_json("GET", f"/_synapse/admin/v2/users/{quote(user, safe='')}", token=token)


def client_register(
    username: str, password: str = PASSWORD, token: str | None = None, *, kind: str | None = None
) -> tuple[int, dict[str, typing.Any]]:
    """Register through the client API, completing the user-interactive auth stages Synapse asks for.

    The first POST carries no auth: Synapse answers 401 with a session and the flows. Then
    every stage of the first flow is completed in order: m.login.registration_token with
    `token`, m.login.dummy. Returns the first answer that is not a 401 asking for more, or
    the 401 carrying an error.
    """
    path = "/_matrix/client/v3/register" + (f"?kind={kind}" if kind else "")
    body: dict[str, typing.Any] = {"username": username, "password": password}
    headers = harness.client_address()
    status, answer = harness.http_json("POST", path, body, headers=headers)
    if status != 401 or "session" not in answer:
        return status, answer
    session = answer["session"]
    for stage in answer["flows"][0]["stages"]:
        if stage == "m.login.registration_token":
            auth = {"type": stage, "token": token or "", "session": session}
        else:
            assert stage == "m.login.dummy", answer
            auth = {"type": stage, "session": session}
        status, answer = harness.http_json("POST", path, {**body, "auth": auth}, headers=headers)
        if status != 401 or "errcode" in answer:
            return status, answer
    return status, answer


def secret_content(driver: harness.CharmDriver, label: str) -> dict[str, str] | None:
    """The latest content of the Juju secret with `label` in the driver's State, None if absent."""
    for secret in driver.state.secrets:
        if secret.label == label:
            return dict(secret.latest_content)
    return None


def admin_credentials(driver: harness.CharmDriver) -> dict[str, str]:
    """The charm's admin account, as kept in its Juju secret (created by an action if need be)."""
    if secret_content(driver, ADMIN_SECRET_LABEL) is None:
        driver.run_action("list-registration-tokens")
    content = secret_content(driver, ADMIN_SECRET_LABEL)
    assert content is not None, "the charm's admin secret does not exist"
    return content


def all_users(driver: harness.CharmDriver) -> dict[str, dict[str, typing.Any]]:
    """Every account on the server (deactivated ones included) by user ID: admin, deactivated, erased.

    As the admin API lists them; fields that change by mere use (last_seen_ts) are left out.
    """
    token = admin_credentials(driver)["access-token"]
    status, answer = harness.http_json("GET", "/_synapse/admin/v2/users?deactivated=true&limit=1000", token=token)
    assert status == 200, answer
    assert answer["total"] == len(answer["users"])
    return {
        user["name"]: {key: user[key] for key in ("admin", "deactivated", "erased", "displayname")}
        for user in answer["users"]
    }


def charm_admin_accounts(driver: harness.CharmDriver) -> list[str]:
    """The accounts on the server named like the charm's admin account."""
    return sorted(name for name in all_users(driver) if name.startswith(f"@{ADMIN_LOCALPART}"))


def listed_tokens(driver: harness.CharmDriver) -> dict[str, dict[str, typing.Any]]:
    """The list-registration-tokens action's tokens, by token."""
    results = driver.run_action("list-registration-tokens")
    tokens = json.loads(results["tokens"])
    assert int(results["count"]) == len(tokens)
    return {item["token"]: item for item in tokens}


def failure(driver: harness.CharmDriver, action: str, params: dict[str, typing.Any]) -> str:
    """Run an action that must fail; return its message."""
    with pytest.raises(testing.ActionFailed) as excinfo:
        driver.run_action(action, params)
    return excinfo.value.message


def juju_view(state: testing.State) -> dict[str, typing.Any]:
    """What an action must leave alone: secrets, relation data, config and the Pebble plan."""
    secrets: list[tuple[typing.Any, ...]] = [
        (s.label or "", s.owner or "", sorted(dict(s.tracked_content).items()), sorted(dict(s.latest_content).items()))
        for s in state.secrets
    ]
    relations: list[tuple[typing.Any, ...]] = [
        (r.endpoint, sorted(dict(r.local_app_data).items()), sorted(dict(r.local_unit_data).items()))
        for r in state.relations
    ]
    return {
        "secrets": sorted(secrets),
        "relations": sorted(relations),
        "config": sorted(state.config.items()),
        "plan": [c.plan.to_dict() for c in state.containers],
        "layers": [sorted(c.layers) for c in state.containers],
    }


def ensure_config(driver: harness.CharmDriver, **config: str | bool) -> testing.State:
    """Apply config changes (config-changed) if they differ from the current config."""
    if any(driver.state.config.get(key) != value for key, value in config.items()):
        driver.set_config(**config)
        driver.run("config_changed")
    return driver.state


@pytest.fixture(scope="module")
def unit(tmp_path_factory: pytest.TempPathFactory, synapse_venv: Path) -> Iterator[harness.CharmDriver]:
    """A leader unit, deployed with registration=token, running a real Synapse."""
    base = tmp_path_factory.mktemp("user-actions")
    driver = harness.CharmDriver(base / "data", CONFIG, venv=synapse_venv, log_path=base / "synapse.log")
    try:
        driver.deploy()
        assert driver.state.unit_status == testing.ActiveStatus(), driver.state.unit_status
        yield driver
    finally:
        driver.stop()


@pytest.fixture
def registered(unit: harness.CharmDriver, request: pytest.FixtureRequest) -> tuple[str, str]:
    """A normal user registered with register-user, named after the test: (user ID, password)."""
    local = "u-" + request.node.name.removeprefix("test_").replace("_", "-").replace("[", "-").rstrip("]")[:60]
    results = unit.run_action("register-user", {"username": local, "password": PASSWORD})
    return results["user-id"], PASSWORD


# --- the charm's admin account ------------------------------------------------------------


def test_admin_account_created_on_first_need(unit: harness.CharmDriver) -> None:
    assert secret_content(unit, ADMIN_SECRET_LABEL) is None
    secrets_before = {s.label for s in unit.state.secrets}

    unit.run_action("list-registration-tokens")

    (secret,) = [s for s in unit.state.secrets if s.label == ADMIN_SECRET_LABEL]
    assert secret.owner == "unit"
    assert {s.label for s in unit.state.secrets} == secrets_before | {ADMIN_SECRET_LABEL}
    content = admin_credentials(unit)
    assert set(content) == {"user-id", "password", "access-token"}
    assert content["user-id"] == uid(ADMIN_LOCALPART)
    status, me = admin_user_view(content["user-id"], content["access-token"])
    assert status == 200, me
    assert me["admin"] is True
    assert harness.token_for(content["user-id"], content["password"])


def test_admin_account_is_reused(unit: harness.CharmDriver) -> None:
    before = admin_credentials(unit)

    unit.run_action("list-registration-tokens")
    unit.run_action("create-registration-token")

    assert admin_credentials(unit) == before
    assert charm_admin_accounts(unit) == [uid(ADMIN_LOCALPART)]


# --- registration tokens ------------------------------------------------------------------


def test_token_with_one_use_registers_one_user(unit: harness.CharmDriver) -> None:
    results = unit.run_action("create-registration-token", {"uses-allowed": 1, "expiry": "1d"})

    token = results["token"]
    assert results["uses-allowed"] == "1"
    assert results["expiry"] != "never"
    assert listed_tokens(unit)[token]["uses-allowed"] == 1
    status, answer = client_register("token-user-1", token=token)
    assert status == 200, answer
    assert answer["user_id"] == uid("token-user-1")
    assert whoami(answer["access_token"]) == 200

    status, answer = client_register("token-user-2", token=token)

    assert status == 401, answer
    assert answer["errcode"] == "M_UNAUTHORIZED"
    assert token not in listed_tokens(unit)
    assert harness.login(uid("token-user-2"), PASSWORD)[0] == 403


def test_registration_needs_a_token(unit: harness.CharmDriver) -> None:
    status, answer = harness.http_json(
        "POST", "/_matrix/client/v3/register", {"username": "no-token"}, headers=harness.client_address()
    )

    assert status == 401, answer
    assert all("m.login.registration_token" in flow["stages"] for flow in answer["flows"])
    status, answer = client_register("no-token", token="not-a-token")
    assert status == 401
    assert answer["errcode"] == "M_UNAUTHORIZED"


def test_token_given_explicitly_is_returned_as_given(unit: harness.CharmDriver) -> None:
    results = unit.run_action("create-registration-token", {"token": "Given.Token_1~-"})

    assert results == {"token": "Given.Token_1~-", "uses-allowed": "unlimited", "expiry": "never"}
    assert listed_tokens(unit)["Given.Token_1~-"]["expiry"] == "never"
    for name in ("given-1", "given-2"):
        status, answer = client_register(name, token="Given.Token_1~-")
        assert status == 200, answer
    assert listed_tokens(unit)["Given.Token_1~-"]["completed"] == 2

    message = failure(unit, "create-registration-token", {"token": "Given.Token_1~-"})

    assert "'Given.Token_1~-' cannot be created" in message
    assert "already exists" in message


def test_list_shows_uses_and_expiry_of_valid_tokens(unit: harness.CharmDriver) -> None:
    limited = unit.run_action("create-registration-token", {"uses-allowed": 5, "expiry": "1d12h"})["token"]
    forever = unit.run_action("create-registration-token", {"expiry": ""})["token"]
    revoked = unit.run_action("create-registration-token", {"uses-allowed": 2})["token"]
    unit.run_action("revoke-registration-token", {"token": revoked})

    tokens = listed_tokens(unit)

    assert tokens[limited]["uses-allowed"] == 5
    assert tokens[limited]["pending"] == 0
    assert tokens[limited]["completed"] == 0
    assert tokens[limited]["expiry"].endswith("+00:00")
    assert tokens[forever]["uses-allowed"] == "unlimited"
    assert tokens[forever]["expiry"] == "never"
    assert revoked not in tokens


def test_revoked_token_no_longer_registers(unit: harness.CharmDriver) -> None:
    token = unit.run_action("create-registration-token", {"token": "to-revoke"})["token"]

    results = unit.run_action("revoke-registration-token", {"token": token})

    assert results == {"token": "to-revoke", "revoked": "true"}
    status, answer = client_register("after-revoke", token=token)
    assert status == 401, answer
    assert answer["errcode"] == "M_UNAUTHORIZED"
    assert "'to-revoke' does not exist" in failure(unit, "revoke-registration-token", {"token": token})


def test_revoking_an_unknown_token_fails(unit: harness.CharmDriver) -> None:
    view = juju_view(unit.state)

    message = failure(unit, "revoke-registration-token", {"token": "never-created"})

    assert message == "registration token 'never-created' does not exist"
    assert juju_view(unit.state) == view
    assert unit.last_calls.calls == []


# --- user actions -------------------------------------------------------------------------


def test_promote_then_demote(unit: harness.CharmDriver, registered: tuple[str, str]) -> None:
    user, password = registered
    token = harness.token_for(user, password)
    assert admin_user_view(user, token)[0] == 403

    results = unit.run_action("promote-user-admin", {"username": user})

    assert results == {"user-id": user, "admin": "true"}
    status, view = admin_user_view(user, token)
    assert status == 200, view
    assert view["admin"] is True

    results = unit.run_action("demote-user-admin", {"username": user.partition(":")[0][1:]})

    assert results == {"user-id": user, "admin": "false"}
    status, view = admin_user_view(user, token)
    assert status == 403, view
    assert view["errcode"] == "M_FORBIDDEN"


def test_anonymize_user(unit: harness.CharmDriver, registered: tuple[str, str]) -> None:
    user, password = registered
    token = harness.token_for(user, password)
    status, _ = harness.http_json(
        "PUT",
        f"/_matrix/client/v3/profile/{quote(user, safe='')}/displayname",
        {"displayname": "Real Name"},
        token=token,
    )
    assert status == 200

    results = unit.run_action("anonymize-user", {"username": user})

    assert results == {"user-id": user, "deactivated": "true", "erased": "true"}
    status, answer = harness.login(user, password)
    assert status == 403, answer
    assert whoami(token) == 401
    status, view = admin_user_view(user, admin_credentials(unit)["access-token"])
    assert status == 200, view
    assert view["deactivated"] is True
    assert view["erased"] is True
    assert view["displayname"] is None
    assert all_users(unit)[user] == {"admin": False, "deactivated": True, "erased": True, "displayname": None}


def test_reset_password_generated(unit: harness.CharmDriver, registered: tuple[str, str]) -> None:
    user, old_password = registered
    old_token = harness.token_for(user, old_password)
    assert whoami(old_token) == 200

    results = unit.run_action("reset-user-password", {"username": user})

    assert set(results) == {"user-id", "password"}
    assert results["user-id"] == user
    assert len(results["password"]) >= 20
    assert results["password"] != old_password
    assert whoami(old_token) == 401
    assert harness.login(user, old_password)[0] == 403
    assert whoami(harness.token_for(user, results["password"])) == 200


def test_reset_password_given(unit: harness.CharmDriver, registered: tuple[str, str]) -> None:
    user, old_password = registered
    new_password = "the new one, chosen by the operator"

    results = unit.run_action("reset-user-password", {"username": user, "password": new_password})

    assert results == {"user-id": user}
    assert harness.login(user, old_password)[0] == 403
    assert harness.token_for(user, new_password)


@pytest.mark.parametrize("form", ["local", "full"])
def test_usernames_as_localpart_or_user_id(unit: harness.CharmDriver, form: str) -> None:
    local = f"form-{form}"
    username = local if form == "local" else uid(local)
    assert unit.run_action("register-user", {"username": username, "password": PASSWORD}) == {"user-id": uid(local)}

    for action in ("promote-user-admin", "demote-user-admin", "reset-user-password"):
        assert unit.run_action(action, {"username": username})["user-id"] == uid(local)


@pytest.mark.parametrize("action", ["register-user", *USER_ACTIONS])
def test_user_of_another_server_is_refused(unit: harness.CharmDriver, action: str) -> None:
    message = failure(unit, action, {"username": "@alice:other.server"})

    assert message == f"'@alice:other.server' belongs to 'other.server', not to this server ({SERVER_NAME})"


@pytest.mark.parametrize("action", USER_ACTIONS)
def test_unknown_user_fails_and_synapse_is_untouched(unit: harness.CharmDriver, action: str) -> None:
    users, view = all_users(unit), juju_view(unit.state)  # the admin account exists before the snapshot

    message = failure(unit, action, {"username": "nobody-here"})

    assert message == f"user {uid('nobody-here')} does not exist"
    assert all_users(unit) == users
    assert juju_view(unit.state) == view
    assert unit.last_calls.calls == []


@pytest.mark.parametrize("action", USER_ACTIONS)
def test_actions_refuse_the_charm_admin_account(unit: harness.CharmDriver, action: str) -> None:
    credentials = admin_credentials(unit)
    users = all_users(unit)

    message = failure(unit, action, {"username": credentials["user-id"]})

    assert message == f"{credentials['user-id']} is the charm's own admin account; actions cannot change it"
    assert all_users(unit) == users
    assert admin_credentials(unit) == credentials
    assert whoami(credentials["access-token"]) == 200


# --- renewal of the admin account ---------------------------------------------------------


def test_rejected_admin_token_is_renewed_by_login(unit: harness.CharmDriver) -> None:
    before = admin_credentials(unit)
    status, answer = harness.http_json("POST", "/_matrix/client/v3/logout", {}, token=before["access-token"])
    assert status == 200, answer
    assert whoami(before["access-token"]) == 401

    unit.run_action("list-registration-tokens")

    after = admin_credentials(unit)
    assert after["access-token"] != before["access-token"]
    assert (after["user-id"], after["password"]) == (before["user-id"], before["password"])
    assert whoami(after["access-token"]) == 200
    assert charm_admin_accounts(unit) == [uid(ADMIN_LOCALPART)]


def test_admin_account_recreated_when_its_password_fails(unit: harness.CharmDriver) -> None:
    before = admin_credentials(unit)
    # Someone changed the account's password behind the charm's back, and logged it out.
    status, answer = harness.http_json(
        "POST",
        f"/_synapse/admin/v1/reset_password/{quote(before['user-id'], safe='')}",
        {"new_password": "changed behind the charm's back", "logout_devices": True},
        token=before["access-token"],
    )
    assert status == 200, answer
    assert harness.http_json("POST", "/_matrix/client/v3/logout", {}, token=before["access-token"])[0] == 200
    assert whoami(before["access-token"]) == 401
    assert harness.login(before["user-id"], before["password"])[0] == 403

    token = unit.run_action("create-registration-token")["token"]

    after = admin_credentials(unit)
    assert after["user-id"] != before["user-id"]
    assert after["user-id"].startswith(f"@{ADMIN_LOCALPART}-")
    assert after["password"] != before["password"]
    status, view = admin_user_view(after["user-id"], after["access-token"])
    assert status == 200, view
    assert view["admin"] is True
    assert token in listed_tokens(unit)
    assert charm_admin_accounts(unit) == sorted([before["user-id"], after["user-id"]])
    assert "charm's own admin account" in failure(unit, "promote-user-admin", {"username": after["user-id"]})


# --- registration modes (each a config change: one restart) -------------------------------


def test_registration_disabled_refuses_even_a_valid_token(unit: harness.CharmDriver) -> None:
    token = unit.run_action("create-registration-token")["token"]
    starts = unit.starts

    state = ensure_config(unit, registration="disabled")

    assert unit.starts == starts + 1
    assert state.unit_status == testing.ActiveStatus()
    assert token in listed_tokens(unit)
    auth = {"type": "m.login.registration_token", "token": token}
    body = {"username": "while-disabled", "password": PASSWORD, "auth": auth}
    status, answer = harness.http_json("POST", "/_matrix/client/v3/register", body, headers=harness.client_address())
    assert status == 403, answer
    assert answer["errcode"] == "M_FORBIDDEN"
    assert client_register("while-disabled", token=token)[0] == 403
    # Operators still register users.
    assert unit.run_action("register-user", {"username": "while-disabled"})["user-id"] == uid("while-disabled")


def test_open_registration_needs_the_acknowledgement(unit: harness.CharmDriver) -> None:
    ensure_config(unit, registration="disabled")
    starts, pid = unit.starts, unit.process.pid
    config_file = unit.data_dir / CONFIG_PATH.relative_to(DATA_DIR)
    rendered = config_file.read_text()

    state = ensure_config(unit, registration="open")

    assert isinstance(state.unit_status, testing.BlockedStatus)
    assert "enable_registration_without_verification" in state.unit_status.message
    assert "juju config synapse enable_registration_without_verification=true" in state.unit_status.message
    # Synapse keeps running on its last good config: registration still disabled.
    assert (unit.starts, unit.process.pid) == (starts, pid)
    assert config_file.read_text() == rendered
    assert client_register("too-early")[0] == 403
    # Actions need a valid config.
    message = failure(unit, "list-registration-tokens", {})
    assert message.startswith("the unit is not ready for this action: invalid config registration=open")

    state = ensure_config(unit, enable_registration_without_verification=True)

    assert state.unit_status == testing.ActiveStatus()
    assert unit.starts == starts + 1
    status, answer = harness.http_json(
        "POST", "/_matrix/client/v3/register", {"username": "open-user"}, headers=harness.client_address()
    )
    assert status == 401
    assert [flow["stages"] for flow in answer["flows"]] == [["m.login.dummy"]]
    status, answer = client_register("open-user")
    assert status == 200, answer
    assert whoami(answer["access_token"]) == 200


def test_guest_access(unit: harness.CharmDriver) -> None:
    ensure_config(unit, registration="open", enable_registration_without_verification=True)
    status, answer = client_register("", kind="guest")
    assert status == 403, answer

    ensure_config(unit, allow_guest_access=True)

    status, answer = client_register("", kind="guest")
    assert status == 200, answer
    assert whoami(answer["access_token"]) == 200


# --- actions the unit cannot run ----------------------------------------------------------


@pytest.mark.parametrize("action", list(ALL_ACTIONS))
def test_actions_fail_while_synapse_is_not_running(unit: harness.CharmDriver, action: str) -> None:
    unit.stop()  # the process died; Pebble reports the service inactive
    starts, view = unit.starts, juju_view(unit.state)

    message = failure(unit, action, ALL_ACTIONS[action])

    assert message == "Synapse is not ready yet; retry once the unit is active"
    assert juju_view(unit.state) == view
    assert unit.last_calls.calls == []
    assert unit.starts == starts
    assert not unit.process.is_alive()


@pytest.mark.parametrize("action", list(ALL_ACTIONS))
def test_actions_fail_on_a_unit_without_the_server_secrets(make_driver: DriverFactory, action: str) -> None:
    driver = make_driver(CONFIG, leader=False)
    view = juju_view(driver.state)

    message = failure(driver, action, ALL_ACTIONS[action])

    assert message == "the unit is not ready for this action: waiting for the leader to create the server's secrets"
    assert juju_view(driver.state) == view
    assert driver.state.secrets == frozenset()
    assert driver.starts == 0
    peer = next(r for r in driver.state.relations if r.endpoint == PEER_RELATION)
    assert dict(peer.local_app_data) == {}
    assert SECRET_LABEL not in {s.label for s in driver.state.secrets}


def test_state_comparison_sees_a_change(unit: harness.CharmDriver) -> None:
    """juju_view must notice a new secret or config change, or the no-change checks prove nothing."""
    view = juju_view(unit.state)
    extra = testing.Secret({"k": "v"}, label="extra")
    assert juju_view(dataclasses.replace(unit.state, secrets=frozenset({*unit.state.secrets, extra}))) != view
    assert juju_view(dataclasses.replace(unit.state, config={**unit.state.config, "log_level": "DEBUG"})) != view
