"""The nginx sidecar's config, routes and Pebble handling (src/workload/nginx.py)."""

import dataclasses
import re
import typing
from collections.abc import Iterator
from pathlib import Path

import ops
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from ops import testing

from constants import CONTAINER_NAME, NGINX_CONFIG_PATH, NGINX_CONTAINER, NGINX_PORT, NGINX_SERVICE
from tests.strategies import dns_names, ipv4s, ipv6s, ports
from tests.unit.conftest import HOSTILE_STRINGS, record_side_effects
from workload.nginx import (
    MAX_BODY_SIZE,
    NGINX_TEMPLATE,
    WORKER_ENDPOINTS,
    Nginx,
    NginxRoutes,
    nginx_layer,
    render_nginx_config,
    worker_locations,
)
from workload.service import TEMPLATES_DIR

MAIN_UNIT = NginxRoutes(main="127.0.0.1:8008", worker=None, max_body_size=50 * 1024**2)
WORKER_UNIT = NginxRoutes(main="10.1.2.3:8008", worker="127.0.0.1:8008", max_body_size=50 * 1024**2)
META = {"name": "nginx-test", "containers": {NGINX_CONTAINER: {"resource": "nginx-image"}}}
RELOAD = ["nginx", "-s", "reload"]

# Paths with the process that must serve them on a worker unit.
WORKER_PATHS = (
    "/_matrix/client/v3/sync",
    "/_matrix/client/r0/sync",
    "/_matrix/client/v3/rooms/!a:x/send/m.room.message/1",
    "/_matrix/client/v3/rooms/!a:x/state/m.room.name/",
    "/_matrix/client/v3/rooms/!a:x/join",
    "/_matrix/client/v3/login",
    "/_matrix/client/v3/keys/query",
    "/_matrix/client/v3/createRoom",
    "/_matrix/client/versions",
    "/_matrix/client/v3/user/@u:x/rooms/!a:x/tags",
    "/_matrix/client/v3/profile/@u:x/displayname",
    "/_matrix/federation/v1/send/123",
    "/_matrix/federation/v2/send_join/!a:x/$e",
    "/_matrix/key/v2/query",
)
MAIN_PATHS = (
    "/",
    "/health",
    "/_matrix/media/v3/upload",
    "/_matrix/media/v3/download/x/y",
    "/_matrix/client/v1/media/download/x/y",
    "/_matrix/client/v1/media/thumbnail/x/y",
    "/_synapse/admin/v1/users/x",
    "/_synapse/admin/v1/register",
    "/_synapse/client/saml2/authn_response",
    "/_matrix/client/v3/login/sso/redirect",
    "/_matrix/client/v3/pushrules/",
    "/_matrix/client/v3/rooms/!a:x/messages",
    "/_matrix/client/v3/rooms/!a:x/typing/@u:x",
    "/_matrix/client/v3/sendToDevice/m.room.encrypted/1",
    "/_matrix/client/v3/sync/extra",
    "/_matrix/federation/v1/version",
    "/_matrix/key/v2/server",
    "/.well-known/matrix/server",
)


def routed_to_worker(path: str) -> bool:
    """Whether a worker unit's nginx sends `path` to the worker (the locations as nginx matches them)."""
    return any(re.search(regex, path) for regex in worker_locations())


@pytest.mark.parametrize("path", WORKER_PATHS)
def test_worker_endpoints_go_to_the_worker(path: str) -> None:
    assert routed_to_worker(path)


@pytest.mark.parametrize("path", MAIN_PATHS)
def test_everything_else_goes_to_the_main(path: str) -> None:
    assert not routed_to_worker(path)


def test_locations_are_the_documented_groups() -> None:
    assert len(worker_locations()) == len(WORKER_ENDPOINTS)
    for regexes in WORKER_ENDPOINTS.values():
        for regex in regexes:
            assert regex.startswith("^")
            re.compile(regex)


def server_blocks(config: str) -> dict[str, list[str]]:
    """The server lines of each upstream block, by its name."""
    return {
        name: re.findall(r"server (\S+);", body)
        for name, body in re.findall(r"upstream (\w+) \{(.*?)\}", config, flags=re.DOTALL)
    }


