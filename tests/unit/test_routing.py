"""Routing: the public_baseurl precedence, X-Forwarded trust, delegation and the .well-known documents."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing import (
    IngressAnswer,
    ProxyRelations,
    Routing,
    RoutingError,
    delegable,
    federation_problem,
    nginx_route_hosts,
    resolve_routing,
    well_known,
)
from tests.strategies import base_urls, server_names

TRAEFIK = "traefik"
INGRESS_URL = "https://matrix.example.com/"
PREFIXED_URL = "https://ingress.example.com/model-synapse/"


def ingress(url: str = INGRESS_URL) -> IngressAnswer:
    """An ingress answer with a URL."""
    return IngressAnswer(TRAEFIK, url=url)


NOT_YET = IngressAnswer(TRAEFIK, problem="waiting for traefik to send the ingress URL")

# (configured public_baseurl, ingress answer, nginx-route related) -> (public_baseurl, source)
PRECEDENCE = [
    ("", None, False, "https://example.com/", "server_name"),
    ("https://chat.example.org/", None, False, "https://chat.example.org/", "config"),
    ("https://chat.example.org/", ingress(), True, "https://chat.example.org/", "config"),
    ("", ingress(), False, INGRESS_URL, "ingress"),
    ("", ingress(), True, INGRESS_URL, "ingress"),
    ("", NOT_YET, False, "https://example.com/", "server_name"),
    ("", NOT_YET, True, "https://example.com/", "nginx-route"),
    ("", None, True, "https://example.com/", "nginx-route"),
]


@pytest.mark.parametrize(("configured", "answer", "nginx_route", "url", "source"), PRECEDENCE)
def test_public_baseurl_precedence(
    configured: str, answer: IngressAnswer | None, nginx_route: bool, url: str, source: str
) -> None:
    """The option wins; else the ingress URL; else the nginx-route hostname; else the server_name."""
    routing = resolve_routing("example.com", configured, ProxyRelations(answer, nginx_route))
    assert (routing.public_baseurl, routing.source) == (url, source)


def test_nginx_route_hostname_drops_the_server_name_port() -> None:
    """nginx-route routes host names: https://<hostname>/, not the server_name's :port."""
    routing = resolve_routing("example.com:8448", "", ProxyRelations(nginx_route=True))
    assert routing.public_baseurl == "https://example.com/"
    assert resolve_routing("example.com:8448", "", ProxyRelations()).public_baseurl == "https://example.com:8448/"


@pytest.mark.parametrize(
    ("answer", "nginx_route", "proxied"),
    [(None, False, False), (ingress(), False, True), (NOT_YET, False, True), (None, True, True)],
)
def test_x_forwarded_only_with_a_proxy_relation(answer: IngressAnswer | None, nginx_route: bool, proxied: bool) -> None:
    """X-Forwarded-* is trusted while an ingress or nginx-route relation exists, even before it answers."""
    assert resolve_routing("example.com", "", ProxyRelations(answer, nginx_route)).proxied is proxied


def test_waiting_while_the_ingress_has_not_answered() -> None:
    """A missing or unusable ingress answer is a reason to wait; Synapse runs on the next URL meanwhile."""
    routing = resolve_routing("example.com", "", ProxyRelations(NOT_YET))
    assert routing.waiting == NOT_YET.problem
    assert resolve_routing("example.com", "", ProxyRelations(ingress())).waiting == ""


def test_nginx_route_hosts() -> None:
    """The hostname is public_baseurl's host, else the server_name's; the server_name's host is added."""
    assert nginx_route_hosts("example.com", "") == ("example.com",)
    assert nginx_route_hosts("example.com", "https://Matrix.Example.com:8448/x/") == (
        "matrix.example.com",
        "example.com",
    )
    assert nginx_route_hosts("example.com:8448", "https://matrix.example.com/") == ("matrix.example.com",)
    assert nginx_route_hosts("10.0.0.1", "https://matrix.example.com/") == ("matrix.example.com",)
    with pytest.raises(RoutingError, match=r"nginx-route needs a DNS host name, not 10\.0\.0\.1"):
        nginx_route_hosts("10.0.0.1", "")
    with pytest.raises(RoutingError, match=r"public_baseurl=https://<host name>/"):
        nginx_route_hosts("example.com", "https://[::1]/")


# (server_name, configured, ingress, nginx-route) -> serve_server_wellknown
DELEGATION = [
    ("example.com", "", None, False, True),  # https://example.com/ is the public URL
    ("example.com", "https://example.com:443/", None, False, True),
    ("example.com", "https://matrix.example.com/", None, False, False),
    ("example.com", "https://example.com:8448/", None, False, False),
    ("example.com", "http://example.com/", None, False, False),
    ("example.com", "https://example.com/synapse/", None, False, False),
    ("example.com", "", ingress(), False, False),  # traefik routes matrix.example.com only
    ("example.com", "", ingress("https://example.com/"), False, True),
    ("example.com", "", ingress(PREFIXED_URL), False, False),
    ("example.com", "", ingress(), True, True),  # nginx-route adds example.com
    ("example.com", "https://matrix.example.com/", None, True, True),
    ("example.com:8448", "", None, True, False),  # a port: servers connect directly
    ("10.0.0.1", "https://matrix.example.com/", None, True, False),
    ("[::1]", "", None, False, False),
]


