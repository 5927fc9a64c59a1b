"""The nginx sidecar: every request reaching a unit goes to a Synapse process that can serve it.

Each unit's pod runs nginx (the upstream image, container `nginx`) on NGINX_PORT in front of
Synapse; ingress and nginx-route point at it. On a unit running a generic worker, the
endpoints the generic worker serves (`worker_locations`, from Synapse's workers.md) go to that
worker and everything else (media included: the media store is on the main's storage) to the
main process; on the main unit, or a unit without a worker, everything goes to the main.

Client addresses: Synapse behind nginx runs with `x_forwarded: true` and believes the
X-Forwarded-For header, so nginx always replaces it (never appends to what a client sent) with
the client address it saw. That address is taken from X-Forwarded-For only when the connection
comes from a private address (an ingress controller, another pod: TRUSTED_PROXIES), so a client
from outside the cluster cannot choose the address Synapse rate-limits and logs, while one
behind an ingress is still seen with its own address rather than the ingress's.

The config is rendered here rather than with charmlibs-nginx-k8s: its reconcile runs
`update-ca-certificates` and pushes the config on every call, and its upstreams use
`server ... resolve`, which Debian bookworm's nginx 1.22 (our tests) refuses.
"""

import dataclasses
import functools
import ipaddress
import logging
import re

import jinja2
import ops

from constants import NGINX_CONFIG_PATH, NGINX_CONTAINER, NGINX_PORT, NGINX_SERVICE
from workload.pebble import layer_differs
from workload.service import TEMPLATES_DIR

logger = logging.getLogger(__name__)

NGINX_TEMPLATE = "nginx.conf.j2"
# The largest size nginx's client_max_body_size takes (off_t).
MAX_BODY_SIZE = 2**63 - 1
# Peers whose X-Forwarded-For nginx believes: loopback and private ranges (pods, ingress controllers).
TRUSTED_PROXIES = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "::1/128",
    "fc00::/7",
)
RELOAD_TIMEOUT = 60

# The endpoints of Synapse's generic_worker (workers.md, "synapse.app.generic_worker"), by group.
# Left out, so they go to the main: pagination (/messages: every request for a room must reach
# the same process, and with one worker per unit they would not), GET-only push rules, the SSO
# endpoints (all of an SSO login must reach one process), and what the doc routes to stream
# writers (typing, to-device: their writers stay on the main) or other worker types (media).
WORKER_ENDPOINTS: dict[str, tuple[str, ...]] = {
    "sync": (
        r"^/_matrix/client/(r0|v3)/sync$",
        r"^/_matrix/client/(api/v1|r0|v3)/events$",
        r"^/_matrix/client/(api/v1|r0|v3)/initialSync$",
        r"^/_matrix/client/(api/v1|r0|v3)/rooms/[^/]+/initialSync$",
    ),
    "federation": (
        r"^/_matrix/federation/v1/event/",
        r"^/_matrix/federation/v1/state/",
        r"^/_matrix/federation/v1/state_ids/",
        r"^/_matrix/federation/v1/backfill/",
        r"^/_matrix/federation/v1/get_missing_events/",
        r"^/_matrix/federation/v1/publicRooms",
        r"^/_matrix/federation/v1/query/",
        r"^/_matrix/federation/v1/make_join/",
        r"^/_matrix/federation/v1/make_leave/",
        r"^/_matrix/federation/(v1|v2)/send_join/",
        r"^/_matrix/federation/(v1|v2)/send_leave/",
        r"^/_matrix/federation/(v1|v2)/invite/",
        r"^/_matrix/federation/v1/event_auth/",
        r"^/_matrix/federation/v1/timestamp_to_event/",
        r"^/_matrix/federation/v1/exchange_third_party_invite/",
        r"^/_matrix/federation/v1/user/devices/",
        r"^/_matrix/key/v2/query",
        r"^/_matrix/federation/v1/hierarchy/",
    ),
    "federation-transactions": (r"^/_matrix/federation/v1/send/",),
    "client": (
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/createRoom$",
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/publicRooms$",
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/joined_members$",
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/context/.*$",
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/members$",
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/state$",
        r"^/_matrix/client/v1/rooms/.*/hierarchy$",
        r"^/_matrix/client/(v1|unstable)/rooms/.*/relations/",
        r"^/_matrix/client/v1/rooms/.*/threads$",
        r"^/_matrix/client/unstable/im.nheko.summary/rooms/.*/summary$",
        r"^/_matrix/client/(r0|v3|unstable)/account/3pid$",
        r"^/_matrix/client/(r0|v3|unstable)/account/whoami$",
        r"^/_matrix/client/(r0|v3|unstable)/devices$",
        r"^/_matrix/client/versions$",
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/voip/turnServer$",
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/event/",
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/joined_rooms$",
        r"^/_matrix/client/v1/rooms/.*/timestamp_to_event$",
        r"^/_matrix/client/(api/v1|r0|v3|unstable/.*)/rooms/.*/aliases",
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/search$",
        r"^/_matrix/client/(r0|v3|unstable)/user/.*/filter(/|$)",
    ),
    "encryption": (
        r"^/_matrix/client/(r0|v3|unstable)/keys/query$",
        r"^/_matrix/client/(r0|v3|unstable)/keys/changes$",
        r"^/_matrix/client/(r0|v3|unstable)/keys/claim$",
        r"^/_matrix/client/(r0|v3|unstable)/room_keys/",
        r"^/_matrix/client/(r0|v3|unstable)/keys/upload/",
    ),
    "login": (
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/login$",
        r"^/_matrix/client/(r0|v3|unstable)/register$",
        r"^/_matrix/client/(r0|v3|unstable)/register/available$",
        r"^/_matrix/client/v1/register/m.login.registration_token/validity$",
    ),
    "event-sending": (
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/redact",
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/send",
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/state/",
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/(join|invite|leave|ban|unban|kick)$",
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/join/",
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/knock/",
        r"^/_matrix/client/(api/v1|r0|v3|unstable)/profile/",
    ),
    # The generic worker forwards these writes to the stream writers (the main) over replication.
    "account-data": (
        r"^/_matrix/client/(r0|v3|unstable)/.*/tags",
        r"^/_matrix/client/(r0|v3|unstable)/.*/account_data",
    ),
    "receipts": (
        r"^/_matrix/client/(r0|v3|unstable)/rooms/.*/receipt",
        r"^/_matrix/client/(r0|v3|unstable)/rooms/.*/read_markers",
    ),
    "presence": (r"^/_matrix/client/(api/v1|r0|v3|unstable)/presence/",),
    "user-directory": (r"^/_matrix/client/(r0|v3|unstable)/user_directory/search$",),
}