def locations(config: str) -> list[tuple[str, str]]:
    """(location argument, proxy_pass target) in order."""
    return re.findall(r"location (.+?) \{\s*proxy_pass (\S+);", config)


def test_main_unit_sends_everything_to_the_main() -> None:
    config = render_nginx_config(MAIN_UNIT)
    assert server_blocks(config) == {"synapse_main": ['"127.0.0.1:8008"']}
    assert locations(config) == [("/", "http://synapse_main")]
    assert "synapse_worker" not in config
    assert f"listen {NGINX_PORT};" in config
    assert f"client_max_body_size {50 * 1024**2};" in config


def test_worker_unit_sends_worker_endpoints_to_its_worker() -> None:
    config = render_nginx_config(WORKER_UNIT)
    assert server_blocks(config) == {"synapse_main": ['"10.1.2.3:8008"'], "synapse_worker": ['"127.0.0.1:8008"']}
    expected = [(f'~ "{regex}"', "http://synapse_worker") for regex in worker_locations()]
    assert locations(config) == [*expected, ("/", "http://synapse_main")]


def test_config_is_self_contained_and_writes_only_under_tmp() -> None:
    config = render_nginx_config(WORKER_UNIT)
    assert not re.search(r"^\s*include\b", config, flags=re.MULTILINE)
    assert "daemon" not in config  # given by the Pebble command
    paths = re.findall(r"^\s*(?:pid|\w+_temp_path) (\S+);", config, flags=re.MULTILINE)
    assert len(paths) == 6
    assert all(path.startswith("/tmp/") for path in paths)
    assert "error_log stderr" in config
    assert "access_log off;" in config


def test_every_template_value_goes_through_a_strict_filter() -> None:
    expressions = re.findall(r"\{\{(.*?)\}\}", (TEMPLATES_DIR / NGINX_TEMPLATE).read_text())
    assert expressions
    for expression in expressions:
        assert re.fullmatch(r" \w+ \| (quote|integer) ", expression), expression


def test_forwarded_headers() -> None:
    config = render_nginx_config(WORKER_UNIT)
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in config
    assert "proxy_set_header X-Forwarded-Proto $synapse_forwarded_proto;" in config
    assert "proxy_set_header Host $host;" in config
    assert "proxy_http_version 1.1;" in config


address_texts = st.one_of(
    st.builds(lambda host, port: f"{host}:{port}", st.one_of(dns_names(), ipv4s, ipv6s.map(lambda a: f"[{a}]")), ports)
)


@given(main=address_texts, worker=st.none() | address_texts, size=st.integers(1, MAX_BODY_SIZE))
def test_valid_routes_render_verbatim(main: str, worker: str | None, size: int) -> None:
    config = render_nginx_config(NginxRoutes(main=main, worker=worker, max_body_size=size))
    blocks = server_blocks(config)
    assert blocks["synapse_main"] == [f'"{main}"']
    assert blocks.get("synapse_worker") == ([f'"{worker}"'] if worker else None)
    assert f"client_max_body_size {size};" in config


HOSTILE_ADDRESSES = [
    *HOSTILE_STRINGS,
    "",
    "10.1.2.3",
    "10.1.2.3:0",
    "10.1.2.3:65536",
    "10.1.2.3:08008",
    "10.1.2.3:8008;",
    "10.1.2.3:8008; include /etc/passwd",
    '10.1.2.3:8008"',
    "10.1.2.3:8008\n",
    "10.1.2.3 :8008",
    "10.1.2.999:8008",
    "1.2.3:8008",
    "fd00::1:8008",
    "[fd00::zz]:8008",
    "[10.1.2.3]:8008",
    "unix:/tmp/socket",
    "-bad-.example:8008",
    "a..b:8008",
    "${host}:8008",
    "example.com:8008 backup",
    "x" * 64 + ".example:8008",
]


@pytest.mark.parametrize("text", HOSTILE_ADDRESSES)
def test_hostile_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        NginxRoutes(main=text, worker=None, max_body_size=1)
    with pytest.raises(ValueError):
        NginxRoutes(main="127.0.0.1:8008", worker=text, max_body_size=1)


@pytest.mark.parametrize("value", [0, -1, MAX_BODY_SIZE + 1, True, 1.5, "50M", "1;", None])
def test_hostile_sizes_are_refused(value: typing.Any) -> None:
    with pytest.raises(ValueError):
        NginxRoutes(main="127.0.0.1:8008", worker=None, max_body_size=value)


