"""The HTTP client for the unit's own Synapse (src/workload/synapse_api.py), against a loopback server."""

import time

import pytest

from constants import SYNAPSE_VERSION
from tests.unit.conftest import FakeSynapse, closed_port, synapse_mac
from workload.synapse_api import LOCAL_URL, SynapseAPIError, SynapseClient, SynapseUnavailableError

REGISTER = "/_synapse/admin/v1/register"


@pytest.fixture
def client(fake_synapse: FakeSynapse) -> SynapseClient:
    """A client for the fake Synapse."""
    return SynapseClient(fake_synapse.url, timeout=5)


def test_default_address_is_the_local_synapse() -> None:
    assert SynapseClient().base_url == LOCAL_URL == "http://127.0.0.1:8008"
    assert SynapseClient("http://127.0.0.1:1/").base_url == "http://127.0.0.1:1"


def test_version(client: SynapseClient, fake_synapse: FakeSynapse) -> None:
    assert client.version() == SYNAPSE_VERSION
    (request,) = fake_synapse.requests
    assert (request.method, request.path) == ("GET", "/_matrix/federation/v1/version")
    assert "Authorization" not in request.headers
    assert request.body == b""


def test_version_missing_from_answer(client: SynapseClient, fake_synapse: FakeSynapse) -> None:
    fake_synapse.script("GET", "/_matrix/federation/v1/version", 200, "{}")
    assert client.version() == ""


@pytest.mark.parametrize("admin", [False, True])
def test_register_sends_the_mac_synapse_computes(client: SynapseClient, fake_synapse: FakeSynapse, admin: bool) -> None:
    answer = client.register(fake_synapse.shared_secret, "alice", "pässword\u2028", admin)

    assert answer["user_id"] == "@alice:example.com"
    assert fake_synapse.users["@alice:example.com"] == ("pässword\u2028", admin)
    assert fake_synapse.paths() == [("GET", REGISTER), ("POST", REGISTER)]
    post = fake_synapse.requests[1]
    assert post.headers["Content-Type"] == "application/json"
    body = post.json()
    assert set(body) == {"nonce", "username", "password", "admin", "mac"}
    assert body["admin"] is admin
    assert body["mac"] == synapse_mac(fake_synapse.shared_secret, body["nonce"], "alice", "pässword\u2028", admin)
    assert body["mac"] != synapse_mac(fake_synapse.shared_secret, body["nonce"], "alice", "pässword\u2028", not admin)


def test_register_with_wrong_secret_is_refused(client: SynapseClient, fake_synapse: FakeSynapse) -> None:
    with pytest.raises(SynapseAPIError) as excinfo:
        client.register("not-the-secret", "alice", "pw", False)
    assert (excinfo.value.status, excinfo.value.errcode, excinfo.value.error) == (403, "M_FORBIDDEN", "HMAC incorrect")
    assert str(excinfo.value) == "M_FORBIDDEN: HMAC incorrect"
    assert fake_synapse.users == {}


def test_register_existing_user_maps_m_user_in_use(client: SynapseClient, fake_synapse: FakeSynapse) -> None:
    client.register(fake_synapse.shared_secret, "alice", "pw1", False)
    with pytest.raises(SynapseAPIError) as excinfo:
        client.register(fake_synapse.shared_secret, "alice", "pw2", True)
    assert excinfo.value.status == 400
    assert excinfo.value.errcode == "M_USER_IN_USE"
    assert fake_synapse.users["@alice:example.com"] == ("pw1", False)


def test_login_and_authenticated_request(client: SynapseClient, fake_synapse: FakeSynapse) -> None:
    client.register(fake_synapse.shared_secret, "bob", "hunter2", False)
    login = client.login("@bob:example.com", "hunter2")
    body = fake_synapse.requests[-1].json()
    assert body == {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "@bob:example.com"},
        "password": "hunter2",
    }
    whoami = client.request("GET", "/_matrix/client/v3/account/whoami", access_token=login["access_token"])
    assert whoami == {"user_id": "@bob:example.com"}
    assert fake_synapse.requests[-1].headers["Authorization"] == f"Bearer {login['access_token']}"


def test_login_wrong_password(client: SynapseClient, fake_synapse: FakeSynapse) -> None:
    client.register(fake_synapse.shared_secret, "bob", "hunter2", False)
    with pytest.raises(SynapseAPIError) as excinfo:
        client.login("@bob:example.com", "hunter3")
    assert (excinfo.value.status, excinfo.value.errcode) == (403, "M_FORBIDDEN")


def test_unknown_token(client: SynapseClient) -> None:
    with pytest.raises(SynapseAPIError) as excinfo:
        client.request("GET", "/_matrix/client/v3/account/whoami", access_token="nope")
    assert (excinfo.value.status, excinfo.value.errcode) == (401, "M_UNKNOWN_TOKEN")


def test_non_json_answer_is_unavailable(client: SynapseClient, fake_synapse: FakeSynapse) -> None:
    fake_synapse.script("GET", REGISTER, 200, "<html>proxy says hello</html>", content_type="text/html")
    with pytest.raises(SynapseUnavailableError, match="not JSON"):
        client.register(fake_synapse.shared_secret, "alice", "pw", False)
    assert fake_synapse.paths() == [("GET", REGISTER)]


def test_json_that_is_not_an_object(client: SynapseClient, fake_synapse: FakeSynapse) -> None:
    fake_synapse.script("GET", "/list", 200, "[1, 2]")
    assert client.request("GET", "/list") == {"value": [1, 2]}


def test_empty_answer(client: SynapseClient, fake_synapse: FakeSynapse) -> None:
    fake_synapse.script("POST", "/empty", 200, "")
    assert client.request("POST", "/empty", {"a": 1}) == {}
    assert fake_synapse.requests[-1].json() == {"a": 1}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("<html>Bad Gateway</html>", "text/html"), ("[]", "application/json"), ("", "text/plain")],
)
def test_http_error_without_matrix_error(
    client: SynapseClient, fake_synapse: FakeSynapse, body: str, content_type: str
) -> None:
    fake_synapse.script("GET", "/broken", 502, body, content_type=content_type)
    with pytest.raises(SynapseAPIError) as excinfo:
        client.request("GET", "/broken")
    assert (excinfo.value.status, excinfo.value.errcode) == (502, "M_UNKNOWN")
    assert excinfo.value.error == "Bad Gateway"


def test_unknown_endpoint(client: SynapseClient) -> None:
    with pytest.raises(SynapseAPIError) as excinfo:
        client.request("GET", "/_matrix/nothing")
    assert (excinfo.value.status, excinfo.value.errcode) == (404, "M_UNRECOGNIZED")


def test_closed_port_is_unavailable() -> None:
    client = SynapseClient(f"http://127.0.0.1:{closed_port()}", timeout=2)
    with pytest.raises(SynapseUnavailableError, match="did not answer"):
        client.version()
    with pytest.raises(SynapseUnavailableError):
        client.register("secret", "alice", "pw", False)
    assert client.is_healthy() is False


def test_slow_answer_times_out(fake_synapse: FakeSynapse) -> None:
    fake_synapse.script("GET", "/_matrix/federation/v1/version", 200, "{}", delay=2.0)
    client = SynapseClient(fake_synapse.url, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(SynapseUnavailableError):
        client.version()
    assert time.monotonic() - started < 1.5


def test_is_healthy(client: SynapseClient, fake_synapse: FakeSynapse) -> None:
    assert client.is_healthy() is True
    fake_synapse.script("GET", "/health", 503, "starting")
    assert client.is_healthy() is False
