"""Run the charm's rendered files and Pebble layer as a real Synapse process.

The charm is driven by ops.testing with the `synapse` container's /data mounted on a host
directory, so every file the charm pushes lands there. After each hook the harness replays
the Pebble lifecycle calls the charm made (replan, restart, start, stop) on a real Synapse:
the plan's command, environment, user, group and working directory, run in a private mount
namespace where /data is that host directory. Before each hook it mirrors the real process
into the ops.testing State (service status, ready check), so the charm sees what Pebble
would report.

Needs root (unshare, mount, setpriv, chown). Nothing is mounted in the host's namespace.

A driver can also give its unit a machine of its own (`SystemView`), as a pod would have:
its own network namespace (see tests/workload/netns.py, for several Synapses at once), an
/etc/hosts naming test hosts, and a CA trust bundle that includes a test CA (see
tests/workload/tls.py), bind-mounted over /etc/ssl/certs/ca-certificates.crt, the bundle
Debian's OpenSSL reads (and so Synapse's Twisted TLS, in the image as here):

    CharmDriver(data_dir, config, netns=host.namespace, hosts=network.hosts(), trusted_ca=ca_path)

The hook, its Pebble execs, the harness's health checks and `driver.entered()` blocks then
all run in that namespace, so `127.0.0.1:8008` is that unit's Synapse.

A driver created with `nginx=True` also has the pod's `nginx` container: its /etc/nginx is a
host directory (seeded with Debian's mime.types and friends, as the image has its own), and
the charm's Pebble calls on it run a real Debian nginx (/usr/sbin/nginx) in the unit's view,
with /etc/nginx bound to that directory and private /run, /tmp, /var/lib/nginx, /var/log/nginx
and /var/cache/nginx (so several units' nginx never share a pid file). `container.exec` on it runs
the command in the same layout: `nginx -s reload` signals that unit's nginx, and returns once
new worker processes replaced the old ones, as the reloaded config then serves.

Any service command runs as the plan says, e.g. a unit's generic worker
(`python -m synapse.app.generic_worker --config-path ... --config-path ...`): the harness only
needs /health on 127.0.0.1:8008 to answer, which every Synapse HTTP listener serves.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import http.client
import itertools
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import typing
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from unittest import mock

REPO_ROOT = Path(__file__).resolve().parents[2]
for _path in (REPO_ROOT / "src", REPO_ROOT / "lib", REPO_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import ops  # noqa: E402
from ops import testing  # noqa: E402

from charm import SynapseCharm  # noqa: E402
from constants import (  # noqa: E402
    CHECK_READY,
    CONTAINER_NAME,
    DATA_DIR,
    METRICS_PORT,
    PEER_RELATION,
    SERVICE_NAME,
    SYNAPSE_GID,
    SYNAPSE_PORT,
    SYNAPSE_UID,
    SYNAPSE_VERSION,
)
from tests.pebble_calls import PebbleCalls, record_pebble_calls  # noqa: E402
from tests.workload.netns import Namespace  # noqa: E402

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
BASE_URL = f"http://{HOST}:{SYNAPSE_PORT}"
METRICS_URL = f"http://{HOST}:{METRICS_PORT}"
HEALTH_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
LOG_TAIL_LINES = 60

# Installed into the Synapse venv for the media relation's tests (media on S3), as an image
# with it would have; the module imports boto3, botocore and six.
SYNAPSE_S3_STORAGE_PROVIDER = "synapse-s3-storage-provider==1.7.0"
SYNAPSE_S3_STORAGE_PROVIDER_DEPS = ("boto3==1.44.8", "six")

# Interpreters tried, in order, for the Synapse venv. The venv's python must be runnable by
# Synapse's uid: a pyenv interpreter under /root is not, Debian's /usr/bin/python3 is.
BASE_PYTHONS = ("/usr/bin/python3", sys.executable)

# Environment of every workload process besides the layer's own. The image has no git, but
# the harness venv may live inside this repository, and Synapse appends the git branch of
# the directory it is installed in to its version string unless git finds no repository.
BASE_ENVIRONMENT = {"HOME": "/nonexistent", "GIT_DIR": "/nonexistent"}


# The CA bundle Debian's OpenSSL (and pyOpenSSL's fallback) reads: the Synapse image is
# Debian-based, so this is where an operator's image would add a private CA.
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HOSTS_FILE = Path("/etc/hosts")
BASE_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


# The nginx sidecar (issue 16): container, service, its config directory and listening port.
NGINX_CONTAINER = "nginx"
NGINX_SERVICE = "nginx"
NGINX_CONFIG_DIR = PurePosixPath("/etc/nginx")
NGINX_PORT = 8080
NGINX_BINARY = Path("/usr/sbin/nginx")
NGINX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Where nginx writes at paths compiled into Debian's binary (and the official image's): private
# per unit, so that several units' nginx never share a pid file, a log or a temp directory.
NGINX_PRIVATE_DIRS = {
    "run": Path("/run"),
    "lib": Path("/var/lib/nginx"),
    "log": Path("/var/log/nginx"),
    "cache": Path("/var/cache/nginx"),
    # The charm's nginx.conf keeps its pid file and temp files in /tmp, a pod's own.
    "tmp": Path("/tmp"),
}
# The official nginx image runs its workers as `nginx` (uid/gid 101): the harness adds that
# account to the passwd and group files it gives nginx, so `user nginx;` works on Debian too.
NGINX_ACCOUNT = ("nginx", 101)
NGINX_RELOAD_TIMEOUT = 10.0


class WorkloadError(Exception):
    """The real Synapse could not be run as the plan says."""


# ---------------------------------------------------------------------------------------
# The Synapse venv
# ---------------------------------------------------------------------------------------


def synapse_venv_path() -> Path:
    """Where the Synapse venv lives: $SYNAPSE_VENV or <repo>/.tox/synapse-<SYNAPSE_VERSION>."""
    configured = os.environ.get("SYNAPSE_VENV")
    return Path(configured) if configured else REPO_ROOT / ".tox" / f"synapse-{SYNAPSE_VERSION}"


def _venv_env(venv: Path) -> dict[str, str]:
    """The environment workload processes get (before the layer's environment)."""
    return {"PATH": f"{venv}/bin:/usr/bin:/bin", **BASE_ENVIRONMENT}


def _synapse_user_argv(uid: int | None, gid: int | None) -> list[str]:
    """The setpriv arguments switching to the service's uid/gid (empty when the plan runs as root)."""
    if uid is None and gid is None:
        return []
    argv = ["setpriv"]
    if uid is not None:
        argv.append(f"--reuid={uid}")
    if gid is not None:
        argv += [f"--regid={gid}", "--clear-groups"]
    # The process dies with the harness even if the harness is killed.
    return [*argv, "--pdeathsig=TERM"]


def _venv_version(venv: Path) -> str | None:
    """The Synapse version the venv's python imports as Synapse's uid, or None if it cannot.

    None too when the venv lacks psycopg2, pysaml2, beautifulsoup4 (url previews) or txredisapi, or xmlsec1 is not
    on PATH: the image has them.
    """
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    env_words = [f"{key}={value}" for key, value in _venv_env(venv).items()]
    argv = [
        *_synapse_user_argv(SYNAPSE_UID, SYNAPSE_GID),
        "env",
        "-i",
        *env_words,
        str(python),
        "-c",
        # SAML needs pysaml2 (matrix-synapse[saml2]) in the venv and xmlsec1 on PATH, as in the image;
        # URL previews need beautifulsoup4 (matrix-synapse[url-preview]); media on S3 needs
        # synapse-s3-storage-provider; workers need Redis's client (matrix-synapse[redis]).
        "import shutil, psycopg2, saml2, bs4, s3_storage_provider, txredisapi, hiredis, synapse; "
        "assert shutil.which('xmlsec1'), 'no xmlsec1'; "
        "print(synapse.__version__)",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
    return result.stdout.strip() if result.returncode == 0 else None


def _base_python() -> str:
    """The interpreter to create the venv from: the first one Synapse's uid can run."""
    for candidate in BASE_PYTHONS:
        if not Path(candidate).exists():
            continue
        probe = [*_synapse_user_argv(SYNAPSE_UID, SYNAPSE_GID), candidate, "-c", "import venv, ensurepip"]
        if subprocess.run(probe, capture_output=True, check=False, cwd="/").returncode == 0:
            return candidate
    raise WorkloadError(
        f"none of {BASE_PYTHONS} can create a venv that uid {SYNAPSE_UID} can run; "
        "install Debian's python3-venv (apt-get install python3-venv)"
    )


def _create_venv(venv: Path) -> None:
    """Create the venv (if needed) and pip-install matrix-synapse==SYNAPSE_VERSION into it."""
    if not (venv / "bin" / "python").exists():
        logger.info("creating the Synapse venv at %s", venv)
        subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True)
    logger.info("installing matrix-synapse==%s into %s", SYNAPSE_VERSION, venv)
    _pip_install(
        venv,
        f"matrix-synapse[saml2,url-preview,redis]=={SYNAPSE_VERSION}",
        "psycopg2-binary",
        *SYNAPSE_S3_STORAGE_PROVIDER_DEPS,
    )
    # Without its declared dependencies: they include psycopg2 from source (for its upload
    # script only), which needs a compiler and libpq headers.
    _pip_install(venv, "--no-deps", SYNAPSE_S3_STORAGE_PROVIDER)


def _pip_install(venv: Path, *args: str) -> None:
    """Install `args` into the venv with its pip."""
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args], check=True)


