"""Shared fixtures for the unit tests: ops.testing states and a small Synapse-like HTTP server.

The charm runs under ops.testing with the workload container's /data mounted from a
temporary directory, so files the charm pushes are read back from the host. The charm's
HTTP client is pointed at a loopback address: a closed port by default (nothing answers,
as when Synapse is down), or `fake_synapse`, a real HTTP server that answers like
Synapse's endpoints.
"""

import contextlib
import dataclasses
import functools
import hashlib
import hmac
import importlib
import json
import secrets
import socket
import threading
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from unittest import mock

import ops
import pytest
import yaml
from ops import testing

import charm
from charm import SynapseCharm
from constants import (
    CHECK_ALIVE,
    CHECK_READY,
    CONTAINER_NAME,
    DATA_DIR,
    NGINX_CONTAINER,
    PEER_RELATION,
    SERVICE_NAME,
    SYNAPSE_VERSION,
)
from tests.pebble_calls import PebbleCalls, record_pebble_calls
from workload import synapse_api

SERVER_NAME = "example.com"
BASE_CONFIG: dict[str, str | int | float | bool] = {"server_name": SERVER_NAME}


def closed_port() -> int:
    """A loopback TCP port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def synapse_mac(secret: str, nonce: str, username: str, password: str, admin: bool) -> str:
    """The shared-secret registration MAC exactly as Synapse checks it.

    HMAC-SHA1 keyed with the shared secret over nonce, user, password and
    "admin"/"notadmin", NUL-separated.
    """
    message = b"\x00".join([nonce.encode(), username.encode(), password.encode(), b"admin" if admin else b"notadmin"])
    return hmac.new(secret.encode(), message, hashlib.sha1).hexdigest()


@dataclasses.dataclass
class Recorded:
    """One request the fake Synapse received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> typing.Any:
        """The request body parsed as JSON."""
        return json.loads(self.body)


@dataclasses.dataclass
class Scripted:
    """A canned answer replacing the fake's behaviour for one method and path."""

    status: int
    body: bytes
    content_type: str = "application/json"
    delay: float = 0.0


