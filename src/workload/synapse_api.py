"""A small client for the HTTP APIs of the unit's own Synapse."""

import hashlib
import hmac
import json
import typing
import urllib.error
import urllib.request

from constants import SYNAPSE_PORT

LOCAL_URL = f"http://127.0.0.1:{SYNAPSE_PORT}"
TIMEOUT = 10


class SynapseUnavailableError(Exception):
    """Synapse did not answer."""


class SynapseAPIError(Exception):
    """Synapse answered with a Matrix error."""

    def __init__(self, status: int, errcode: str, error: str):
        super().__init__(f"{errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error


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
        """Send a JSON request; return the JSON answer or raise SynapseAPIError/SynapseUnavailableError."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        if access_token:
            request.add_header("Authorization", f"Bearer {access_token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http to local Synapse)
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            raise SynapseUnavailableError(f"Synapse at {self.base_url} did not answer: {exc}") from None
        try:
            answer = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            raise SynapseUnavailableError(f"Synapse answered {path} with something that is not JSON") from None
        return answer if isinstance(answer, dict) else {"value": answer}

    def is_healthy(self) -> bool:
        """Whether /health answers OK."""
        request = urllib.request.Request(f"{self.base_url}/health")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def version(self) -> str:
        """Synapse's version, from the unauthenticated federation version endpoint."""
        answer = self.request("GET", "/_matrix/federation/v1/version")
        return str(answer.get("server", {}).get("version", ""))

    def register(self, shared_secret: str, username: str, password: str, admin: bool) -> dict[str, typing.Any]:
        """Register a user through the shared-secret registration API (nonce + HMAC-SHA1)."""
        nonce = str(self.request("GET", "/_synapse/admin/v1/register").get("nonce", ""))
        mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce, username, password):
            mac.update(part.encode())
            mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        body = {"nonce": nonce, "username": username, "password": password, "admin": admin, "mac": mac.hexdigest()}
        return self.request("POST", "/_synapse/admin/v1/register", body)

    def login(self, user_id: str, password: str) -> dict[str, typing.Any]:
        """Log in with a password; returns the login answer (access_token, user_id, ...)."""
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": password}
        return self.request("POST", "/_matrix/client/v3/login", body)


def _api_error(exc: urllib.error.HTTPError) -> SynapseAPIError:
    """The Matrix error carried by an HTTP error answer."""
    try:
        body = json.loads(exc.read() or b"{}")
    except (json.JSONDecodeError, OSError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    return SynapseAPIError(exc.code, str(body.get("errcode", "M_UNKNOWN")), str(body.get("error", exc.reason)))