_VENV_CACHE: dict[Path, Path] = {}


def ensure_synapse_venv() -> Path:
    """The Synapse venv, created once and reused while it imports synapse at SYNAPSE_VERSION."""
    venv = synapse_venv_path()
    if venv in _VENV_CACHE:
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _venv_version(venv) != SYNAPSE_VERSION:
            _create_venv(venv)
            found = _venv_version(venv)
            if found != SYNAPSE_VERSION:
                raise WorkloadError(
                    f"the venv {venv} imports synapse {found!r} (with psycopg2 and pysaml2, and xmlsec1 on PATH) "
                    f"as uid 991, not {SYNAPSE_VERSION}; install xmlsec1 (tools/dev.sh does), or remove the venv "
                    "and retry, or point SYNAPSE_VENV elsewhere"
                )
    _VENV_CACHE[venv] = venv
    return venv


# ---------------------------------------------------------------------------------------
# HTTP to the real Synapse
# ---------------------------------------------------------------------------------------


_CLIENT_ADDRESSES = itertools.count(1)


def _fresh_loopback() -> str:
    """A loopback address no request has come from yet (127.0.0.0/8 is all on `lo`).

    Synapse rate-limits logins and registrations per client address. Tests log in and
    register more often than its defaults allow from one address, and rate limits are not
    what they test, so every request the harness makes comes from an address of its own:
    the peer address Synapse sees, with or without a reverse proxy's X-Forwarded-For.
    """
    n = next(_CLIENT_ADDRESSES)
    return f"127.{100 + (n >> 16) % 100}.{(n >> 8) & 0xFF}.{n & 0xFF or 1}"


def client_address() -> dict[str, str]:
    """Extra headers for a request from a new client address: none are needed any more.

    Every harness request already comes from a fresh loopback address (see `_fresh_loopback`);
    kept so that callers written for the X-Forwarded-For trick keep working.
    """
    return {}


