"""The harness on its own: it prepares the host, and runs the pod's nginx container on a real nginx.

Nothing it needs may be left over from an earlier run; each unit's nginx is its own.
"""

import os
import typing
from pathlib import Path

import ops
import pytest
from ops import testing

from constants import CONTAINER_NAME, DATA_DIR, PEER_RELATION
from tests.workload import harness
from tests.workload.netns import TestHost, TestNetwork


def _remove_host_mountpoint() -> None:
    """Remove the host's /data, as on a brand-new machine (only an empty, unmounted directory)."""
    mountpoint = Path(str(DATA_DIR))
    if not mountpoint.exists():
        return
    if os.path.ismount(mountpoint) or any(mountpoint.iterdir()):
        pytest.fail(f"{mountpoint} on the host is mounted or not empty; the harness never puts anything there")
    mountpoint.rmdir()


def test_an_exec_before_any_synapse_creates_the_mountpoint(tmp_path: Path, synapse_venv: Path) -> None:
    """An in-container command run before Synapse ever started must work on a machine without /data."""
    _remove_host_mountpoint()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "marker").write_text("from the unit's storage\n")

    stdout, _ = harness.real_exec(data_dir, synapse_venv, ["cat", f"{DATA_DIR}/marker"]).wait_output()

    assert stdout == "from the unit's storage\n"
    assert not any(Path(str(DATA_DIR)).iterdir()), "the bind mount must stay inside the private namespace"


# --- the nginx sidecar ---------------------------------------------------------------------

PROBE_META = {
    "name": "nginx-probe",
    "containers": {CONTAINER_NAME: {}, harness.NGINX_CONTAINER: {}},
    "peers": {PEER_RELATION: {"interface": "probe_peers"}},
}
PROBE_CONFIG = {"options": {"body": {"type": "string", "default": "one"}}}
# As the charm's: the pid file in /tmp (the pod's own), the workers as an account of the image.
PROBE_NGINX_CONF = """user nginx;
worker_processes 1;
pid /tmp/nginx.pid;
events {{ worker_connections 64; }}
http {{
    server {{
        listen {port};
        location / {{ default_type text/plain; return 200 "{body}\\n"; }}
    }}
}}
"""


class NginxProbeCharm(ops.CharmBase):
    """Pushes nginx.conf answering the `body` option; starts nginx once, then reloads it on changes."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        framework.observe(self.on.config_changed, self._on_config_changed)

    def _on_config_changed(self, _: ops.ConfigChangedEvent) -> None:
        """Render, then start or reload (what the charm's nginx sidecar does)."""
        container = self.unit.get_container(harness.NGINX_CONTAINER)
        config = PROBE_NGINX_CONF.format(port=harness.NGINX_PORT, body=self.config["body"])
        container.push(f"{harness.NGINX_CONFIG_DIR}/nginx.conf", config, make_dirs=True)
        if harness.NGINX_SERVICE in container.get_plan().services:
            container.exec(["nginx", "-s", "reload"]).wait_output()
            return
        service = {"override": "replace", "command": "nginx -g 'daemon off;'", "startup": "enabled"}
        layer = ops.pebble.Layer(typing.cast(ops.pebble.LayerDict, {"services": {harness.NGINX_SERVICE: service}}))
        container.add_layer("nginx", layer, combine=True)
        container.replan()


def _probe_driver(base: Path, venv: Path, host: TestHost) -> harness.CharmDriver:
    """A driver of the probe charm with nginx, in `host`'s network namespace."""
    return harness.CharmDriver(
        base / "data",
        {"body": "one"},
        venv=venv,
        context=testing.Context(NginxProbeCharm, meta=PROBE_META, config=PROBE_CONFIG, actions={}),
        netns=host.namespace,
        nginx=True,
    )


def _served(host: TestHost) -> str:
    """What nginx answers on NGINX_PORT in `host`'s namespace."""
    with host.namespace.entered():
        status, body = harness.http_get("/", base_url=f"http://127.0.0.1:{harness.NGINX_PORT}")
    assert status == 200
    return body.decode().strip()


def test_nginx_container_runs_a_real_nginx_per_unit_and_exec_reloads_the_right_one(
    tmp_path: Path, synapse_venv: Path, test_network: TestNetwork
) -> None:
    hosts = [test_network.add_host("a.test"), test_network.add_host("b.test")]
    drivers = [_probe_driver(tmp_path / host.name, synapse_venv, host) for host in hosts]
    try:
        for driver in drivers:
            driver.run("config_changed")
        assert [_served(host) for host in hosts] == ["one", "one"]
        assert all(driver.nginx and driver.nginx.is_alive() for driver in drivers)
        first_pids = [driver.nginx.pid for driver in drivers if driver.nginx]

        drivers[1].set_config(body="two")
        drivers[1].run("config_changed")

        assert drivers[1].execs == [["nginx", "-s", "reload"]]
        assert [_served(host) for host in hosts] == ["one", "two"]
        assert [driver.nginx.pid for driver in drivers if driver.nginx] == first_pids
        assert [(driver.nginx.starts, driver.nginx.reloads) for driver in drivers if driver.nginx] == [(1, 0), (1, 1)]
        # Pebble reports the service as running; the pushed file is where nginx read it.
        drivers[0].run("update_status")
        status = drivers[0].nginx_container.service_statuses[harness.NGINX_SERVICE]
        assert status == ops.pebble.ServiceStatus.ACTIVE
        assert "two" in (tmp_path / "b.test" / "data-nginx" / "etc" / "nginx.conf").read_text()
        # Each nginx has its own pid file (its own /tmp), none on the host.
        assert not Path("/tmp/nginx.pid").exists()
        pid_files = [tmp_path / host.name / "data-nginx" / "tmp" / "nginx.pid" for host in hosts]
        assert [int(path.read_text()) for path in pid_files] == first_pids
    finally:
        for driver in drivers:
            driver.stop()
    assert not any(driver.nginx and driver.nginx.is_alive() for driver in drivers)