@pytest.mark.parametrize("value", [8008, None, b"127.0.0.1:8008"])
def test_non_string_addresses_are_refused(value: typing.Any) -> None:
    with pytest.raises(ValueError):
        NginxRoutes(main=value, worker=None, max_body_size=1)


@given(text=st.text())
def test_arbitrary_text_is_refused_or_is_a_plain_address(text: str) -> None:
    try:
        routes = NginxRoutes(main="127.0.0.1:8008", worker=text, max_body_size=1)
    except ValueError:
        return
    assert re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", routes.worker or "")
    assert f'server "{text}";' in render_nginx_config(routes)


def test_layer_runs_nginx_in_the_foreground() -> None:
    service = nginx_layer()["services"][NGINX_SERVICE]
    assert service["command"] == "nginx -g 'daemon off;'"
    assert service["startup"] == "enabled"
    (check,) = nginx_layer()["checks"].values()
    assert check["tcp"] == {"port": NGINX_PORT}
    assert "level" not in check  # reported only: never restarts the container


# --- applying in the container -----------------------------------------------------------


@pytest.fixture
def ctx() -> testing.Context[ops.CharmBase]:
    """A charm with only the nginx container."""
    return testing.Context(ops.CharmBase, meta=META)


def container(conf_dir: Path) -> testing.Container:
    """The nginx container, reachable, answering `nginx -s reload`, with /etc/nginx on `conf_dir`."""
    mount = testing.Mount(location=str(NGINX_CONFIG_PATH.parent), source=conf_dir)
    return testing.Container(NGINX_CONTAINER, can_connect=True, execs={testing.Exec(RELOAD)}, mounts={"conf": mount})


class Applied(typing.NamedTuple):
    state: testing.State
    pushes: list[str]
    layers: list[str]
    pebble: list[tuple[str, tuple[str, ...]]]
    execs: list[list[str]]


def apply(ctx: testing.Context[ops.CharmBase], state: testing.State, config: str) -> Applied:
    """Run Nginx.apply(config) in a hook on `state`, recording what it did."""
    before = sum(len(history) for history in ctx.exec_history.values())
    with ctx(ctx.on.update_status(), state) as manager, record_side_effects() as effects:
        Nginx(manager.charm.unit.get_container(NGINX_CONTAINER)).apply(config)
        out = manager.run()
    execs = [list(process.command) for process in ctx.exec_history.get(NGINX_CONTAINER, [])][before:]
    return Applied(out, effects.pushes, effects.layers, effects.pebble.calls, execs)


def pushed_config(conf_dir: Path) -> str:
    """nginx.conf as the container holds it."""
    return (conf_dir / NGINX_CONFIG_PATH.name).read_text()


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    """The container's /etc/nginx."""
    return tmp_path


@pytest.fixture
def started(ctx: testing.Context[ops.CharmBase], conf_dir: Path) -> Iterator[Applied]:
    """A fresh container after nginx was started on the main unit's config."""
    yield apply(ctx, testing.State(containers={container(conf_dir)}), render_nginx_config(MAIN_UNIT))


def test_first_apply_pushes_adds_the_layer_and_starts(conf_dir: Path, started: Applied) -> None:
    assert started.pushes == [str(NGINX_CONFIG_PATH)]
    assert started.layers == [NGINX_CONTAINER]
    assert started.pebble == [("replan", ())]
    assert started.execs == []
    nginx = started.state.get_container(NGINX_CONTAINER)
    assert nginx.service_statuses[NGINX_SERVICE] == ops.pebble.ServiceStatus.ACTIVE
    assert pushed_config(conf_dir) == render_nginx_config(MAIN_UNIT)


def test_unchanged_apply_does_nothing(ctx: testing.Context[ops.CharmBase], started: Applied) -> None:
    again = apply(ctx, started.state, render_nginx_config(MAIN_UNIT))
    assert (again.pushes, again.layers, again.pebble, again.execs) == ([], [], [], [])


