"""Operator actions on users and registration tokens.

Every handler validates its parameters first, then checks that this unit can reach a
ready Synapse, then makes the API calls. Any failure is a failed action with a message;
the charm's state is never touched.
"""

import dataclasses
import datetime
import json
import logging
import re
import secrets
import typing
from collections.abc import Callable
from urllib.parse import quote

import ops

from state import InvalidStateError
from users import localpart, user_id
from workload.admin import AdminAPI, user_path
from workload.synapse_api import (
    RegistrationToken,
    RegistrationTokens,
    SynapseAnswerError,
    SynapseAPIError,
    SynapseClient,
    SynapseUnavailableError,
)

logger = logging.getLogger(__name__)

PASSWORD_BYTES = 24
MAX_PASSWORD_LENGTH = 512
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{1,64}")
_DURATION_PART = re.compile(r"([0-9]{1,12})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# A token expires at most this far ahead (Synapse stores the time in ms; Python's datetime
# ends in year 9999).
MAX_EXPIRY = datetime.timedelta(days=100 * 365)
# Synapse stores uses_allowed in an SQL INT column.
MAX_USES_ALLOWED = 2**31 - 1


class ActionError(Exception):
    """An action cannot be carried out; the message is for the operator."""


@dataclasses.dataclass(frozen=True)
class ActionContext:
    """What the actions need from the charm once Synapse is known to be ready."""

    server_name: str
    registration_shared_secret: str
    client: SynapseClient

    def admin(self, model: ops.Model) -> AdminAPI:
        """The admin API as the charm's admin account."""
        return AdminAPI(model, self.client, self.server_name, self.registration_shared_secret)


def parse_duration(text: str) -> datetime.timedelta:
    """A duration such as 30m, 12h, 7d, 2w or 1d12h; ActionError otherwise."""
    compact = text.strip().lower().replace(" ", "")
    shown = repr(text) if len(text) <= 40 else repr(text[:36]) + "..."
    if not compact or _DURATION_PART.sub("", compact):
        raise ActionError(f"expiry {shown} is not a duration such as 30m, 12h, 7d or 2w")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(compact))
    if seconds <= 0:
        raise ActionError(f"expiry {shown} must be longer than zero")
    if seconds > MAX_EXPIRY.total_seconds():
        raise ActionError(f"expiry {shown} is too long: at most {MAX_EXPIRY.days}d")
    return datetime.timedelta(seconds=seconds)


def _password(params: dict[str, typing.Any]) -> tuple[str, bool]:
    """The given password, or a generated one; the flag says whether it was generated."""
    password = params.get("password")
    if password is None or password == "":
        return secrets.token_urlsafe(PASSWORD_BYTES), True
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
        raise ActionError(f"the password must be a string of at most {MAX_PASSWORD_LENGTH} characters")
    return password, False


def _iso(milliseconds: int | None) -> str:
    """An expiry timestamp (ms since the epoch) as ISO 8601 UTC, or 'never'."""
    if milliseconds is None:
        return "never"
    return datetime.datetime.fromtimestamp(milliseconds / 1000, tz=datetime.UTC).isoformat(timespec="seconds")