class FakeSynapse:
    """A loopback HTTP server answering like Synapse's health, version, register and login endpoints."""

    def __init__(self) -> None:
        self.shared_secret = "fake-shared-secret"
        self.server_name = SERVER_NAME
        self.version = SYNAPSE_VERSION
        self.users: dict[str, tuple[str, bool]] = {}
        self.tokens: dict[str, str] = {}
        self.nonces: set[str] = set()
        self.requests: list[Recorded] = []
        self.scripted: dict[tuple[str, str], Scripted] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def script(self, method: str, path: str, status: int, body: bytes | str, **kwargs: typing.Any) -> None:
        """Answer `method path` with a canned response from now on."""
        raw = body.encode() if isinstance(body, str) else body
        self.scripted[(method, path)] = Scripted(status, raw, **kwargs)

    def paths(self) -> list[tuple[str, str]]:
        """(method, path) of every request received, in order."""
        return [(r.method, r.path) for r in self.requests]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        """A request handler class bound to this fake."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: typing.Any) -> None:
                """Stay quiet."""

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                record = Recorded(self.command, self.path, dict(self.headers.items()), body)
                with fake._lock:
                    fake.requests.append(record)
                status, payload, content_type = fake._answer(record)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

        return Handler

    def _answer(self, request: Recorded) -> tuple[int, bytes, str]:
        """Status, body and content type for a request."""
        canned = self.scripted.get((request.method, request.path))
        if canned is not None:
            if canned.delay:
                threading.Event().wait(canned.delay)
            return canned.status, canned.body, canned.content_type
        route = {
            ("GET", "/health"): lambda: (200, "OK"),
            ("GET", "/_matrix/federation/v1/version"): lambda: (
                200,
                {"server": {"name": "Synapse", "version": self.version}},
            ),
            ("GET", "/_synapse/admin/v1/register"): self._new_nonce,
            ("POST", "/_synapse/admin/v1/register"): lambda: self._register(request.json()),
            ("POST", "/_matrix/client/v3/login"): lambda: self._login(request.json()),
            ("GET", "/_matrix/client/v3/account/whoami"): lambda: self._whoami(request.headers),
        }.get((request.method, request.path))
        if route is None:
            return (
                404,
                json.dumps({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}).encode(),
                "application/json",
            )
        status, answer = route()
        if isinstance(answer, str):
            return status, answer.encode(), "text/plain"
        return status, json.dumps(answer).encode(), "application/json"

    @staticmethod
    def _error(status: int, errcode: str, error: str) -> tuple[int, dict[str, str]]:
        return status, {"errcode": errcode, "error": error}

    def _new_nonce(self) -> tuple[int, dict[str, str]]:
        nonce = secrets.token_hex(16)
        with self._lock:
            self.nonces.add(nonce)
        return 200, {"nonce": nonce}

    def _register(self, body: dict[str, typing.Any]) -> tuple[int, dict[str, typing.Any]]:
        nonce = str(body.get("nonce", ""))
        with self._lock:
            if nonce not in self.nonces:
                return self._error(400, "M_UNKNOWN", "unrecognised nonce")
            self.nonces.discard(nonce)
        username, password, admin = str(body["username"]), str(body["password"]), bool(body.get("admin"))
        expected = synapse_mac(self.shared_secret, nonce, username, password, admin)
        if not hmac.compare_digest(expected, str(body.get("mac", ""))):
            return self._error(403, "M_FORBIDDEN", "HMAC incorrect")
        user = f"@{username}:{self.server_name}"
        with self._lock:
            if user in self.users:
                return self._error(400, "M_USER_IN_USE", "User ID already taken.")
            self.users[user] = (password, admin)
        return 200, {"user_id": user, "home_server": self.server_name, "access_token": secrets.token_hex(8)}

    def _login(self, body: dict[str, typing.Any]) -> tuple[int, dict[str, typing.Any]]:
        user = str(body.get("identifier", {}).get("user", ""))
        if body.get("type") != "m.login.password" or self.users.get(user, ("", False))[0] != body.get("password"):
            return self._error(403, "M_FORBIDDEN", "Invalid username or password")
        token = secrets.token_hex(8)
        with self._lock:
            self.tokens[token] = user
        return 200, {"user_id": user, "access_token": token, "device_id": "DEVICE"}

    def _whoami(self, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return self._error(401, "M_UNKNOWN_TOKEN", "Invalid access token passed.")
        return 200, {"user_id": self.tokens[token]}


@pytest.fixture
def fake_synapse(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSynapse]:
    """A running fake Synapse; the charm's client talks to it instead of 127.0.0.1:8008."""
    fake = FakeSynapse()
    fake.start()
    monkeypatch.setattr(charm, "SynapseClient", functools.partial(synapse_api.SynapseClient, base_url=fake.url))
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture(scope="session", autouse=True)
def _fast_charm_root() -> Iterator[None]:
    """Let ops.testing write its per-run copy of the charm's metadata with libyaml.

    Every Context.run dumps metadata, config and actions to a temporary charm root with
    PyYAML's pure-Python emitter, which is most of a run's cost; libyaml's emitter writes
    the same documents about ten times faster.
    """
    runtime = importlib.import_module("scenario._runtime")
    if not (yaml.__with_libyaml__ and hasattr(runtime, "yaml")):
        yield
        return
    fast = types.SimpleNamespace(safe_dump=functools.partial(yaml.dump, Dumper=yaml.CSafeDumper))
    with mock.patch.object(runtime, "yaml", fast):
        yield


@pytest.fixture(autouse=True)
def _no_local_synapse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the charm's Synapse client at a closed loopback port, never at a real 127.0.0.1:8008."""
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setattr(charm, "SynapseClient", functools.partial(synapse_api.SynapseClient, base_url=url))


@dataclasses.dataclass
class SideEffects:
    """What the charm did to Pebble and Juju while recording."""

    pebble: PebbleCalls
    pushes: list[str]
    layers: list[str]
    relation_writes: list[dict[str, str]]

    @property
    def nothing(self) -> bool:
        """Whether no lifecycle call, push, layer change or relation write happened."""
        return not (self.pebble.calls or self.pushes or self.layers or self.relation_writes)


@contextlib.contextmanager
def record_side_effects() -> Iterator[SideEffects]:
    """Record Pebble lifecycle calls, file pushes, added layers and relation-data writes (calling through)."""
    pushes: list[str] = []
    layers: list[str] = []
    writes: list[dict[str, str]] = []
    original_push = ops.Container.push
    original_add_layer = ops.Container.add_layer
    original_update = ops.model._ModelBackend.update_relation_data

    def push(self: ops.Container, path: str | PurePosixPath, *args: typing.Any, **kwargs: typing.Any) -> None:
        pushes.append(str(path))
        original_push(self, path, *args, **kwargs)

    def add_layer(self: ops.Container, label: str, *args: typing.Any, **kwargs: typing.Any) -> None:
        layers.append(label)
        original_add_layer(self, label, *args, **kwargs)

    def update(
        self: ops.model._ModelBackend, relation_id: int, entity: typing.Any, data: typing.Any, **kw: typing.Any
    ) -> None:
        writes.append(dict(data))
        original_update(self, relation_id, entity, data, **kw)

    with (
        record_pebble_calls() as pebble,
        mock.patch.object(ops.Container, "push", push),
        mock.patch.object(ops.Container, "add_layer", add_layer),
        mock.patch.object(ops.model._ModelBackend, "update_relation_data", update),
    ):
        yield SideEffects(pebble, pushes, layers, writes)


