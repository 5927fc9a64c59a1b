"""Debian's nginx as a test host's TLS-terminating reverse proxy and static web server.

It stands in for an ingress (traefik, nginx-ingress-integrator) or for the operator's web
server on the server_name's domain: `proxy` sites forward to an upstream with the
X-Forwarded-* headers an ingress sets, `static` sites serve fixed documents.

    web = Nginx(tmp_path / "nginx-a", host.namespace)
    web.proxy(["matrix.a.test"], cert, key, "http://192.0.2.1:8008", max_body_mib=50)
    web.static(["a.test"], cert, key, {"/.well-known/matrix/server": '{"m.server": "matrix.a.test:443"}'})
    web.start()       # listens on 0.0.0.0:443 in the host's network namespace
    ...
    web.stop()

Runs as root, entirely under its directory (config, logs, temp files, pid).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.workload.netns import Namespace

HTTPS_PORT = 443
START_TIMEOUT = 15.0


@dataclasses.dataclass(frozen=True)
class _Site:
    """One TLS server block."""

    names: tuple[str, ...]
    cert: Path
    key: Path
    body: str


def _quote(text: str) -> str:
    """An nginx string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Nginx:
    """An nginx in a network namespace, configured with TLS sites, started and stopped by a test."""

    def __init__(self, directory: Path, namespace: Namespace | None = None):
        self.directory = directory
        self.namespace = namespace
        self.sites: list[_Site] = []
        self._popen: subprocess.Popen[bytes] | None = None
        self._documents = 0

    def proxy(
        self, names: Sequence[str], cert: Path, key: Path, upstream: str, *, max_body_mib: int | None = None
    ) -> None:
        """Forward https://<names>/ to `upstream` (e.g. http://10.0.0.1:8008), as an ingress controller does."""
        limit = f"client_max_body_size {max_body_mib}m;" if max_body_mib is not None else ""
        body = f"""
        {limit}
        location / {{
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_read_timeout 120s;
        }}"""
        self.sites.append(_Site(tuple(names), cert, key, body))

    def static(
        self, names: Sequence[str], cert: Path, key: Path, documents: Mapping[str, str], *, json: bool = True
    ) -> None:
        """Serve `documents` (path -> content) on https://<names>/, with CORS; anything else is 404."""
        locations = []
        for path, content in documents.items():
            self._documents += 1
            file = self.directory / "www" / f"document-{self._documents}"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(content)
            content_type = "application/json" if json else "text/plain"
            locations.append(
                f"""
        location = {path} {{
            default_type {content_type};
            add_header Access-Control-Allow-Origin "*" always;
            alias {file};
        }}"""
            )
        body = "".join(locations) + "\n        location / { return 404; }"
        self.sites.append(_Site(tuple(names), cert, key, body))

    def _config(self) -> str:
        """nginx.conf for the sites."""
        servers = "".join(
            f"""
    server {{
        listen {HTTPS_PORT} ssl;
        server_name {" ".join(site.names)};
        ssl_certificate {site.cert};
        ssl_certificate_key {site.key};
        {site.body}
    }}"""
            for site in self.sites
        )
        temp = self.directory / "temp"
        return f"""
user root root;
worker_processes 1;
daemon off;
pid {self.directory / "nginx.pid"};
error_log {self.directory / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    access_log {self.directory / "access.log"};
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    server_names_hash_bucket_size 128;
    {servers}
}}
"""

    def _argv(self, *args: str) -> list[str]:
        """The nginx command line with our config, inside the namespace."""
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        argv = [nginx, "-p", str(self.directory), "-e", str(self.directory / "error.log"), "-c", "nginx.conf", *args]
        return self.namespace.wrap(argv) if self.namespace else argv

    def start(self) -> None:
        """Write the config, check it, start nginx and wait until it accepts TLS connections."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "temp").mkdir(exist_ok=True)
        (self.directory / "nginx.conf").write_text(self._config())
        check = subprocess.run(self._argv("-t"), capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refuses its config: {check.stderr}")
        self._popen = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._listening():
            if self._popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def _listening(self) -> bool:
        """Whether port 443 accepts connections in the namespace."""
        with self.namespace.entered() if self.namespace else contextlib.nullcontext(), socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", HTTPS_PORT)) == 0

    def log_tail(self, lines: int = 40) -> str:
        """The end of nginx's error log."""
        try:
            return "\n".join((self.directory / "error.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def access_log(self) -> str:
        """Every request nginx served."""
        try:
            return (self.directory / "access.log").read_text()
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop nginx (a no-op when not running)."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        self._popen = None
