"""Debian's nginx on the charm's rendered nginx.conf, in front of two stub Synapse processes.

Each test builds a private network: the unit's host (nginx on NGINX_PORT, its worker on
127.0.0.1:8008) and the main's host (the main on <address>:8008), plus a client host, each in
its own network namespace, so port 8080 never clashes with anything. nginx runs exactly on the
rendered file, given only `-c`; its /tmp (pid and temp files) is a private directory
bind-mounted in a mount namespace of its own, as a pod's /tmp is its own.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from constants import NGINX_PORT, SYNAPSE_PORT
from tests.workload.netns import Namespace, TestHost, TestNetwork
from workload.nginx import NginxRoutes, render_nginx_config

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MAX_BODY = 4096
START_TIMEOUT = 15.0
# Runs nginx with `dir` bind-mounted on /tmp, in a mount namespace of its own.
_PRIVATE_TMP = 'mount --bind "$0" /tmp && exec "$@"'

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="needs Debian's nginx")

WORKER_PATHS = (
    "/_matrix/client/v3/sync",
    "/_matrix/client/v3/sync?since=s1&timeout=30000",
    "/_matrix/client/v3/rooms/!a:x/send/m.room.message/t1",
    "/_matrix/client/v3/login",
    "/_matrix/client/versions",
    "/_matrix/federation/v1/send/123",
    "/_matrix/key/v2/query",
)
MAIN_PATHS = (
    "/health",
    "/_matrix/media/v3/upload",
    "/_matrix/client/v1/media/download/x/y",
    "/_synapse/admin/v1/users/x",
    "/_matrix/client/v3/rooms/!a:x/messages",
    "/_matrix/client/v3/pushrules/",
    "/_matrix/key/v2/server",
)


class _Backend(BaseHTTPRequestHandler):
    """Answers every request with the server's name and what it received."""

    server: _NamedServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        document = {
            "backend": self.server.name,
            "path": self.path,
            "method": self.command,
            "body_length": len(body),
            "x_forwarded_for": self.headers.get("X-Forwarded-For"),
            "x_forwarded_proto": self.headers.get("X-Forwarded-Proto"),
            "host": self.headers.get("Host"),
        }
        payload = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _answer  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class _NamedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], name: str):
        self.name = name
        super().__init__(address, _Backend)


