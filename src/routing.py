"""Where clients and other servers reach Synapse: public_baseurl, reverse proxies and delegation.

`public_baseurl`, in order of precedence: the `public_baseurl` option; else the URL the
ingress provider sent; else `https://<nginx-route hostname>/`; else `https://<server_name>/`.
The nginx-route hostname is the host of the `public_baseurl` option, else the server_name's
host; the server_name's host is added as an additional hostname when it differs, so that
`https://<server_name>/.well-known/matrix/*` reaches Synapse too.

Delegation: other servers look for `https://<server_name>/.well-known/matrix/server`, clients
for `.../client`. Synapse serves the client document (from public_baseurl) and, with
`serve_server_wellknown`, a server document saying `<server_name>:443`, which is right only
when the server_name's host on port 443 is routed to Synapse: public_baseurl is
`https://<server_name>/`, or nginx-route routes the server_name's host. Otherwise the operator
serves both documents on the server_name's domain (`well_known` gives their content).

Reverse proxies are trusted for X-Forwarded-* only while an ingress or nginx-route relation exists.
"""

import dataclasses
import ipaddress
import typing
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

WELL_KNOWN_SERVER_PATH = "/.well-known/matrix/server"
WELL_KNOWN_CLIENT_PATH = "/.well-known/matrix/client"
HTTPS_PORT = 443

Source = typing.Literal["config", "ingress", "nginx-route", "server_name"]


class RoutingError(ValueError):
    """The relations and config cannot route Synapse; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class IngressAnswer:
    """What the ingress provider sent: a usable URL (ending with '/'), or what is missing or wrong."""

    provider: str
    url: str = ""
    problem: str = ""


@dataclasses.dataclass(frozen=True)
class ProxyRelations:
    """The reverse-proxy relations: the ingress answer (None when not related), whether nginx-route is."""

    ingress: IngressAnswer | None = None
    nginx_route: bool = False


def split_server_name(server_name: str) -> tuple[str, int | None]:
    """(host, port or None) of a validated server name; an IPv6 host keeps its brackets."""
    if server_name.startswith("["):
        host, _, rest = server_name.partition("]")
        return host + "]", int(rest[1:]) if rest.startswith(":") else None
    host, _, port = server_name.partition(":")
    return host, int(port) if port else None


def is_dns_name(host: str) -> bool:
    """Whether `host` (as in a server name or URL) is a DNS name rather than an IP address."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    return False


def delegable(server_name: str) -> bool:
    """Whether other servers look up .well-known for `server_name`: a DNS name without a port.

    A server name with a port or an IP address is connected to directly.
    """
    host, port = split_server_name(server_name)
    return port is None and is_dns_name(host)


def federation_problem(url: str) -> str:
    """Why federation cannot reach Synapse at `url` (empty when it can).

    Federation has no path prefix and needs HTTPS.
    """
    parts = urlsplit(url)
    if parts.path not in ("", "/"):
        return (
            f"federation cannot use {url}: it has a path prefix ({parts.path.rstrip('/')}) and federation has none; "
            "route by host instead (traefik `routing_mode=subdomain`, or the nginx-route relation)"
        )
    if parts.scheme != "https":
        return f"federation needs HTTPS but {url} is plain HTTP; enable TLS on the ingress"
    return ""


def nginx_route_hosts(server_name: str, configured_url: str) -> tuple[str, ...]:
    """(service hostname, *additional hostnames) to ask nginx-route for."""
    if configured_url:
        host = urlsplit(configured_url).hostname or ""
    else:
        host = split_server_name(server_name)[0]
    if not is_dns_name(host):
        raise RoutingError(
            f"nginx-route needs a DNS host name, not {host}; set one with "
            "`juju config {app} public_baseurl=https://<host name>/`"
        )
    server_host = split_server_name(server_name)[0]
    return (host, server_host) if delegable(server_name) and server_host != host else (host,)


def _routes_server_name(url: str, server_name: str) -> bool:
    """Whether `url` is Synapse at the root of https://<server_name>:443."""
    parts = urlsplit(url)
    return (
        parts.scheme == "https"
        and parts.hostname == server_name
        and (parts.port or HTTPS_PORT) == HTTPS_PORT
        and parts.path in ("", "/")
    )


class Routing(BaseModel):
    """How Synapse is reached, from config and the reverse-proxy relations."""

    model_config = ConfigDict(frozen=True)

    public_baseurl: str
    source: Source = "server_name"
    # A reverse proxy is related (traefik's ingress or nginx-route).
    proxied: bool = False
    serve_server_wellknown: bool = False
    nginx_route_hosts: tuple[str, ...] = ()
    # A related proxy has not sent what we need (yet): a Waiting status.
    waiting: str = ""
    # Synapse runs, but not everything works this way: the Active status message.
    notice: str = ""


def resolve_routing(server_name: str, configured_url: str, proxies: ProxyRelations) -> Routing:
    """The routing for a validated server name, the `public_baseurl` option ('' when unset) and the proxies."""
    ingress = proxies.ingress
    hosts = nginx_route_hosts(server_name, configured_url) if proxies.nginx_route else ()
    source: Source
    if configured_url:
        url, source = configured_url, "config"
    elif ingress is not None and ingress.url:
        url, source = ingress.url, "ingress"
    elif hosts:
        url, source = f"https://{hosts[0]}/", "nginx-route"
    else:
        url, source = f"https://{server_name}/", "server_name"
    routed = bool(hosts) or _routes_server_name(url, server_name)
    return Routing(
        public_baseurl=url,
        source=source,
        proxied=ingress is not None or proxies.nginx_route,
        serve_server_wellknown=delegable(server_name) and routed,
        nginx_route_hosts=hosts,
        waiting=ingress.problem if ingress is not None and not ingress.url else "",
        notice=federation_problem(url) if source == "ingress" else "",
    )


class WellKnown(BaseModel):
    """The two delegation documents, where they must be served, and whether Synapse serves them."""

    model_config = ConfigDict(frozen=True)

    served_by_synapse: bool
    server_url: str
    server: dict[str, str]
    client_url: str
    client: dict[str, dict[str, str]]


def well_known(server_name: str, routing: Routing) -> WellKnown:
    """The .well-known documents for `server_name`, exactly as Synapse would serve them.

    Raises RoutingError when no document can delegate federation to public_baseurl.
    """
    host, _ = split_server_name(server_name)
    if not delegable(server_name):
        raise RoutingError(
            f"server_name {server_name} is an IP address or names its port: other servers connect to it directly "
            "and look for no .well-known document"
        )
    if routing.serve_server_wellknown:
        target = f"{host}:{HTTPS_PORT}"
    else:
        problem = federation_problem(routing.public_baseurl)
        if problem:
            raise RoutingError(problem)
        parts = urlsplit(routing.public_baseurl)
        target = f"{parts.netloc}:{HTTPS_PORT}" if parts.port is None else parts.netloc
    return WellKnown(
        served_by_synapse=routing.serve_server_wellknown,
        server_url=f"https://{host}{WELL_KNOWN_SERVER_PATH}",
        server={"m.server": target},
        client_url=f"https://{host}{WELL_KNOWN_CLIENT_PATH}",
        client={"m.homeserver": {"base_url": routing.public_baseurl}},
    )