def _request(
    method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float
) -> tuple[int, bytes]:
    """One plain-HTTP request from a fresh loopback address; (status, body) for any status."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"the harness speaks plain HTTP to a local address, not {url!r}")
    source = _fresh_loopback() if parts.hostname.startswith("127.") or parts.hostname == "localhost" else ""
    connection = http.client.HTTPConnection(
        parts.hostname, parts.port or 80, timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target or "/", body=body, headers=dict(headers))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def http_json(
    method: str,
    path: str,
    body: Mapping[str, typing.Any] | None = None,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    base_url: str = BASE_URL,
) -> tuple[int, dict[str, typing.Any]]:
    """Send a request to the local Synapse; return (HTTP status, JSON body) for any status."""
    data = json.dumps(body).encode() if body is not None else None
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    status, raw = _request(method, f"{base_url}{path}", data, all_headers, timeout)
    answer = json.loads(raw) if raw else {}
    return status, answer if isinstance(answer, dict) else {"value": answer}


def login(user_id: str, password: str) -> tuple[int, dict[str, typing.Any]]:
    """POST /_matrix/client/v3/login with a password (from a fresh client address)."""
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": password}
    return http_json("POST", "/_matrix/client/v3/login", body)


def token_for(user_id: str, password: str) -> str:
    """An access token for a user who must be able to log in."""
    status, answer = login(user_id, password)
    assert status == 200, answer
    return str(answer["access_token"])


def http_get(path: str, timeout: float = 10.0, base_url: str = BASE_URL) -> tuple[int, bytes]:
    """GET `path` from the local Synapse; return (HTTP status, raw body) for any status."""
    return _request("GET", f"{base_url}{path}", None, {}, timeout)


def is_healthy(timeout: float = 2.0) -> bool:
    """Whether GET /health answers 200."""
    try:
        return http_get("/health", timeout=timeout)[0] == 200
    except (http.client.HTTPException, OSError):
        return False


def _port_in_use(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


# ---------------------------------------------------------------------------------------
# The real process
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """What Pebble would run for a service: taken from the plan, nothing added."""

    command: tuple[str, ...]
    environment: Mapping[str, str]
    user_id: int | None
    group_id: int | None
    working_dir: str

    @classmethod
    def from_plan(cls, plan: ops.pebble.Plan, name: str = SERVICE_NAME) -> ServiceSpec:
        """The spec of service `name` in `plan`."""
        service = plan.services.get(name)
        if service is None or not service.command:
            raise WorkloadError(f"the plan has no command for service {name!r}")
        if (service.user and service.user_id is None) or (service.group and service.group_id is None):
            raise WorkloadError("the harness runs services by user-id/group-id only")
        return cls(
            command=tuple(shlex.split(service.command)),
            environment=dict(service.environment),
            user_id=service.user_id,
            group_id=service.group_id,
            working_dir=service.working_dir or "/",
        )


@dataclasses.dataclass(frozen=True)
class SystemView:
    """What a process sees of its machine besides /data: network namespace, /etc/hosts, trusted CAs.

    None everywhere is the caller's own view (its network namespace, the host's files).
    """

    netns: Namespace | None = None
    hosts_file: Path | None = None
    ca_bundle: Path | None = None

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        netns: Namespace | None = None,
        hosts: Mapping[str, str] | None = None,
        trusted_ca: Path | Sequence[Path] | None = None,
    ) -> SystemView:
        """A view whose files are written into `directory`.

        `hosts` maps host names to addresses (added to localhost's lines); `trusted_ca` are PEM
        files appended to the system bundle, as `update-ca-certificates` would in an image.
        """
        hosts_file = ca_bundle = None
        if hosts is not None:
            directory.mkdir(parents=True, exist_ok=True)
            hosts_file = directory / "hosts"
            lines = "".join(f"{address}\t{name}\n" for name, address in hosts.items())
            hosts_file.write_text(BASE_HOSTS + lines)
            hosts_file.chmod(0o644)
        if trusted_ca is not None:
            directory.mkdir(parents=True, exist_ok=True)
            extra = [trusted_ca] if isinstance(trusted_ca, Path) else list(trusted_ca)
            system = SYSTEM_CA_BUNDLE.read_text() if SYSTEM_CA_BUNDLE.exists() else ""
            ca_bundle = directory / "ca-certificates.crt"
            ca_bundle.write_text(system + "".join(path.read_text() for path in extra))
            ca_bundle.chmod(0o644)
        return cls(netns=netns, hosts_file=hosts_file, ca_bundle=ca_bundle)

    def binds(self) -> list[tuple[Path, Path]]:
        """(source, target) bind mounts giving a process this view's files."""
        binds = []
        if self.hosts_file is not None:
            binds.append((self.hosts_file, HOSTS_FILE))
        if self.ca_bundle is not None:
            if not SYSTEM_CA_BUNDLE.exists():
                raise WorkloadError(f"{SYSTEM_CA_BUNDLE} is missing: install Debian's ca-certificates")
            binds.append((self.ca_bundle, SYSTEM_CA_BUNDLE))
        return binds

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block's network calls (this thread) in the view's network namespace."""
        if self.netns is None:
            yield
            return
        with self.netns.entered():
            yield

    def argv(
        self,
        command: Sequence[str],
        *,
        binds: Sequence[tuple[Path, Path]] = (),
        working_dir: str | None = None,
        last_binds: Sequence[tuple[Path, Path]] = (),
    ) -> list[str]:
        """`command` run in this view: in its network namespace, with its files (and `binds`) mounted.

        `unshare -m` gives the process a private mount namespace (propagation private), so the
        bind mounts are invisible to the host. `last_binds` are mounted after every other one (a
        private /tmp, which may hold the other binds' sources).
        """
        mounts = [*binds, *self.binds(), *last_binds]
        # ${N}, not $N: the shell reads $10 as $1 followed by "0".
        steps = [
            f'mount --bind "${{{index}}}" {shlex.quote(str(target))}' for index, (_, target) in enumerate(mounts, 1)
        ]
        if working_dir is not None:
            steps.append(f"cd {shlex.quote(working_dir)}")
        script = " && ".join([*steps, f"shift {len(mounts)}", 'exec "$@"'])
        argv = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "workload",
            *(str(source) for source, _ in mounts),
            *command,
        ]
        return self.netns.wrap(argv) if self.netns is not None else argv


def workload_argv(
    spec: ServiceSpec,
    data_dir: Path,
    venv: Path,
    command: Sequence[str] | None = None,
    view: SystemView | None = None,
) -> list[str]:
    """The argv running `command` (default: the service's) as the service, with /data bound to data_dir.

    The process runs in `view` (default: the caller's network and files) in a private mount
    namespace, so no bind mount is visible to the host.
    """
    _ensure_mountpoint()
    env = {**_venv_env(venv), **spec.environment}
    inner = [
        *_synapse_user_argv(spec.user_id, spec.group_id),
        "env",
        "-i",
        *(f"{key}={value}" for key, value in env.items()),
        *(command if command is not None else spec.command),
    ]
    return (view or SystemView()).argv(inner, binds=[(data_dir, Path(str(DATA_DIR)))], working_dir=spec.working_dir)


def chown_tree(root: Path, uid: int | None, gid: int | None) -> None:
    """Give `root` and everything below to uid/gid, as Pebble's push/make_dir with user_id would.

    ops.testing applies the charm's permissions but not ownership; modes are left as they are.
    """
    if uid is None and gid is None:
        return
    owner, group = -1 if uid is None else uid, -1 if gid is None else gid
    os.lchown(root, owner, group)
    for directory, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            os.lchown(os.path.join(directory, name), owner, group)


def _ensure_mountpoint() -> None:
    """/data must exist on the host to be a mount point (nothing is mounted there on the host).

    Called for every process the harness starts (Synapse, or an exec), since any of them may
    be the first on a brand-new machine.
    """
    Path(str(DATA_DIR)).mkdir(exist_ok=True)


_LIVE: set[SynapseProcess] = set()


def stop_group(popen: subprocess.Popen[typing.Any], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process group of `popen`, then SIGKILL it after `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGTERM)
    try:
        popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=timeout)


class SynapseProcess:
    """A real Synapse started exactly as the plan's service says."""

    def __init__(self, data_dir: Path, venv: Path, log_path: Path, view: SystemView | None = None):
        self.data_dir = data_dir
        self.venv = venv
        self.log_path = log_path
        self.view = view or SystemView()
        self.spec: ServiceSpec | None = None
        self.starts = 0
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running Synapse (the exec chain keeps the PID), None if not running."""
        return self._popen.pid if self.is_alive() and self._popen else None

    def is_alive(self) -> bool:
        """Whether the process is running."""
        return self._popen is not None and self._popen.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of Synapse's output."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self, spec: ServiceSpec) -> None:
        """Start Synapse with `spec` and wait until /health answers 200."""
        if self.is_alive():
            raise WorkloadError("Synapse is already running")
        with self.view.entered():
            for port in (SYNAPSE_PORT, METRICS_PORT):
                if _port_in_use(port):
                    raise WorkloadError(f"port {port} is already in use on {HOST}; stop whatever listens there")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        chown_tree(self.data_dir, spec.user_id, spec.group_id)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = workload_argv(spec, self.data_dir, self.venv, view=self.view)
        logger.info("starting Synapse: %s", shlex.join(argv))
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts + 1}: {shlex.join(spec.command)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.spec = spec
        self.starts += 1
        _LIVE.add(self)
        self.wait_healthy()

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT) -> None:
        """Wait until /health answers 200; raise with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_alive():
                code = self._popen.returncode if self._popen else None
                raise WorkloadError(f"Synapse exited with status {code} while starting:\n{self.log_tail()}")
            if self.is_healthy(timeout=1.0):
                return
            time.sleep(0.25)
        self.stop()
        raise WorkloadError(f"Synapse was not healthy within {timeout:.0f}s:\n{self.log_tail()}")

    def is_healthy(self, timeout: float = 2.0) -> bool:
        """Whether this Synapse's /health answers 200 (in its network namespace)."""
        with self.view.entered():
            return is_healthy(timeout=timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL after `timeout`; a no-op when not running."""
        popen = self._popen
        _LIVE.discard(self)
        if popen is None or popen.poll() is not None:
            return
        logger.info("stopping Synapse (pid %s)", popen.pid)
        stop_group(popen, timeout)

    def restart(self, spec: ServiceSpec) -> None:
        """Stop (if running) and start with `spec`, as Pebble's restart does."""
        self.stop()
        self.start(spec)

    def run(self, command: Sequence[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run `command` as the service runs (same namespace layout, uid, env, working dir)."""
        if self.spec is None:
            raise WorkloadError("Synapse was never started: there is no service to imitate")
        argv = workload_argv(self.spec, self.data_dir, self.venv, command, view=self.view)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


# ---------------------------------------------------------------------------------------
# The nginx sidecar
# ---------------------------------------------------------------------------------------


def _with_account(system_file: Path, line: str, name: str) -> str:
    """The content of /etc/passwd or /etc/group with `line` added when `name` is not in it."""
    content = system_file.read_text() if system_file.exists() else ""
    if any(entry.split(":", 1)[0] == name for entry in content.splitlines()):
        return content
    return content + ("" if content.endswith("\n") or not content else "\n") + line + "\n"


def _shutting_down(pid: int) -> bool:
    """Whether nginx worker `pid` is gone or shutting down (no longer accepts connections)."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return not title or b"shutting down" in title


_LIVE_NGINX: set[NginxProcess] = set()


class NginxProcess:
    """A real Debian nginx run as the `nginx` container's plan says, with the unit's /etc/nginx.

    Everything it uses lives under `root`: `etc` (bound to /etc/nginx; the charm pushes there),
    the private directories of NGINX_PRIVATE_DIRS, and the passwd/group files with the image's
    `nginx` account. Output goes to `log_path`.
    """

    def __init__(self, root: Path, view: SystemView, log_path: Path, port: int = NGINX_PORT):
        self.root = root
        self.view = view
        self.log_path = log_path
        self.port = port
        self.spec: ServiceSpec | None = None
        self.starts = 0
        self.reloads = 0
        self._popen: subprocess.Popen[bytes] | None = None
        self._prepare()

    @property
    def config_dir(self) -> Path:
        """The host directory that is /etc/nginx in the container."""
        return self.root / "etc"

    def _prepare(self) -> None:
        """Create the directories; seed /etc/nginx with Debian's files but nginx.conf (the charm's)."""
        if not NGINX_BINARY.exists():
            raise WorkloadError(f"{NGINX_BINARY} is missing: install Debian's nginx (apt-get install nginx-light)")
        self.config_dir.mkdir(parents=True, exist_ok=True)
        system = Path(str(NGINX_CONFIG_DIR))
        for entry in system.iterdir() if system.is_dir() else ():
            target = self.config_dir / entry.name
            if entry.is_file() and entry.name != "nginx.conf" and not target.exists():
                shutil.copyfile(entry, target)
        for name, host_dir in NGINX_PRIVATE_DIRS.items():
            (self.root / name).mkdir(exist_ok=True)
            # A mount point must exist: an empty directory on the host, nothing mounted there.
            host_dir.mkdir(parents=True, exist_ok=True)
        account, number = NGINX_ACCOUNT
        passwd = f"{account}:x:{number}:{number}:nginx user:/nonexistent:/usr/sbin/nologin"
        (self.root / "passwd").write_text(_with_account(Path("/etc/passwd"), passwd, account))
        (self.root / "group").write_text(_with_account(Path("/etc/group"), f"{account}:x:{number}:", account))
        for name in ("passwd", "group"):
            (self.root / name).chmod(0o644)

    def binds(self) -> list[tuple[Path, Path]]:
        """(source, target) bind mounts giving nginx the container's files."""
        binds = [(self.config_dir, Path(str(NGINX_CONFIG_DIR)))]
        binds += [(self.root / name, target) for name, target in NGINX_PRIVATE_DIRS.items() if name != "tmp"]
        binds += [(self.root / "passwd", Path("/etc/passwd")), (self.root / "group", Path("/etc/group"))]
        return binds

    def argv(
        self, command: Sequence[str], environment: Mapping[str, str] | None = None, working_dir: str | None = None
    ) -> list[str]:
        """`command` as the nginx container would run it: root, its files, the unit's network."""
        env = {"PATH": NGINX_PATH, **BASE_ENVIRONMENT, **(environment or {})}
        inner = ["env", "-i", *(f"{key}={value}" for key, value in env.items()), *command]
        # /tmp last: the other binds' sources may be under the host's /tmp.
        private_tmp = [(self.root / "tmp", NGINX_PRIVATE_DIRS["tmp"])]
        return self.view.argv(inner, binds=self.binds(), working_dir=working_dir or "/", last_binds=private_tmp)

    @property
    def pid(self) -> int | None:
        """The master process's PID (the exec chain keeps it), None if not running."""
        return self._popen.pid if self.is_alive() and self._popen else None

    def is_alive(self) -> bool:
        """Whether the master process runs."""
        return self._popen is not None and self._popen.poll() is None

    def workers(self) -> set[int]:
        """The PIDs of the master's worker processes (empty when not running)."""
        pid = self.pid
        if pid is None:
            return set()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return set()
        return {int(child) for child in children}

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The end of nginx's output and its error log."""
        parts = []
        for path in (self.log_path, self.root / "log" / "error.log"):
            try:
                parts.append("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
            except OSError:
                continue
        return "\n".join(parts) or "(no log)"

    def is_listening(self) -> bool:
        """Whether nginx accepts connections on its port in the unit's network namespace."""
        with self.view.entered():
            return _port_in_use(self.port)

    def start(self, spec: ServiceSpec) -> None:
        """Start nginx with `spec` and wait until it listens on its port."""
        if self.is_alive():
            raise WorkloadError("nginx is already running")
        if self.is_listening():
            raise WorkloadError(f"port {self.port} is already in use in the unit's network namespace")
        argv = self.argv(spec.command, spec.environment, spec.working_dir)
        logger.info("starting nginx: %s", shlex.join(argv))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts + 1}: {shlex.join(spec.command)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.spec = spec
        self.starts += 1
        _LIVE_NGINX.add(self)
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while not self.is_listening():
            if not self.is_alive():
                raise WorkloadError(f"nginx exited while starting:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise WorkloadError(f"nginx did not listen on {self.port}:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (nginx's fast shutdown), then SIGKILL; a no-op when not running."""
        popen = self._popen
        _LIVE_NGINX.discard(self)
        if popen is None or popen.poll() is not None:
            return
        stop_group(popen, timeout)

    def restart(self, spec: ServiceSpec) -> None:
        """Stop (if running) and start with `spec`, as Pebble's restart does."""
        self.stop()
        self.start(spec)

    def wait_reloaded(self, old_workers: set[int], timeout: float = NGINX_RELOAD_TIMEOUT) -> bool:
        """After a reload signal: wait until new workers replaced `old_workers` (the new config serves).

        False when they did not within `timeout` (nginx keeps its old config when it refuses the new one).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # New workers serve the new config once the old ones stopped accepting: an old worker
            # renames itself "worker process is shutting down" as it closes its listening sockets,
            # and may linger on open connections (a long-polling /sync) until they end.
            if self.workers() - old_workers and all(_shutting_down(pid) for pid in old_workers):
                time.sleep(0.05)
                self.reloads += 1
                return True
            if not self.is_alive():
                return False
            time.sleep(0.05)
        logger.warning("nginx did not reload within %.0fs:\n%s", timeout, self.log_tail())
        return False


class NginxExec:
    """A command run for real in the nginx container (ops.Container.exec's wait_output and wait)."""

    def __init__(self, nginx: NginxProcess, command: list[str], **kwargs: typing.Any):
        self.nginx = nginx
        self.command = command
        argv = nginx.argv(command, kwargs.get("environment"), kwargs.get("working_dir"))
        self._real = RealExec(argv, command, kwargs.get("stdin"), kwargs.get("timeout"))

    def _is_reload(self) -> bool:
        """Whether this is `nginx -s reload`."""
        return Path(self.command[0]).name == "nginx" and self.command[1:] == ["-s", "reload"]

    def wait_output(self) -> tuple[str, str]:
        """Run to completion; after a reload, wait until the reloaded nginx serves."""
        old_workers = self.nginx.workers() if self._is_reload() else set()
        output = self._real.wait_output()
        if self._is_reload():
            self.nginx.wait_reloaded(old_workers)
        return output

    def wait(self) -> None:
        """Run to completion (ops.pebble.ExecError on a non-zero exit)."""
        self.wait_output()


def stop_all() -> None:
    """Stop every Synapse and nginx this harness started that still runs."""
    for process in list(_LIVE):
        process.stop()
    for nginx in list(_LIVE_NGINX):
        nginx.stop()


atexit.register(stop_all)


# ---------------------------------------------------------------------------------------
# Driving the charm
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Identity:
    """What makes a server itself across container wipes: its Juju secrets and peer data."""

    secrets: tuple[testing.Secret, ...]
    peer: testing.PeerRelation

    def to_json(self) -> dict[str, typing.Any]:
        """A JSON-able form, to keep between runs of tools/run_local.py."""
        return {
            "secrets": [
                {
                    "id": secret.id,
                    "owner": secret.owner,
                    "label": secret.label,
                    "description": secret.description,
                    "tracked_content": dict(secret.tracked_content),
                    "latest_content": dict(secret.latest_content),
                }
                for secret in self.secrets
            ],
            "peer": {"id": self.peer.id, "local_app_data": dict(self.peer.local_app_data)},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, typing.Any]) -> Identity:
        """The identity stored by `to_json`."""
        secrets = tuple(
            testing.Secret(
                item["tracked_content"],
                latest_content=item["latest_content"],
                id=item["id"],
                owner=item["owner"],
                label=item["label"],
                description=item["description"],
            )
            for item in data["secrets"]
        )
        peer = testing.PeerRelation(
            PEER_RELATION, id=int(data["peer"]["id"]), local_app_data=dict(data["peer"]["local_app_data"])
        )
        return cls(secrets, peer)


EventArg = str | Callable[[], typing.Any] | typing.Any


class RealExec:
    """What ops.Container.exec returns, for a command run for real (wait_output only)."""

    def __init__(self, argv: list[str], command: list[str], stdin: str | None, timeout: float | None):
        self.argv = argv
        self.command = command
        self.stdin = stdin
        self.timeout = timeout

    def wait_output(self) -> tuple[str, str]:
        """Run to completion; (stdout, stderr), or ops.pebble.ExecError on a non-zero exit."""
        try:
            done = subprocess.run(
                self.argv, input=self.stdin, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise ops.pebble.TimeoutError(f"{self.command[0]} timed out") from None
        if done.returncode != 0:
            raise ops.pebble.ExecError(self.command, done.returncode, done.stdout, done.stderr)
        return done.stdout, done.stderr

    def wait(self) -> None:
        """Run to completion (ops.pebble.ExecError on a non-zero exit)."""
        self.wait_output()


def real_exec(
    data_dir: Path, venv: Path, command: list[str], view: SystemView | None = None, **kwargs: typing.Any
) -> RealExec:
    """What Pebble's exec with these ops.Container.exec arguments runs: the command as the
    asked uid/gid, with its environment and working dir, /data bound to data_dir and the
    Synapse venv on PATH (as the image has Synapse's python and scripts), in the unit's `view`.
    """
    spec = ServiceSpec(
        command=tuple(command),
        environment=dict(kwargs.get("environment") or {}),
        user_id=kwargs.get("user_id"),
        group_id=kwargs.get("group_id"),
        working_dir=kwargs.get("working_dir") or "/",
    )
    argv = workload_argv(spec, data_dir, venv, command, view=view)
    return RealExec(argv, command, kwargs.get("stdin"), kwargs.get("timeout"))


class CharmDriver:
    """Run hooks of SynapseCharm with ops.testing and replay its Pebble calls on a real Synapse."""

    def __init__(
        self,
        data_dir: Path,
        config: Mapping[str, str | int | float | bool],
        *,
        venv: Path | None = None,
        leader: bool = True,
        log_path: Path | None = None,
        identity: Identity | None = None,
        context: testing.Context[typing.Any] | None = None,
        netns: Namespace | None = None,
        hosts: Mapping[str, str] | None = None,
        trusted_ca: Path | Sequence[Path] | None = None,
        nginx: bool = False,
    ):
        """`netns`, `hosts` and `trusted_ca` give the unit a machine of its own (see `SystemView`):
        its network namespace, its /etc/hosts entries and extra trusted CA certificates (PEM files).

        `nginx`: the pod also has the `nginx` container, run on a real nginx (see `NginxProcess`);
        its files are under `<data_dir>-nginx`, its output in `<data_dir>-nginx.log`.
        """
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ctx = context or testing.Context(SynapseCharm)
        self.view = SystemView.create(
            data_dir.parent / f"{data_dir.name}-system", netns=netns, hosts=hosts, trusted_ca=trusted_ca
        )
        self.process = SynapseProcess(
            data_dir,
            venv or ensure_synapse_venv(),
            log_path or data_dir.parent / f"{data_dir.name}-synapse.log",
            self.view,
        )
        self.history: list[PebbleCalls] = []
        self.execs: list[list[str]] = []  # every command the charm ran through container.exec
        container = testing.Container(
            CONTAINER_NAME,
            can_connect=True,
            mounts={"data": testing.Mount(location=str(DATA_DIR), source=data_dir)},
        )
        # Without nginx enabled the pod's nginx container is there but not up yet (as before its
        # pebble-ready): the charm leaves it alone.
        containers = {container, testing.Container(NGINX_CONTAINER, can_connect=False)}
        self.nginx: NginxProcess | None = None
        if nginx:
            containers = {container}
            self.nginx = NginxProcess(
                data_dir.parent / f"{data_dir.name}-nginx", self.view, data_dir.parent / f"{data_dir.name}-nginx.log"
            )
            containers.add(
                testing.Container(
                    NGINX_CONTAINER,
                    can_connect=True,
                    mounts={"etc": testing.Mount(location=str(NGINX_CONFIG_DIR), source=self.nginx.config_dir)},
                )
            )
        self.state = testing.State(
            leader=leader,
            config=dict(config),
            containers=containers,
            relations={identity.peer if identity else testing.PeerRelation(PEER_RELATION)},
            secrets=identity.secrets if identity else (),
        )

    # -- state ---------------------------------------------------------------------------

    @property
    def container(self) -> testing.Container:
        """The synapse container in the current State."""
        return self.state.get_container(CONTAINER_NAME)

    @property
    def nginx_container(self) -> testing.Container:
        """The nginx container in the current State (KeyError without nginx)."""
        return self.state.get_container(NGINX_CONTAINER)

    @property
    def starts(self) -> int:
        """How many times a real Synapse was started by this driver."""
        return self.process.starts

    @property
    def last_calls(self) -> PebbleCalls:
        """The Pebble lifecycle calls of the last run."""
        return self.history[-1] if self.history else PebbleCalls()

    def identity(self) -> Identity:
        """The Juju secrets and peer relation of the current State."""
        peers = [rel for rel in self.state.relations if rel.endpoint == PEER_RELATION]
        return Identity(tuple(self.state.secrets), typing.cast(testing.PeerRelation, peers[0]))

    def entered(self) -> contextlib.AbstractContextManager[None]:
        """A block whose network calls (this thread) run in the unit's network namespace.

        Inside it, `http_json`, `http_get` and `login` reach this unit's Synapse on 127.0.0.1.
        """
        return self.view.entered()

    def relate(self, relation: testing.RelationBase) -> testing.RelationBase:
        """Add a relation and run what Juju runs for it (relation-created, then -changed); return it from the State."""
        self.state = dataclasses.replace(self.state, relations=frozenset({*self.state.relations, relation}))
        self.run(self.ctx.on.relation_created(relation))
        self.run(self.ctx.on.relation_changed(self.state.get_relation(relation.id)))
        return self.state.get_relation(relation.id)

    def update_remote_app_data(self, relation_id: int, data: Mapping[str, str]) -> testing.RelationBase:
        """The remote application wrote `data` on a relation: run relation-changed; return the relation."""
        relation = typing.cast(testing.Relation, self.state.get_relation(relation_id))
        changed = dataclasses.replace(relation, remote_app_data={**relation.remote_app_data, **data})
        others = {rel for rel in self.state.relations if rel.id != relation_id}
        self.state = dataclasses.replace(self.state, relations=frozenset({*others, changed}))
        self.run(self.ctx.on.relation_changed(changed))
        return self.state.get_relation(relation_id)

    def set_config(self, **changes: str | int | float | bool) -> None:
        """Change Juju config for the next runs (as `juju config` would, before config-changed)."""
        self.state = dataclasses.replace(self.state, config={**self.state.config, **changes})

    # -- running hooks -------------------------------------------------------------------

    def _event(self, event: EventArg) -> typing.Any:
        """An ops.testing event from a name such as "config_changed", a function making it, or the event itself.

        Names and functions are turned into the event after the State was mirrored, so an event
        that takes a State object (a container, a relation) gets the one the hook runs with.
        """
        if callable(event):
            event = event()
        if not isinstance(event, str):
            return event
        if event == "pebble_ready":
            return self.ctx.on.pebble_ready(self.container)
        if event == "nginx_pebble_ready":
            return self.ctx.on.pebble_ready(self.nginx_container)
        return getattr(self.ctx.on, event)()

    def run(self, event: EventArg) -> testing.State:
        """Run one hook, then replay its Pebble calls on the real Synapse; return the new State."""
        with self._recorded():
            self.state = self.ctx.run(self._event(event), self.state)
        return self.state

    def run_action(self, name: str, params: Mapping[str, typing.Any] | None = None) -> dict[str, typing.Any]:
        """Run an action; return its results. Raises testing.ActionFailed when the charm fails it."""
        with self._recorded():
            try:
                self.state = self.ctx.run(self.ctx.on.action(name, params=dict(params or {})), self.state)
            except testing.ActionFailed as exc:
                if exc.state is not None:
                    self.state = exc.state
                raise
        return dict(self.ctx.action_results or {})

    @contextlib.contextmanager
    def _recorded(self) -> Iterator[None]:
        """Mirror the real process into the State, record Pebble calls, then replay them."""
        self.state = self._mirrored(self.state)
        with (
            self.view.entered(),
            record_pebble_calls(self._on_pebble_call) as calls,
            mock.patch.object(ops.Container, "exec", self._exec_method()),
        ):
            try:
                yield
            finally:
                self.history.append(calls)

    def _mirrored(self, state: testing.State) -> testing.State:
        """`state` with the service status and ready check Pebble would report for the real process."""
        container = state.get_container(CONTAINER_NAME)
        plan = container.plan
        alive = self.process.is_alive()
        statuses = dict(container.service_statuses)
        if SERVICE_NAME in plan.services:
            statuses[SERVICE_NAME] = ops.pebble.ServiceStatus.ACTIVE if alive else ops.pebble.ServiceStatus.INACTIVE
        checks = {info for info in container.check_infos if info.name != CHECK_READY}
        if CHECK_READY in plan.checks:
            threshold = plan.checks[CHECK_READY].threshold or 3
            healthy = alive and self.process.is_healthy()
            checks.add(
                testing.CheckInfo(
                    CHECK_READY,
                    level=ops.pebble.CheckLevel.READY,
                    status=ops.pebble.CheckStatus.UP if healthy else ops.pebble.CheckStatus.DOWN,
                    successes=1 if healthy else 0,
                    failures=0 if healthy else threshold,
                    threshold=threshold,
                )
            )
        mirrored = dataclasses.replace(container, service_statuses=statuses, check_infos=frozenset(checks))
        others = {other for other in state.containers if other.name not in (CONTAINER_NAME, NGINX_CONTAINER)}
        mirrored_nginx = self._mirrored_nginx(state)
        return dataclasses.replace(state, containers=frozenset({*others, mirrored, *mirrored_nginx}))

    def _mirrored_nginx(self, state: testing.State) -> set[testing.Container]:
        """The nginx container with the service status Pebble would report (empty without nginx)."""
        present = [other for other in state.containers if other.name == NGINX_CONTAINER]
        if not present:
            return set()
        container = present[0]
        if self.nginx is None or NGINX_SERVICE not in container.plan.services:
            return {container}
        alive = self.nginx.is_alive()
        status = ops.pebble.ServiceStatus.ACTIVE if alive else ops.pebble.ServiceStatus.INACTIVE
        return {dataclasses.replace(container, service_statuses={**container.service_statuses, NGINX_SERVICE: status})}

    def _on_pebble_call(self, method: str, args: tuple[str, ...], container: ops.Container) -> None:
        """Do on the real process, at once, what a lifecycle call just asked Pebble to do."""
        if container.name == NGINX_CONTAINER:
            self._on_nginx_call(method, args, container)
            return
        if container.name != CONTAINER_NAME or (method != "replan" and SERVICE_NAME not in args):
            return
        plan = container.get_plan()
        if method == "replan":
            self._replan(plan)
        elif method == "restart":
            self.process.restart(ServiceSpec.from_plan(plan))
        elif method == "start" and not self.process.is_alive():
            self.process.start(ServiceSpec.from_plan(plan))
        elif method == "stop":
            self.process.stop()

    def _on_nginx_call(self, method: str, args: tuple[str, ...], container: ops.Container) -> None:
        """The nginx container's lifecycle call, on the real nginx (nothing when nginx is not enabled)."""
        if self.nginx is None or (method != "replan" and NGINX_SERVICE not in args):
            return
        plan = container.get_plan()
        if method == "replan":
            if NGINX_SERVICE not in plan.services:
                return
            spec = ServiceSpec.from_plan(plan, NGINX_SERVICE)
            if not self.nginx.is_alive():
                self.nginx.start(spec)
            elif spec != self.nginx.spec:
                self.nginx.restart(spec)
        elif method == "restart":
            self.nginx.restart(ServiceSpec.from_plan(plan, NGINX_SERVICE))
        elif method == "start" and not self.nginx.is_alive():
            self.nginx.start(ServiceSpec.from_plan(plan, NGINX_SERVICE))
        elif method == "stop":
            self.nginx.stop()

    def _exec_method(self) -> Callable[..., RealExec | NginxExec]:
        """A stand-in for the ops.Container.exec method (a plain function: patched onto the class)."""

        def exec_(container: ops.Container, command: list[str], **kwargs: typing.Any) -> RealExec | NginxExec:
            if container.name == NGINX_CONTAINER:
                return self._exec_nginx(command, **kwargs)
            return self._exec(container, command, **kwargs)

        return exec_

    def _exec(self, _container: ops.Container, command: list[str], **kwargs: typing.Any) -> RealExec:
        """Pebble's exec, for real: run `command` in the workload's namespace layout, as asked.

        The files the charm pushed belong to Synapse's uid first, as Pebble's push made them.
        """
        self.execs.append(list(command))
        chown_tree(self.data_dir, SYNAPSE_UID, SYNAPSE_GID)
        return real_exec(self.data_dir, self.process.venv, command, self.view, **kwargs)

    def _exec_nginx(self, command: list[str], **kwargs: typing.Any) -> NginxExec:
        """Pebble's exec in the nginx container, for real (see `NginxExec`)."""
        if self.nginx is None:
            raise WorkloadError("the charm ran a command in the nginx container, but the driver has no nginx")
        self.execs.append(list(command))
        return NginxExec(self.nginx, list(command), **kwargs)

    def _replan(self, plan: ops.pebble.Plan) -> None:
        """Pebble's replan: start the service if stopped, restart it if its definition changed."""
        if SERVICE_NAME not in plan.services:
            return
        spec = ServiceSpec.from_plan(plan)
        if not self.process.is_alive():
            self.process.start(spec)
        elif spec != self.process.spec:
            self.process.restart(spec)

    # -- convenience ---------------------------------------------------------------------

    def deploy(self) -> None:
        """The first hooks of a new unit: install, leader-elected, config-changed, pebble-ready."""
        for event in ("install", "leader_elected", "config_changed", "pebble_ready"):
            self.run(event)

    def run_in_workload(self, command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run `command` in Synapse's namespace layout, as its uid, with its environment."""
        return self.process.run(command)

    def stop(self) -> None:
        """Stop the real Synapse and nginx (as if the pod went away); the State is kept."""
        self.process.stop()
        if self.nginx is not None:
            self.nginx.stop()


def wipe(directory: Path) -> None:
    """Remove everything in `directory` (a lost container filesystem), keeping the directory."""
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
