"""Scenarios behind reverse proxies: traefik's ingress, nginx-route, both (x_forwarded and well-known on)."""

import json

from ops import testing

from constants import INGRESS_ENDPOINT, NGINX_ROUTE_ENDPOINT
from tests.rendered_configs import Stage, scenario


def _ingress(url: str) -> testing.Relation:
    """The ingress relation, traefik having answered `url`."""
    return testing.Relation(
        INGRESS_ENDPOINT, remote_app_name="traefik", remote_app_data={"ingress": json.dumps({"url": url})}
    )


def _nginx_route() -> testing.Relation:
    """The nginx-route relation (the integrator answers nothing)."""
    return testing.Relation(NGINX_ROUTE_ENDPOINT, remote_app_name="nginx-ingress")


@scenario("ingress-delegated-to-another-host")
def ingress_other_host(stage: Stage) -> testing.State:
    """public_baseurl from traefik on another host; the server document is the operator's to serve."""
    return stage.state(relations=[_ingress("https://matrix.example.com")])


@scenario("nginx-route-with-the-server-name-host")
def nginx_route(stage: Stage) -> testing.State:
    """public_baseurl configured on another host; nginx-route also routes the server_name's host."""
    return stage.state({"public_baseurl": "https://matrix.example.com/"}, relations=[_nginx_route()])


@scenario("ingress-and-nginx-route")
def both(stage: Stage) -> testing.State:
    """Both proxies: the ingress URL is public_baseurl, nginx-route serves the server_name's host."""
    return stage.state(relations=[_ingress("https://matrix.example.com:8443/"), _nginx_route()])
