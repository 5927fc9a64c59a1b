"""The HTTP client for the unit's own Synapse (src/workload/synapse_api.py), against a loopback server."""

import time
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from constants import SYNAPSE_VERSION
from tests import strategies
from tests.unit.conftest import FakeSynapse, closed_port, synapse_mac
from workload import synapse_api
from workload.synapse_api import (
    LOCAL_URL,
    SessionAnswer,
    SynapseAnswerError,
    SynapseAPIError,
    SynapseClient,
    SynapseUnavailableError,
)

REGISTER = "/_synapse/admin/v1/register"
# The keys of the answers the client reads.
KEYS = ("server", "version", "nonce", "user_id", "access_token", "errcode", "error")


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


@pytest.mark.parametrize(
    "body",
    ["{}", '{"server": null}', '{"server": "Synapse"}', '{"server": {"version": 1163}}', '{"server": {"version": ""}}'],
)
def test_version_missing_from_answer(client: SynapseClient, fake_synapse: FakeSynapse, body: str) -> None:
    fake_synapse.script("GET", "/_matrix/federation/v1/version", 200, body)
    with pytest.raises(SynapseAnswerError, match=r"GET /_matrix/federation/v1/version is unusable: server"):
        client.version()


@pytest.mark.parametrize("admin", [False, True])
def test_register_sends_the_mac_synapse_computes(client: SynapseClient, fake_synapse: FakeSynapse, admin: bool) -> None:
    answer = client.register(fake_synapse.shared_secret, "alice", "pässword\u2028", admin)

    assert answer.user_id == "@alice:example.com"
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
    whoami = client.request("GET", "/_matrix/client/v3/account/whoami", access_token=login.access_token)
    assert whoami == {"user_id": "@bob:example.com"}
    assert fake_synapse.requests[-1].headers["Authorization"] == f"Bearer {login.access_token}"


def test_login_wrong_password(client: SynapseClient, fake_synapse: FakeSynapse) -> None:
    client.register(fake_synapse.shared_secret, "bob", "hunter2", False)
    with pytest.raises(SynapseAPIError) as excinfo:
        client.login("@bob:example.com", "hunter3")
    assert (excinfo.value.status, excinfo.value.errcode) == (403, "M_FORBIDDEN")


def test_unknown_token(client: SynapseClient) -> None:
    with pytest.raises(SynapseAPIError) as excinfo:
        client.request("GET", "/_matrix/client/v3/account/whoami", access_token="nope")
    assert (excinfo.value.status, excinfo.value.errcode) == (401, "M_UNKNOWN_TOKEN")


def test_non_json_answer_is_an_answer_error(client: SynapseClient, fake_synapse: FakeSynapse) -> None:
    fake_synapse.script("GET", REGISTER, 200, "<html>proxy says hello</html>", content_type="text/html")
    with pytest.raises(SynapseAnswerError, match="not JSON"):
        client.register(fake_synapse.shared_secret, "alice", "pw", False)
    assert fake_synapse.paths() == [("GET", REGISTER)]


@pytest.mark.parametrize("body", [b"[1, 2]", b"null", b"3", b'"text"'])
def test_json_that_is_not_an_object(client: SynapseClient, fake_synapse: FakeSynapse, body: bytes) -> None:
    fake_synapse.script("GET", "/list", 200, body)
    with pytest.raises(SynapseAnswerError, match="not a JSON object"):
        client.request("GET", "/list")


@pytest.mark.parametrize("body", [b"\xff\xfe{}", b'{"a": "\xc3"}', b"[" * 100_000, b"{", b"NaN-ish"])
def test_bodies_that_are_not_utf8_json(client: SynapseClient, fake_synapse: FakeSynapse, body: bytes) -> None:
    fake_synapse.script("GET", "/garbage", 200, body)
    with pytest.raises(SynapseAnswerError, match="GET /garbage is not JSON"):
        client.request("GET", "/garbage")


def test_oversized_answer(client: SynapseClient, fake_synapse: FakeSynapse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synapse_api, "MAX_ANSWER_BYTES", 10)
    fake_synapse.script("GET", "/big", 200, b'{"a": "0123456789"}')
    with pytest.raises(SynapseAnswerError, match="larger than 10 bytes"):
        client.request("GET", "/big")


@pytest.mark.parametrize(
    "body",
    [b"\xff", b'{"errcode": 5, "error": ["x"]}', b'{"errcode": null}', b"[" * 100_000, b'"M_FORBIDDEN"'],
)
def test_matrix_error_of_any_shape(client: SynapseClient, fake_synapse: FakeSynapse, body: bytes) -> None:
    fake_synapse.script("GET", "/refused", 403, body)
    with pytest.raises(SynapseAPIError) as excinfo:
        client.request("GET", "/refused")
    assert (excinfo.value.status, excinfo.value.errcode, excinfo.value.error) == (403, "M_UNKNOWN", "Forbidden")


@pytest.mark.parametrize(
    ("path", "call"),
    [
        ("/_matrix/federation/v1/version", lambda client: client.version()),
        (REGISTER, lambda client: client.register("secret", "alice", "pw", False)),
        ("/_matrix/client/v3/login", lambda client: client.login("@alice:example.com", "pw")),
    ],
)
@given(status=st.sampled_from([200, 201, 400, 401, 403, 404, 429, 500, 502]), body=strategies.mangled_json(KEYS))
def test_any_answer_is_a_typed_error_or_a_typed_answer(
    fake_synapse: FakeSynapse,
    path: str,
    call: typing.Callable[[SynapseClient], object],
    status: int,
    body: bytes,
) -> None:
    fake_synapse.script("GET" if path != "/_matrix/client/v3/login" else "POST", path, status, body)
    client = SynapseClient(fake_synapse.url, timeout=5)
    try:
        answer = call(client)
    except (SynapseAPIError, SynapseAnswerError):
        return
    assert isinstance(answer, str | SessionAnswer)


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