def test_changed_config_is_pushed_and_reloaded(
    ctx: testing.Context[ops.CharmBase], conf_dir: Path, started: Applied
) -> None:
    changed = apply(ctx, started.state, render_nginx_config(WORKER_UNIT))
    assert changed.pushes == [str(NGINX_CONFIG_PATH)]
    assert (changed.layers, changed.pebble) == ([], [])
    assert changed.execs == [RELOAD]
    assert pushed_config(conf_dir) == render_nginx_config(WORKER_UNIT)
    again = apply(ctx, changed.state, render_nginx_config(WORKER_UNIT))
    assert (again.pushes, again.layers, again.pebble, again.execs) == ([], [], [], [])


def test_a_failed_reload_restarts_nginx(ctx: testing.Context[ops.CharmBase], started: Applied) -> None:
    nginx = started.state.get_container(NGINX_CONTAINER)
    failing = testing.Exec(RELOAD, return_code=1, stderr="nginx: [error] invalid PID number")
    state = dataclasses.replace(
        started.state, containers=frozenset({dataclasses.replace(nginx, execs=frozenset({failing}))})
    )
    changed = apply(ctx, state, render_nginx_config(WORKER_UNIT))
    assert changed.execs == [RELOAD]
    assert changed.pebble == [("restart", (NGINX_SERVICE,))]


def test_a_stopped_nginx_is_started_without_a_push(ctx: testing.Context[ops.CharmBase], started: Applied) -> None:
    with ctx(ctx.on.update_status(), started.state) as manager:
        Nginx(manager.charm.unit.get_container(NGINX_CONTAINER)).stop()
        stopped = manager.run()
    assert stopped.get_container(NGINX_CONTAINER).service_statuses[NGINX_SERVICE] == ops.pebble.ServiceStatus.INACTIVE
    again = apply(ctx, stopped, render_nginx_config(MAIN_UNIT))
    assert (again.pushes, again.layers, again.execs) == ([], [], [])
    assert again.pebble == [("replan", ())]


def test_a_changed_layer_is_replaced_and_replanned(ctx: testing.Context[ops.CharmBase], started: Applied) -> None:
    nginx = started.state.get_container(NGINX_CONTAINER)
    old = ops.pebble.Layer(
        {"services": {NGINX_SERVICE: {"override": "replace", "command": "nginx", "startup": "enabled"}}}
    )
    state = dataclasses.replace(
        started.state,
        containers=frozenset({dataclasses.replace(nginx, layers={NGINX_CONTAINER: old}, check_infos=frozenset())}),
    )
    again = apply(ctx, state, render_nginx_config(MAIN_UNIT))
    assert again.layers == [NGINX_CONTAINER]
    assert again.pebble == [("replan", ())]
    assert again.execs == []  # the replan restarts nginx on the file: no reload as well


def test_unreachable_container_is_left_alone(ctx: testing.Context[ops.CharmBase]) -> None:
    state = testing.State(containers={testing.Container(NGINX_CONTAINER, can_connect=False)})
    applied = apply(ctx, state, render_nginx_config(MAIN_UNIT))
    assert (applied.pushes, applied.layers, applied.pebble, applied.execs) == ([], [], [], [])
    with ctx(ctx.on.update_status(), state) as manager:
        Nginx(manager.charm.unit.get_container(NGINX_CONTAINER)).stop()
        manager.run()


def test_stop_stops_only_a_running_nginx(ctx: testing.Context[ops.CharmBase], started: Applied) -> None:
    with ctx(ctx.on.update_status(), started.state) as manager, record_side_effects() as effects:
        nginx = Nginx(manager.charm.unit.get_container(NGINX_CONTAINER))
        nginx.stop()
        nginx.stop()
        manager.run()
    assert effects.pebble.calls == [("stop", (NGINX_SERVICE,))]


def test_metadata_has_the_nginx_container_after_synapse() -> None:
    metadata = yaml.safe_load((Path(__file__).resolve().parents[3] / "metadata.yaml").read_text())
    assert list(metadata["containers"]) == [CONTAINER_NAME, NGINX_CONTAINER]
    resource = metadata["containers"][NGINX_CONTAINER]["resource"]
    assert metadata["resources"][resource]["type"] == "oci-image"
    assert re.fullmatch(r"docker\.io/library/nginx:\d+\.\d+\.\d+", metadata["resources"][resource]["upstream-source"])