class UserActions(ops.Object):
    """Handlers for the user and registration-token actions.

    `context` gives the server name (from the validated config) or a message saying why
    actions cannot run; `ready` gives what is needed to call Synapse, or why it cannot be
    called yet. Parameters are validated between the two, so bad input fails fast.
    """

    # Action name -> handler method; every action in actions.yaml is here.
    HANDLERS: typing.ClassVar[dict[str, str]] = {
        "register-user": "_register_user",
        "promote-user-admin": "_promote",
        "demote-user-admin": "_demote",
        "anonymize-user": "_anonymize",
        "reset-user-password": "_reset_password",
        "create-registration-token": "_create_token",
        "list-registration-tokens": "_list_tokens",
        "revoke-registration-token": "_revoke_token",
    }

    def __init__(
        self,
        charm: ops.CharmBase,
        server_name: Callable[[], str],
        ready: Callable[[], ActionContext | str],
    ):
        super().__init__(charm, "user-actions")
        self.charm = charm
        self._server_name = server_name
        self._ready_context = ready
        for name in self.HANDLERS:
            charm.framework.observe(charm.on[name].action, self._on_action)

    def _on_action(self, event: ops.ActionEvent) -> None:
        """Run the action's handler; map every failure to a failed action with a message."""
        name = event.handle.kind.removesuffix("_action").replace("_", "-")
        handler: Callable[[ops.ActionEvent], dict[str, str]] = getattr(self, self.HANDLERS[name])
        try:
            event.set_results(handler(event))
        except (ActionError, InvalidStateError) as exc:
            event.fail(str(exc))
        except SynapseAPIError as exc:
            event.fail(f"Synapse refused: {exc.error} ({exc.errcode})")
        except SynapseUnavailableError:
            event.fail("Synapse did not answer; retry once the unit is active")
        except SynapseAnswerError as exc:
            logger.error("%s", exc)
            event.fail(f"{exc}; check Synapse's logs (`juju debug-log`) and retry")

    def _ready(self) -> ActionContext:
        """What is needed to call Synapse; ActionError saying why it cannot be called yet."""
        context = self._ready_context()
        if isinstance(context, str):
            raise ActionError(context)
        return context

    def _user_id(self, event: ops.ActionEvent, new: bool) -> str:
        """The full user ID named by the `username` param."""
        server_name = self._server_name()
        return user_id(localpart(str(event.params.get("username", "")), server_name, new=new), server_name)

    def _existing_user(self, event: ops.ActionEvent) -> tuple[str, AdminAPI]:
        """The user named by `username`, checked to exist and not to be the charm's account."""
        uid = self._user_id(event, new=False)
        admin = self._ready().admin(self.charm.model)
        if admin.get_user(uid) is None:
            raise ActionError(f"user {uid} does not exist")
        if uid == admin.admin_user_id:
            raise ActionError(f"{uid} is the charm's own admin account; actions cannot change it")
        return uid, admin

    def _register_user(self, event: ops.ActionEvent) -> dict[str, str]:
        """Register a user through the shared-secret registration API."""
        uid = self._user_id(event, new=True)
        password, generated = _password(event.params)
        context = self._ready()
        local = uid[1:].partition(":")[0]
        try:
            context.client.register(
                context.registration_shared_secret, local, password, bool(event.params.get("admin", False))
            )
        except SynapseAPIError as exc:
            if exc.errcode == "M_USER_IN_USE":
                raise ActionError(f"user {uid} already exists") from None
            raise
        results = {"user-id": uid}
        if generated:
            results["password"] = password
        return results

    def _set_admin(self, event: ops.ActionEvent, admin_flag: bool) -> dict[str, str]:
        """Make a user a server admin or not."""
        uid, admin = self._existing_user(event)
        admin.request("PUT", f"/_synapse/admin/v1/users/{user_path(uid)}/admin", {"admin": admin_flag})
        return {"user-id": uid, "admin": str(admin_flag).lower()}

    def _promote(self, event: ops.ActionEvent) -> dict[str, str]:
        """Promote a user to server admin."""
        return self._set_admin(event, True)

    def _demote(self, event: ops.ActionEvent) -> dict[str, str]:
        """Demote a server admin to a normal user."""
        return self._set_admin(event, False)

    def _anonymize(self, event: ops.ActionEvent) -> dict[str, str]:
        """Deactivate a user and erase their data (GDPR erasure)."""
        uid, admin = self._existing_user(event)
        admin.request("POST", f"/_synapse/admin/v1/deactivate/{user_path(uid)}", {"erase": True})
        return {"user-id": uid, "deactivated": "true", "erased": "true"}

    def _reset_password(self, event: ops.ActionEvent) -> dict[str, str]:
        """Set a new password and log the user out of every device."""
        password, generated = _password(event.params)
        uid, admin = self._existing_user(event)
        admin.request(
            "POST",
            f"/_synapse/admin/v1/reset_password/{user_path(uid)}",
            {"new_password": password, "logout_devices": True},
        )
        results = {"user-id": uid}
        if generated:
            results["password"] = password
        return results

    def _create_token(self, event: ops.ActionEvent) -> dict[str, str]:
        """Create a registration token."""
        body: dict[str, typing.Any] = {}
        token = event.params.get("token")
        if token:
            body["token"] = _valid_token(token)
        uses = event.params.get("uses-allowed")
        if uses is not None:
            if isinstance(uses, bool) or not isinstance(uses, int) or not 1 <= uses <= MAX_USES_ALLOWED:
                raise ActionError(f"uses-allowed must be a whole number from 1 to {MAX_USES_ALLOWED}")
            body["uses_allowed"] = uses
        expiry = event.params.get("expiry")
        if expiry:
            expires_at = datetime.datetime.now(tz=datetime.UTC) + parse_duration(str(expiry))
            body["expiry_time"] = int(expires_at.timestamp() * 1000)
        admin = self._ready().admin(self.charm.model)
        try:
            answer = admin.call(RegistrationToken, "POST", "/_synapse/admin/v1/registration_tokens/new", body)
        except SynapseAPIError as exc:
            if exc.status == 400 and "token" in body:
                raise ActionError(f"registration token {body['token']!r} cannot be created: {exc.error}") from None
            raise
        return {
            "token": answer.token,
            "uses-allowed": "unlimited" if answer.uses_allowed is None else str(answer.uses_allowed),
            "expiry": _iso(answer.expiry_time),
        }

    def _list_tokens(self, event: ops.ActionEvent) -> dict[str, str]:
        """The valid registration tokens, with their uses and expiry."""
        admin = self._ready().admin(self.charm.model)
        answer = admin.call(RegistrationTokens, "GET", "/_synapse/admin/v1/registration_tokens?valid=true")
        tokens = [
            {
                "token": item.token,
                "uses-allowed": "unlimited" if item.uses_allowed is None else item.uses_allowed,
                "pending": item.pending,
                "completed": item.completed,
                "expiry": _iso(item.expiry_time),
            }
            for item in answer.registration_tokens
        ]
        return {"count": str(len(tokens)), "tokens": json.dumps(tokens)}

    def _revoke_token(self, event: ops.ActionEvent) -> dict[str, str]:
        """Delete a registration token."""
        token = _valid_token(event.params.get("token"))
        admin = self._ready().admin(self.charm.model)
        try:
            admin.request("DELETE", f"/_synapse/admin/v1/registration_tokens/{quote(token, safe='')}")
        except SynapseAPIError as exc:
            if exc.status == 404:
                raise ActionError(f"registration token {token!r} does not exist") from None
            raise
        return {"token": token, "revoked": "true"}


def _valid_token(token: object) -> str:
    """A registration token in the form Synapse accepts; ActionError otherwise."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise ActionError("token must be 1 to 64 characters from A-Z a-z 0-9 . _ ~ -")
    return token
