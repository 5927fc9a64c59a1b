"""The charm's access to Synapse's admin API through its own admin account.

The account is created on first need with shared-secret registration; its user ID,
password and access token live in a unit-owned Juju secret. When Synapse rejects the
token, the charm logs in again (or, if the password no longer works, creates a new
account) and retries once, so operators never have to manage it.
"""

import logging
import secrets
import typing
from urllib.parse import quote

import ops
from pydantic import BaseModel, ConfigDict, ValidationError

from constants import ADMIN_LOCALPART, ADMIN_SECRET_LABEL
from users import user_id
from workload.synapse_api import Answer, AnswerT, SynapseAPIError, SynapseClient

logger = logging.getLogger(__name__)

TOKEN_REJECTED = {"M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"}
LOGIN_REFUSED = {"M_FORBIDDEN", "M_USER_DEACTIVATED"}


class AdminCredentials(BaseModel):
    """The charm's admin account; Juju content keys use '-' where fields use '_'."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    password: str
    access_token: str

    def to_content(self) -> dict[str, str]:
        """Juju secret content."""
        return {key.replace("_", "-"): value for key, value in self.model_dump().items()}

    @classmethod
    def from_content(cls, content: dict[str, str]) -> "AdminCredentials | None":
        """Parse Juju secret content; None if it is unusable (the account is then re-created)."""
        try:
            return cls.model_validate({key.replace("-", "_"): value for key, value in content.items()})
        except ValidationError as exc:
            fields = ", ".join(str(error["loc"][0]) for error in exc.errors() if error["loc"])
            logger.warning("the charm's admin credentials secret is unusable (%s); creating a new account", fields)
            return None


def user_path(uid: str) -> str:
    """A user ID as one URL path segment."""
    return quote(uid, safe="")


class AdminAPI:
    """Calls Synapse's admin API as the charm's admin account."""

    def __init__(self, model: ops.Model, client: SynapseClient, server_name: str, shared_secret: str):
        self.model = model
        self.client = client
        self.server_name = server_name
        self.shared_secret = shared_secret

    def _secret(self) -> ops.Secret | None:
        """This unit's admin credentials secret, if it exists."""
        try:
            return self.model.get_secret(label=ADMIN_SECRET_LABEL)
        except ops.SecretNotFoundError:
            return None

    def _load(self) -> AdminCredentials | None:
        """The stored credentials, if any."""
        secret = self._secret()
        return AdminCredentials.from_content(secret.get_content(refresh=True)) if secret else None

    def _save(self, credentials: AdminCredentials) -> None:
        """Store the credentials in the unit's secret, creating it if needed."""
        secret = self._secret()
        if secret is None:
            self.model.unit.add_secret(
                credentials.to_content(),
                label=ADMIN_SECRET_LABEL,
                description="Synapse admin account the charm uses for the admin API",
            )
        else:
            secret.set_content(credentials.to_content())

    @property
    def admin_user_id(self) -> str | None:
        """The charm's admin account, if it was created."""
        credentials = self._load()
        return credentials.user_id if credentials else None

    def _register(self) -> AdminCredentials:
        """Create a new admin account (a fresh name if the usual one is taken)."""
        password = secrets.token_urlsafe(32)
        for localpart in (ADMIN_LOCALPART, f"{ADMIN_LOCALPART}-{secrets.token_hex(4)}"):
            try:
                answer = self.client.register(self.shared_secret, localpart, password, admin=True)
            except SynapseAPIError as exc:
                if exc.errcode == "M_USER_IN_USE":
                    continue
                raise
            logger.info("created the charm's admin account %s", user_id(localpart, self.server_name))
            return AdminCredentials(user_id=answer.user_id, password=password, access_token=answer.access_token)
        raise SynapseAPIError(400, "M_USER_IN_USE", "no free name for the charm's admin account")

    def _renew(self, stale: AdminCredentials | None) -> AdminCredentials:
        """Log in again with the stored password, or create a new account if that fails."""
        credentials = None
        if stale is not None:
            try:
                answer = self.client.login(stale.user_id, stale.password)
                credentials = stale.model_copy(update={"access_token": answer.access_token})
            except SynapseAPIError as exc:
                # Only a refused password or a deactivated account justify a new account; a rate
                # limit or a server error must not orphan the stored one.
                if exc.errcode not in LOGIN_REFUSED:
                    raise
                logger.warning("the charm's admin account cannot log in (%s); creating a new one", exc.errcode)
        credentials = credentials or self._register()
        self._save(credentials)
        return credentials

    def call(self, model: type[AnswerT], method: str, path: str, body: dict[str, typing.Any] | None = None) -> AnswerT:
        """An admin API call whose answer must be `model`; the token is created or renewed transparently, once."""
        credentials = self._load()
        if credentials is None:
            credentials = self._renew(None)
        try:
            return self.client.call(model, method, path, body, access_token=credentials.access_token)
        except SynapseAPIError as exc:
            if exc.errcode not in TOKEN_REJECTED:
                raise
        credentials = self._renew(credentials)
        return self.client.call(model, method, path, body, access_token=credentials.access_token)

    def request(self, method: str, path: str, body: dict[str, typing.Any] | None = None) -> dict[str, typing.Any]:
        """An admin API call answered by any JSON object (returned as is)."""
        return dict(self.call(Answer, method, path, body).model_extra or {})

    def get_user(self, uid: str) -> dict[str, typing.Any] | None:
        """The admin API's view of a user, None if it does not exist."""
        try:
            return self.request("GET", f"/_synapse/admin/v2/users/{user_path(uid)}")
        except SynapseAPIError as exc:
            if exc.status == 404:
                return None
            raise