def ready_check(
    successes: int | None = 1, status: ops.pebble.CheckStatus = ops.pebble.CheckStatus.UP
) -> testing.CheckInfo:
    """The ready check as Pebble reports it."""
    failures = 0 if status == ops.pebble.CheckStatus.UP else 3
    return testing.CheckInfo(
        CHECK_READY, level=ops.pebble.CheckLevel.READY, status=status, successes=successes, failures=failures
    )


def alive_check() -> testing.CheckInfo:
    """The alive check, up."""
    return testing.CheckInfo(CHECK_ALIVE, level=ops.pebble.CheckLevel.ALIVE, threshold=5, successes=1)


@functools.cache
def charm_spec() -> tuple[Mapping[str, typing.Any], Mapping[str, typing.Any] | None, Mapping[str, typing.Any] | None]:
    """The charm's metadata, config and actions as ops.testing autoloads them, read once per session."""
    spec = testing.Context(SynapseCharm)._charm_spec
    return spec.meta, spec.config, spec.actions


class CharmEnv:
    """Builds ops.testing states for the Synapse charm around one host directory mounted at /data."""

    def __init__(self, tmp_path: Path):
        self.ctx = self.context()
        self.tmp_path = tmp_path
        self.data_dir = self.new_data_dir()

    @staticmethod
    def context(unit_id: int = 0) -> testing.Context[SynapseCharm]:
        """An ops.testing Context of the charm, running hooks as unit `synapse/<unit_id>`."""
        meta, config, actions = charm_spec()
        return testing.Context(
            SynapseCharm,
            meta=dict(meta),
            config=dict(config) if config is not None else None,
            actions=dict(actions) if actions is not None else None,
            unit_id=unit_id,
        )

    def new_data_dir(self) -> Path:
        """A fresh, empty directory to mount at /data (a new or wiped volume)."""
        index = len(list(self.tmp_path.glob("data*")))
        path = self.tmp_path / f"data{index}"
        path.mkdir()
        return path

    def container(
        self, *, can_connect: bool = True, data_dir: Path | None = None, **kwargs: typing.Any
    ) -> testing.Container:
        """The synapse container with /data mounted from the host."""
        mount = testing.Mount(location=str(DATA_DIR), source=data_dir or self.data_dir)
        return testing.Container(CONTAINER_NAME, can_connect=can_connect, mounts={"data": mount}, **kwargs)

    def state(
        self,
        config: Mapping[str, str | int | float | bool] | None = None,
        *,
        leader: bool = True,
        container: testing.Container | None = None,
        peer: testing.PeerRelation | bool | None = True,
        **kwargs: typing.Any,
    ) -> testing.State:
        """A state with the base config (plus `config`), the container and the peer relation."""
        relations = set(kwargs.pop("relations", ()))
        if peer is True:
            relations.add(testing.PeerRelation(PEER_RELATION))
        elif isinstance(peer, testing.PeerRelation):
            relations.add(peer)
        return testing.State(
            leader=leader,
            config={**BASE_CONFIG, **(config or {})},
            containers={container or self.container()},
            relations=relations,
            **kwargs,
        )

    def run(self, event: Callable[[testing.State], typing.Any] | typing.Any, state: testing.State) -> testing.State:
        """Run an event (or a function of the state returning one) on `state`."""
        return self.ctx.run(event(state) if callable(event) else event, state)

    def pebble_ready(self, state: testing.State) -> testing.State:
        """Run pebble-ready for the synapse container of `state`."""
        return self.ctx.run(self.ctx.on.pebble_ready(state.get_container(CONTAINER_NAME)), state)

    def started(
        self, config: Mapping[str, str | int | float | bool] | None = None, **kwargs: typing.Any
    ) -> testing.State:
        """A leader that ran pebble-ready: Synapse configured and started."""
        out = self.pebble_ready(self.state(config, **kwargs))
        assert out.get_container(CONTAINER_NAME).service_statuses.get(SERVICE_NAME) == ops.pebble.ServiceStatus.ACTIVE
        return out

    @staticmethod
    def with_checks(state: testing.State, *checks: testing.CheckInfo) -> testing.State:
        """`state` with the container's Pebble check infos replaced."""
        container = state.get_container(CONTAINER_NAME)
        others = {other for other in state.containers if other.name != CONTAINER_NAME}
        return dataclasses.replace(
            state, containers=frozenset({*others, dataclasses.replace(container, check_infos=frozenset(checks))})
        )

    def ready(self, state: testing.State, successes: int | None = 1) -> testing.State:
        """`state` with both checks up and the ready check having succeeded `successes` times."""
        return self.with_checks(state, alive_check(), ready_check(successes))

    @staticmethod
    def with_config(state: testing.State, **config: str | int | float | bool) -> testing.State:
        """`state` with config options changed."""
        return dataclasses.replace(state, config={**state.config, **config})

    @staticmethod
    def with_relations(state: testing.State, *relations: testing.RelationBase) -> testing.State:
        """`state` with `relations` added."""
        return dataclasses.replace(state, relations=frozenset({*state.relations, *relations}))

    @staticmethod
    def without_relation(state: testing.State, relation_id: int) -> testing.State:
        """`state` without the relation `relation_id` (as after relation-broken)."""
        return dataclasses.replace(state, relations=frozenset(r for r in state.relations if r.id != relation_id))

    @classmethod
    def replace_relation(cls, state: testing.State, relation: testing.RelationBase) -> testing.State:
        """`state` with the relation of the same id replaced by `relation`."""
        return cls.with_relations(cls.without_relation(state, relation.id), relation)

    def host_path(self, path: PurePosixPath, data_dir: Path | None = None) -> Path:
        """Where a container path under /data is on the host."""
        return (data_dir or self.data_dir) / path.relative_to(DATA_DIR)

    def read(self, path: PurePosixPath, data_dir: Path | None = None) -> str:
        """Content of a container file under /data."""
        return self.host_path(path, data_dir).read_text()

    @staticmethod
    def server_secret(state: testing.State) -> testing.Secret:
        """The one Juju secret in `state`."""
        (secret,) = state.secrets
        return secret


