"""Real S3 servers on 127.0.0.1 for the workload tests.

- `MotoServer`: PyPI's moto in server mode (quick; any credentials are accepted).
- `RadosGateway`: Debian's Ceph radosgw on a one-monitor, one-memstore-OSD cluster, with a
  user created by `radosgw-admin`: it checks SigV4 signatures for real.

Both give `relation_data()`: what s3-integrator writes on the relation (schema v0, plain keys).
"""

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.1"
START_TIMEOUT = 60.0


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until `url` answers any HTTP status."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the S3 server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 (local http)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the S3 server did not answer within {START_TIMEOUT:.0f}s: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


class MotoServer:
    """moto's S3 server."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self.access_key, self.secret_key = "moto-access", "moto-secret"
        log = directory / "moto.log"
        moto = Path(sys.executable).with_name("moto_server")
        self.process = subprocess.Popen(
            [str(moto), "-H", HOST, "-p", str(self.port)],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_http(self.endpoint, self.process, log)

    def relation_data(self, bucket: str) -> dict[str, str]:
        """What s3-integrator (schema v0) writes for this server."""
        return {
            "access-key": self.access_key,
            "secret-key": self.secret_key,
            "bucket": bucket,
            "endpoint": self.endpoint,
            "region": "us-east-1",
            "path": "synapse/",
            "s3-uri-style": "path",
        }

    def stop(self) -> None:
        """Stop the server."""
        _stop(self.process)


CEPH_CONF = """[global]
fsid = {fsid}
mon_host = v2:127.0.0.1:{mon_port}
ms_bind_msgr1 = false
osd_objectstore = memstore
memstore_device_bytes = 1073741824
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 1
mon_data_avail_crit = 0
osd_crush_chooseleaf_type = 0
run_dir = {dir}/run
admin_socket = {dir}/run/$name.asok
log_file = {dir}/log/$name.log
mon_data = {dir}/mon
osd_data = {dir}/osd
keyring = {dir}/keyring

[client.rgw]
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw_dns_name = 127.0.0.1
"""
KEYS = {
    "mon.": ["--cap", "mon", "allow *"],
    "client.admin": ["--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *"],
    "client.rgw": ["--cap", "mon", "allow rw", "--cap", "osd", "allow rwx"],
    "osd.0": ["--cap", "mon", "allow profile osd", "--cap", "osd", "allow *"],
}


class RadosGateway:
    """Ceph's radosgw on a throwaway cluster: one monitor and one in-memory (memstore) OSD.

    Debian 12's Ceph 16 (Pacific) has no `dbstore` backend (radosgw without a cluster), so the
    smallest real setup is a monitor, an OSD whose object store is RAM, and the gateway, all
    as child processes with cephx keys from one keyring. No manager daemon is needed.
    """

    def __init__(self, directory: Path):
        self.dir = directory / "ceph"
        for sub in ("run", "log", "mon", "osd"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        fsid, mon_port = _uuid(), free_port()
        self.conf = self.dir / "ceph.conf"
        self.conf.write_text(CEPH_CONF.format(fsid=fsid, dir=self.dir, mon_port=mon_port, rgw_port=self.port))
        self.access_key, self.secret_key = secrets.token_hex(10).upper(), secrets.token_hex(20)
        self.processes: list[subprocess.Popen[bytes]] = []
        keyring = self.dir / "keyring"
        self._run("ceph-authtool", "--create-keyring", str(keyring))
        for name, caps in KEYS.items():
            self._run("ceph-authtool", str(keyring), "--gen-key", "-n", name, *caps)
        monmap = self.dir / "monmap"
        self._run("monmaptool", "--create", "--fsid", fsid, "--addv", "a", f"[v2:127.0.0.1:{mon_port}]", str(monmap))
        self._run(
            "ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap", str(monmap), "--keyring", str(keyring)
        )
        self._start("ceph-mon", "-c", str(self.conf), "-f", "-i", "a")
        osd_id = self._run("ceph", "-c", str(self.conf), "osd", "create").strip()
        self._run("ceph-osd", "-c", str(self.conf), "-i", osd_id, "--mkfs")
        self._start("ceph-osd", "-c", str(self.conf), "-f", "-i", osd_id)
        self._start("radosgw", "-c", str(self.conf), "-f", "-n", "client.rgw", "--no-mon-config")
        try:
            _wait_http(self.endpoint, self.processes[-1], self.dir / "log" / "client.rgw.log")
            self._run(
                "radosgw-admin",
                "-c",
                str(self.conf),
                "-n",
                "client.admin",
                "user",
                "create",
                "--uid=synapse",
                "--display-name=synapse",
                f"--access-key={self.access_key}",
                f"--secret={self.secret_key}",
            )
        except BaseException:
            self.stop()
            raise

    def _run(self, *argv: str) -> str:
        """Run a Ceph tool to completion; its output."""
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"{' '.join(argv[:3])} failed: {done.stderr[-2000:]}")
        return done.stdout

    def _start(self, *argv: str) -> None:
        """Start a Ceph daemon in the foreground, as a child process."""
        log = (self.dir / "log" / f"{argv[0]}.out").open("wb")
        self.processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def relation_data(self, bucket: str) -> dict[str, str]:
        """What s3-integrator (schema v0) writes for this server."""
        return {
            "access-key": self.access_key,
            "secret-key": self.secret_key,
            "bucket": bucket,
            "endpoint": self.endpoint,
            "region": "default",
            "path": "synapse",
            "s3-uri-style": "path",
        }

    def stop(self) -> None:
        """Stop the gateway, then the OSD and the monitor."""
        for process in reversed(self.processes):
            _stop(process)
        self.processes.clear()


def _uuid() -> str:
    """A random UUID string."""
    import uuid

    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto S3 server for the module."""
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def radosgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadosGateway]:
    """A radosgw for the module (Debian's radosgw must be installed: see tools/dev.sh)."""
    for tool in ("radosgw", "ceph-mon", "ceph-osd", "monmaptool"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run `bash tools/dev.sh setup` (Debian radosgw, ceph-mon, ceph-osd)")
    server = RadosGateway(tmp_path_factory.mktemp("radosgw"))
    yield server
    server.stop()