@contextlib.contextmanager
def backend(namespace: Namespace, address: str, name: str) -> Iterator[None]:
    """A stub Synapse answering `name` on address:SYNAPSE_PORT inside `namespace`."""
    with namespace.entered():
        server = _NamedServer((address, SYNAPSE_PORT), name)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class Nginx:
    """nginx on a rendered config in `namespace`, with a private /tmp."""

    def __init__(self, directory: Path, namespace: Namespace):
        self.tmp = directory / "tmp"
        self.tmp.mkdir(parents=True)
        self.namespace = namespace
        self.popen: subprocess.Popen[bytes] | None = None

    def _argv(self, *args: str) -> list[str]:
        """The nginx command line with `args`, on /tmp/nginx.conf, with the private /tmp."""
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _PRIVATE_TMP, str(self.tmp)]
        return self.namespace.wrap([*command, NGINX, "-c", "/tmp/nginx.conf", *args])

    def write(self, config: str) -> None:
        """Write nginx.conf."""
        (self.tmp / "nginx.conf").write_text(config)

    def check(self, config: str) -> subprocess.CompletedProcess[str]:
        """`nginx -t` on `config`."""
        self.write(config)
        return subprocess.run(self._argv("-t"), capture_output=True, text=True, check=False, timeout=60)

    def start(self, config: str) -> None:
        """Run nginx on `config` as the Pebble service does, and wait until it listens."""
        self.write(config)
        self.popen = subprocess.Popen(self._argv("-g", "daemon off;"), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._listening():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("nginx did not start")
            time.sleep(0.05)

    def reload(self, config: str) -> None:
        """Rewrite the config and run `nginx -s reload` where nginx runs, as the charm does with exec."""
        assert self.popen is not None
        self.write(config)
        mounts = f"--mount=/proc/{self.popen.pid}/ns/mnt"
        done = subprocess.run(
            ["nsenter", mounts, f"--net=/proc/{self.popen.pid}/ns/net", NGINX, "-c", "/tmp/nginx.conf", "-s", "reload"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    def _listening(self) -> bool:
        """Whether nginx accepts connections on NGINX_PORT."""
        with self.namespace.entered(), socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", NGINX_PORT)) == 0

    def stop(self) -> str:
        """Stop nginx; its stderr."""
        if self.popen is None:
            return ""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        stderr = self.popen.stderr.read().decode() if self.popen.stderr else ""
        self.popen = None
        return stderr


class Pod:
    """A worker unit's pod (nginx + its worker), the main's host and a client, on one network."""

    def __init__(self, network: TestNetwork, directory: Path):
        self.unit: TestHost = network.add_host("unit")
        self.main: TestHost = network.add_host("main")
        self.client: TestHost = network.add_host("client")
        self.nginx = Nginx(directory, self.unit.namespace)

    def routes(self, *, worker: bool) -> NginxRoutes:
        """This unit's routes: the main on its host, the worker (if any) on the unit's loopback."""
        return NginxRoutes(
            main=f"{self.main.address}:{SYNAPSE_PORT}",
            worker=f"127.0.0.1:{SYNAPSE_PORT}" if worker else None,
            max_body_size=MAX_BODY,
        )

    def request(
        self, path: str, *, data: bytes | None = None, headers: dict[str, str] | None = None, local: bool = False
    ) -> tuple[int, dict[str, object]]:
        """(status, backend's answer) for a request to the unit's nginx, from the client host or the unit itself."""
        host = "127.0.0.1" if local else self.unit.address
        request = urllib.request.Request(f"http://{host}:{NGINX_PORT}{path}", data=data, headers=headers or {})
        if data is not None:
            request.method = "POST"
        with (self.unit if local else self.client).namespace.entered():
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (local http)
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, {}

    def served_by(self, path: str) -> object:
        """Which backend answered `path`."""
        status, answer = self.request(path)
        assert status == 200, (path, status)
        assert answer["path"] == path  # passed on unchanged
        return answer["backend"]


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[Pod]:
    """A worker unit's pod with its worker and the main running, nginx not started yet."""
    with TestNetwork() as network:
        pod = Pod(network, tmp_path)
        with backend(pod.unit.namespace, "127.0.0.1", "worker"), backend(pod.main.namespace, pod.main.address, "main"):
            try:
                yield pod
            finally:
                pod.nginx.stop()


@pytest.mark.parametrize(
    "routes",
    [
        NginxRoutes(main="127.0.0.1:8008", worker=None, max_body_size=50 * 1024**2),
        NginxRoutes(main="10.1.2.3:8008", worker="127.0.0.1:8008", max_body_size=1),
        NginxRoutes(main="[fd00::1]:8008", worker="[::1]:8008", max_body_size=2**63 - 1),
        NginxRoutes(main="localhost:65535", worker="127.0.0.1:1", max_body_size=2**53 - 1),
    ],
)
def test_nginx_accepts_the_rendered_config(tmp_path: Path, routes: NginxRoutes) -> None:
    namespace = Namespace("nginx-t")
    try:
        done = Nginx(tmp_path, namespace).check(render_nginx_config(routes))
    finally:
        namespace.close()
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_worker_unit_routes_worker_endpoints_to_its_worker(pod: Pod) -> None:
    pod.nginx.start(render_nginx_config(pod.routes(worker=True)))
    for path in WORKER_PATHS:
        assert pod.served_by(path) == "worker", path
    for path in MAIN_PATHS:
        assert pod.served_by(path) == "main", path


def test_without_a_worker_everything_goes_to_the_main(pod: Pod) -> None:
    pod.nginx.start(render_nginx_config(pod.routes(worker=False)))
    for path in WORKER_PATHS + MAIN_PATHS:
        assert pod.served_by(path) == "main", path


def test_reload_switches_routes_without_a_restart(pod: Pod) -> None:
    pod.nginx.start(render_nginx_config(pod.routes(worker=True)))
    assert pod.served_by("/_matrix/client/v3/sync") == "worker"
    master = pod.nginx.popen.pid if pod.nginx.popen else None
    pod.nginx.reload(render_nginx_config(pod.routes(worker=False)))
    deadline = time.monotonic() + 10
    while pod.served_by("/_matrix/client/v3/sync") != "main":
        assert time.monotonic() < deadline, "the reloaded config is not in use"
        time.sleep(0.1)
    assert pod.nginx.popen is not None and pod.nginx.popen.pid == master
    assert pod.nginx.popen.poll() is None


def test_bodies_over_the_limit_are_refused(pod: Pod) -> None:
    pod.nginx.start(render_nginx_config(pod.routes(worker=True)))
    status, answer = pod.request("/_matrix/media/v3/upload", data=b"x" * MAX_BODY)
    assert (status, answer["backend"], answer["body_length"]) == (200, "main", MAX_BODY)
    status, _ = pod.request("/_matrix/media/v3/upload", data=b"x" * (MAX_BODY + 1))
    assert status == 413
    status, _ = pod.request("/_matrix/client/v3/rooms/!a:x/send/m.room.message/t2", data=b"x" * (MAX_BODY + 1))
    assert status == 413


def test_forwarded_headers_name_the_real_client(pod: Pod) -> None:
    pod.nginx.start(render_nginx_config(pod.routes(worker=True)))
    # A client outside the private ranges cannot choose the address Synapse sees.
    _, answer = pod.request("/_matrix/client/v3/sync", headers={"X-Forwarded-For": "10.9.9.9"})
    assert answer["x_forwarded_for"] == pod.client.address
    assert answer["x_forwarded_proto"] == "http"
    assert answer["host"] == pod.unit.address
    # A proxy on a private address (here the unit's loopback) is believed, rightmost untrusted hop first.
    headers = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.0.0.5", "X-Forwarded-Proto": "https"}
    _, answer = pod.request("/_matrix/client/v3/sync", headers=headers, local=True)
    assert answer["x_forwarded_for"] == "203.0.113.7"
    assert answer["x_forwarded_proto"] == "https"
    # Only https is taken from the header: anything else is how the request reached nginx.
    _, answer = pod.request("/health", headers={"X-Forwarded-Proto": "gopher"})
    assert answer["x_forwarded_proto"] == "http"