_PORT = r"[1-9][0-9]{0,4}"
_HOST_PORT = re.compile(rf"(?P<host>[A-Za-z0-9.-]{{1,253}}|\[[0-9A-Fa-f:.]{{2,45}}\]):(?P<port>{_PORT})")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# What a value quoted into nginx.conf may hold: printable ASCII without quotes or backslashes.
_NGINX_SAFE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def validate_address(text: object) -> str:
    """`text` if it is host:port (IPv4, [IPv6] or a DNS name; port 1-65535); ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"an address must be a string, not {type(text).__name__}")
    match = _HOST_PORT.fullmatch(text)
    if match is None or not 0 < int(match["port"]) < 2**16:
        raise ValueError(f"{text!r} is not host:port")
    host = match["host"]
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{text!r}: {host} is not an IPv6 address") from None
        return text
    labels = host.split(".")
    if labels[-1].isdigit():  # numeric: must be a dotted-quad IPv4 address, not a name nginx resolves
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host} is not an IPv4 address") from None
        return text
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{text!r}: {host} is not a host name")
    return text


@dataclasses.dataclass(frozen=True)
class NginxRoutes:
    """Where this unit's nginx sends requests."""

    main: str  # host:port of the main process, e.g. 10.1.2.3:8008 (127.0.0.1:8008 on the main unit)
    worker: str | None  # host:port of this unit's generic worker; None when the unit runs none
    max_body_size: int  # bytes (Synapse's max_upload_size), nginx's client_max_body_size

    def __post_init__(self) -> None:
        """Refuse anything that is not an address or a byte count."""
        validate_address(self.main)
        if self.worker is not None:
            validate_address(self.worker)
        size = self.max_body_size
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_BODY_SIZE:
            raise ValueError(f"max_body_size must be an int of 1 to {MAX_BODY_SIZE} bytes, not {size!r}")


def worker_locations() -> tuple[str, ...]:
    """The nginx location regexes of the generic worker's endpoints, one per endpoint group."""
    return tuple("|".join(f"(?:{regex})" for regex in regexes) for regexes in WORKER_ENDPOINTS.values())


