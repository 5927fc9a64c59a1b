"""A small client for the HTTP APIs of the unit's own Synapse.

Every answer is parsed in one place: a JSON object validated by a pydantic model below.
Anything else (no answer, a body that is not UTF-8 JSON, a JSON value of the wrong shape)
becomes a typed error: `SynapseUnavailableError`, `SynapseAnswerError` or, for a Matrix
error answer, `SynapseAPIError`.
"""

import hashlib
import hmac
import http.client
import json
import typing
import urllib.error
import urllib.request

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from constants import SYNAPSE_PORT

LOCAL_URL = f"http://127.0.0.1:{SYNAPSE_PORT}"
TIMEOUT = 10
# Synapse's answers to the charm are small; a larger body is not read (and not trusted).
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# Milliseconds since the epoch that Python's datetime can represent (up to year 9999).
MAX_TIMESTAMP_MS = 253402300799999


class SynapseUnavailableError(Exception):
    """Synapse did not answer."""


class SynapseAnswerError(Exception):
    """Synapse answered, but not with what the charm expects; the message says what was wrong."""


class SynapseAPIError(Exception):
    """Synapse answered with a Matrix error."""

    def __init__(self, status: int, errcode: str, error: str):
        super().__init__(f"{errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error


# --- answers ----------------------------------------------------------------------------------


class Answer(BaseModel):
    """A JSON object answer whose content the charm does not use."""

    model_config = ConfigDict(frozen=True, extra="allow")


class MatrixError(BaseModel):
    """The body of a Matrix error answer; both fields fall back to something readable."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    errcode: StrictStr = Field(default="M_UNKNOWN", max_length=128)
    error: StrictStr = Field(default="", max_length=1024)


class ServerVersion(BaseModel):
    """`server` in the federation version answer."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")


class VersionAnswer(BaseModel):
    """GET /_matrix/federation/v1/version."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    server: ServerVersion


class NonceAnswer(BaseModel):
    """GET /_synapse/admin/v1/register."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    nonce: StrictStr = Field(min_length=1, max_length=1024)


class SessionAnswer(BaseModel):
    """A registration or login answer: whose session, and its access token."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    user_id: StrictStr = Field(min_length=1, max_length=255)
    access_token: StrictStr = Field(min_length=1, max_length=4096, repr=False)


class RegistrationToken(BaseModel):
    """One registration token as the admin API describes it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    token: StrictStr = Field(min_length=1, max_length=64)
    uses_allowed: StrictInt | None = Field(default=None, ge=0)
    pending: StrictInt = Field(default=0, ge=0)
    completed: StrictInt = Field(default=0, ge=0)
    expiry_time: StrictInt | None = Field(default=None, ge=0, le=MAX_TIMESTAMP_MS)


class RegistrationTokens(BaseModel):
    """GET /_synapse/admin/v1/registration_tokens."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    registration_tokens: list[RegistrationToken]


AnswerT = typing.TypeVar("AnswerT", bound=BaseModel)


def parse_answer(model: type[AnswerT], answer: object, what: str) -> AnswerT:
    """`answer` as `model`, or SynapseAnswerError naming the first field that was wrong."""
    try:
        return model.model_validate(answer)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "the answer"
        raise SynapseAnswerError(f"Synapse's answer to {what} is unusable: {where}: {error['msg']}") from None


def _json_object(raw: bytes, what: str) -> dict[str, typing.Any]:
    """A body as a JSON object (an empty body is an empty object), or SynapseAnswerError."""
    if not raw:
        return {}
    try:
        answer = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise SynapseAnswerError(f"Synapse's answer to {what} is not JSON") from None
    if not isinstance(answer, dict):
        raise SynapseAnswerError(f"Synapse's answer to {what} is not a JSON object")
    return answer


class SynapseClient:
    """Calls Synapse's client, federation and admin APIs."""

    def __init__(self, base_url: str = LOCAL_URL, timeout: float = TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, typing.Any] | None = None,
        access_token: str | None = None,
    ) -> dict[str, typing.Any]:
        """Send a JSON request; return the JSON object answered.

        Raises SynapseAPIError (a Matrix error), SynapseUnavailableError (no answer) or
        SynapseAnswerError (an answer that is not a JSON object).
        """
        what = f"{method} {path.partition('?')[0]}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        if access_token:
            request.add_header("Authorization", f"Bearer {access_token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http to local Synapse)
                raw = response.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise SynapseUnavailableError(f"Synapse at {self.base_url} did not answer: {exc}") from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise SynapseAnswerError(f"Synapse's answer to {what} is larger than {MAX_ANSWER_BYTES} bytes")
        return _json_object(raw, what)

    def call(
        self,
        model: type[AnswerT],
        method: str,
        path: str,
        body: dict[str, typing.Any] | None = None,
        access_token: str | None = None,
    ) -> AnswerT:
        """`request`, with the answer validated as `model` (SynapseAnswerError otherwise)."""
        answer = self.request(method, path, body, access_token)
        return parse_answer(model, answer, f"{method} {path.partition('?')[0]}")

    def is_healthy(self) -> bool:
        """Whether /health answers OK."""
        request = urllib.request.Request(f"{self.base_url}/health")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status == 200
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            return False

    def version(self) -> str:
        """Synapse's version, from the unauthenticated federation version endpoint."""
        return self.call(VersionAnswer, "GET", "/_matrix/federation/v1/version").server.version

    def register(self, shared_secret: str, username: str, password: str, admin: bool) -> SessionAnswer:
        """Register a user through the shared-secret registration API (nonce + HMAC-SHA1)."""
        nonce = self.call(NonceAnswer, "GET", "/_synapse/admin/v1/register").nonce
        mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce, username, password):
            mac.update(part.encode())
            mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        body = {"nonce": nonce, "username": username, "password": password, "admin": admin, "mac": mac.hexdigest()}
        return self.call(SessionAnswer, "POST", "/_synapse/admin/v1/register", body)

    def login(self, user_id: str, password: str) -> SessionAnswer:
        """Log in with a password; returns the session (user_id, access_token)."""
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": password}
        return self.call(SessionAnswer, "POST", "/_matrix/client/v3/login", body)


def _api_error(exc: urllib.error.HTTPError) -> SynapseAPIError:
    """The Matrix error carried by an HTTP error answer (any body: a readable fallback)."""
    try:
        raw = exc.read(MAX_ANSWER_BYTES)
    except (OSError, http.client.HTTPException):
        raw = b""
    try:
        error = parse_answer(MatrixError, _json_object(raw, "an error"), "an error")
    except SynapseAnswerError:
        error = MatrixError()
    return SynapseAPIError(exc.code, error.errcode, error.error or str(exc.reason))