def with_pod_containers(state: testing.State) -> testing.State:
    """`state` with the pod's nginx container (not up) when a test left it out.

    Juju always gives the charm both containers; most tests here are about Synapse's and
    leave nginx out, so its container is there but not up yet (as before its pebble-ready),
    and the charm leaves it alone. Tests of nginx put it in the State themselves.
    """
    if any(container.name == NGINX_CONTAINER for container in state.containers):
        return state
    nginx = testing.Container(NGINX_CONTAINER, can_connect=False)
    return dataclasses.replace(state, containers=frozenset({*state.containers, nginx}))


@pytest.fixture(autouse=True, scope="session")
def _pod_containers() -> Iterator[None]:
    """Every SynapseCharm run gets the pod's nginx container (see `with_pod_containers`).

    Session-wide, so module-scoped fixtures that run the charm get it too.
    """
    run, manager = testing.Context.run, testing.Context.__call__

    def _for_synapse(ctx: testing.Context[typing.Any], state: testing.State) -> testing.State:
        containers = ctx.charm_spec.meta.get("containers") or {}
        return with_pod_containers(state) if NGINX_CONTAINER in containers else state

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(testing.Context, "run", lambda ctx, event, state: run(ctx, event, _for_synapse(ctx, state)))
        monkeypatch.setattr(
            testing.Context, "__call__", lambda ctx, event, state: manager(ctx, event, _for_synapse(ctx, state))
        )
        yield


@pytest.fixture
def env(tmp_path: Path) -> CharmEnv:
    """A charm environment with an empty /data."""
    return CharmEnv(tmp_path)


@pytest.fixture
def side_effects() -> Callable[[], contextlib.AbstractContextManager[SideEffects]]:
    """The side-effect recorder, as a context manager factory."""
    return record_side_effects


# Strings that would change a YAML document's structure, or a template's, if pasted raw.
HOSTILE_STRINGS = [
    "'",
    '"',
    "\n",
    "\r",
    "\nenable_registration: true",
    '!!python/object/apply:os.system ["id"]',
    "{{ 7*7 }}",
    "{% if %}",
    "# comment",
    "&anchor",
    "*alias",
    "\x00",
    "\u2028",
    "\x85",
    "\U0001f600",
    "   ",
    "x" * 5000,
]


def run_recording_relation_sets(
    ctx: testing.Context[typing.Any], event: typing.Any, state: testing.State
) -> tuple[testing.State, ops.CharmBase, list[dict[str, str]]]:
    """Run one hook; return the output State, the charm, and every relation-set it made."""
    with ctx(event, state) as manager:
        backend = manager.charm.model._backend
        sets: list[dict[str, str]] = []
        original = backend.relation_set

        def recording_relation_set(*args: typing.Any, **kwargs: typing.Any) -> None:
            sets.append(dict(kwargs.get("data") or args[1]))
            original(*args, **kwargs)

        backend.relation_set = recording_relation_set  # type: ignore[method-assign]
        out = manager.run()
        return out, manager.charm, sets