def _quote(value: object) -> str:
    """`value` as a double-quoted nginx string; ValueError for anything but safe printable ASCII."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _NGINX_SAFE.fullmatch(text):
        raise ValueError(f"{value!r} cannot be written into nginx.conf")
    return f'"{text}"'


def _integer(value: object) -> str:
    """A non-negative int as nginx reads it; ValueError for anything else."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative int")
    return str(value)


@functools.cache
def _environment() -> jinja2.Environment:
    """Jinja for nginx.conf: strict undefined, every value through the `quote` or `integer` filter."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 (nginx.conf, not HTML; values go through strict filters)
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["quote"] = _quote
    env.filters["integer"] = _integer
    return env


def render_nginx_config(routes: NginxRoutes) -> str:
    """nginx.conf for `routes`."""
    return (
        _environment()
        .get_template(NGINX_TEMPLATE)
        .render(
            port=NGINX_PORT,
            main=routes.main,
            worker=routes.worker,
            max_body_size=routes.max_body_size,
            worker_locations=worker_locations() if routes.worker is not None else (),
            trusted_proxies=TRUSTED_PROXIES,
        )
    )


def nginx_layer() -> ops.pebble.LayerDict:
    """The Pebble layer running nginx in the foreground on /etc/nginx/nginx.conf."""
    return {
        "summary": "nginx in front of Synapse",
        "description": "Routes each request to the Synapse process that serves it, configured by the Synapse charm",
        "services": {
            NGINX_SERVICE: {
                "override": "replace",
                "summary": "nginx",
                "command": "nginx -g 'daemon off;'",
                "startup": "enabled",
            }
        },
        # No level: a failing check is reported, it never makes Kubernetes restart the container.
        "checks": {
            "nginx-up": {
                "override": "replace",
                "period": "30s",
                "threshold": 3,
                "tcp": {"port": NGINX_PORT},
            }
        },
    }


class Nginx:
    """The nginx container, as the charm drives it: config pushed, reloaded or started only when needed."""

    def __init__(self, container: ops.Container):
        self.container = container

    def _read_config(self) -> str | None:
        """nginx.conf as the container holds it, None if absent."""
        try:
            return self.container.pull(NGINX_CONFIG_PATH, encoding="utf-8").read()
        except (ops.pebble.PathError, FileNotFoundError):
            return None

    def _layer_changed(self, layer: ops.pebble.LayerDict) -> bool:
        """Whether the plan differs from `layer` for nginx's service or check."""
        return layer_differs(self.container.get_plan(), layer)

    def is_running(self) -> bool:
        """Whether Pebble reports nginx as running."""
        try:
            return self.container.get_service(NGINX_SERVICE).is_running()
        except ops.ModelError:
            return False

    def _reload(self) -> None:
        """Make the running nginx read its config again; restart it if it cannot be signalled.

        A config nginx refuses (e.g. a host name that does not resolve) fails the restart, which
        raises ops.pebble.ChangeError: the hook fails and the next one starts nginx again.
        """
        try:
            self.container.exec(["nginx", "-s", "reload"], timeout=RELOAD_TIMEOUT).wait_output()
        except ops.pebble.ExecError as error:
            logger.warning("nginx -s reload failed (%s): restarting nginx", str(error.stderr).strip())
            self.container.restart(NGINX_SERVICE)

    def apply(self, config: str) -> None:
        """Run nginx on `config`: push it if it differs, start nginx or reload it only if needed.

        Does nothing when the container cannot be reached (it is not up yet).
        """
        if not self.container.can_connect():
            logger.debug("nginx container not reachable yet")
            return
        changed = self._read_config() != config
        if changed:
            self.container.push(NGINX_CONFIG_PATH, config, encoding="utf-8", make_dirs=True, permissions=0o644)
        layer = nginx_layer()
        layer_changed = self._layer_changed(layer)
        if layer_changed:
            self.container.add_layer(NGINX_CONTAINER, layer, combine=True)
        if not self.is_running() or layer_changed:
            logger.info("starting nginx")
            self.container.replan()
        elif changed:
            logger.info("nginx.conf changed: reloading nginx")
            self._reload()

    def stop(self) -> None:
        """Stop nginx if it is running (nothing when the container cannot be reached)."""
        if self.container.can_connect() and self.is_running():
            self.container.stop(NGINX_SERVICE)