@pytest.mark.parametrize(("server_name", "configured", "answer", "nginx_route", "serve"), DELEGATION)
def test_serve_server_wellknown_only_when_the_server_name_host_is_routed(
    server_name: str, configured: str, answer: IngressAnswer | None, nginx_route: bool, serve: bool
) -> None:
    """Synapse's document says <server_name>:443: right only when that reaches Synapse."""
    routing = resolve_routing(server_name, configured, ProxyRelations(answer, nginx_route))
    assert routing.serve_server_wellknown is serve


def test_a_path_prefixed_ingress_says_federation_cannot_use_it() -> None:
    """Traefik's default path routing serves clients, not federation: the notice says how to route by host."""
    routing = resolve_routing("example.com", "", ProxyRelations(ingress(PREFIXED_URL)))
    assert routing.public_baseurl == PREFIXED_URL
    assert routing.notice == (
        f"federation cannot use {PREFIXED_URL}: it has a path prefix (/model-synapse) and federation has none; "
        "route by host instead (traefik `routing_mode=subdomain`, or the nginx-route relation)"
    )
    plain = resolve_routing("example.com", "", ProxyRelations(ingress("http://matrix.example.com/")))
    assert plain.notice == (
        "federation needs HTTPS but http://matrix.example.com/ is plain HTTP; enable TLS on the ingress"
    )
    assert resolve_routing("example.com", "", ProxyRelations(ingress())).notice == ""
    assert resolve_routing("example.com", PREFIXED_URL, ProxyRelations(ingress(PREFIXED_URL))).notice == ""


def test_well_known_documents_when_synapse_serves_them() -> None:
    """Exactly what Synapse serves: <server_name>:443 and the public_baseurl."""
    routing = resolve_routing("example.com", "", ProxyRelations(ingress(), nginx_route=True))
    documents = well_known("example.com", routing)
    assert documents.served_by_synapse
    assert documents.server_url == "https://example.com/.well-known/matrix/server"
    assert documents.server == {"m.server": "example.com:443"}
    assert documents.client_url == "https://example.com/.well-known/matrix/client"
    assert documents.client == {"m.homeserver": {"base_url": INGRESS_URL}}


def test_well_known_documents_delegating_to_another_host() -> None:
    """Not routed: the server document names public_baseurl's host and port (443 when implied)."""
    documents = well_known("example.com", resolve_routing("example.com", "", ProxyRelations(ingress())))
    assert not documents.served_by_synapse
    assert documents.server == {"m.server": "matrix.example.com:443"}
    assert documents.client == {"m.homeserver": {"base_url": INGRESS_URL}}
    custom = resolve_routing("example.com", "https://matrix.example.com:8448/", ProxyRelations())
    assert well_known("example.com", custom).server == {"m.server": "matrix.example.com:8448"}


@pytest.mark.parametrize(
    ("server_name", "url", "message"),
    [
        ("example.com", PREFIXED_URL, "has a path prefix (/model-synapse)"),
        ("example.com", "http://matrix.example.com/", "federation needs HTTPS"),
        ("example.com:8448", INGRESS_URL, "connect to it directly"),
        ("10.1.2.3", INGRESS_URL, "connect to it directly"),
    ],
)
def test_well_known_refuses_documents_that_cannot_work(server_name: str, url: str, message: str) -> None:
    """No document is given that would send federation where it cannot go."""
    with pytest.raises(RoutingError, match=re.escape(message)):
        well_known(server_name, Routing(public_baseurl=url))


@given(server_name=server_names(), configured=st.one_of(st.just(""), base_urls()), nginx_route=st.booleans())
def test_routing_never_raises_but_routing_errors(server_name: str, configured: str, nginx_route: bool) -> None:
    """Any valid server name and URL gives a routing, or a RoutingError for nginx-route without a host name."""
    from state import parse_public_url, validate_server_name

    server_name = validate_server_name(server_name)
    configured = parse_public_url(configured) if configured else ""
    try:
        routing = resolve_routing(server_name, configured, ProxyRelations(None, nginx_route))
    except RoutingError:
        assert nginx_route
        return
    assert routing.public_baseurl.endswith("/")
    if routing.serve_server_wellknown:
        assert delegable(server_name)
    try:
        documents = well_known(server_name, routing)
    except RoutingError:
        assert not delegable(server_name) or federation_problem(routing.public_baseurl)
        return
    assert documents.client == {"m.homeserver": {"base_url": routing.public_baseurl}}
