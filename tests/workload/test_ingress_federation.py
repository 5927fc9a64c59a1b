"""Behind reverse proxies, as the relations configure them: a real client, .well-known, and federation.

Three test hosts on a private network (tests/workload/netns.py), each its own network
namespace, all trusting one test CA and resolving each other through their /etc/hosts:

- `a.test`: server_name a.test behind traefik's ingress on another host name. The test plays
  traefik: it reads the charm's ingress request (port, unit address), runs nginx terminating
  TLS for `matrix.a.test` in front of the unit, and answers the URL. The server_name's host is
  not routed to Synapse, so the operator serves the two documents `get-well-known` returns on
  a.test's web server (the same nginx, a static site).
- `b.test`: server_name b.test, public_baseurl https://matrix.b.test/, behind nginx-route. The
  test plays nginx-ingress-integrator: it routes the hostnames of the charm's request (with the
  additional server_name host) to the unit, so Synapse serves the server document itself.
- `client.test`: where the users' Matrix client (matrix-nio) runs.

Each unit's pod runs the charm's nginx sidecar (Debian's nginx, see tests/workload/harness.py)
in front of Synapse, where the proxies send requests. The network is a private range, as pod
addresses are. Synapse blocks private addresses for outgoing requests, so both servers get the
network in `ip_range_whitelist` and no `trusted_key_servers` (there is no matrix.org here), as
an operator on a private network would configure them.
"""

import dataclasses
import http.client
import json
import secrets
import socket
import ssl
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops import testing

from constants import INGRESS_ENDPOINT, NGINX_PORT, NGINX_ROUTE_ENDPOINT, WELL_KNOWN_ACTION
from tests.workload import harness
from tests.workload.netns import TestHost, TestNetwork
from tests.workload.nginx import Nginx
from tests.workload.tls import TestCA

NIO_CLIENT = Path(__file__).with_name("nio_client.py")
# A private range, as pod addresses are: each unit's nginx believes the X-Forwarded-For of a proxy
# on a private address only (so the proxies here must have one).
POD_SUBNET = "10.89.0.0/24"
CLIENT_TIMEOUT = 120


@dataclasses.dataclass
class World:
    """The three hosts, the two units and what the test recorded while building them."""

    network: TestNetwork
    ca_path: Path
    client: harness.SystemView
    a: harness.CharmDriver
    b: harness.CharmDriver
    a_host: TestHost
    b_host: TestHost
    client_host: TestHost
    a_well_known: dict[str, str]
    b_well_known: dict[str, str]
    ingress_request: dict[str, typing.Any]
    nginx_route_request: dict[str, str]
    restarts: dict[str, int]
    passwords: dict[str, str]
    webs: list[Nginx]


def _unit_network(endpoint: str, address: str) -> testing.Network:
    """The unit's binding on `endpoint`: its address on the test network (as its pod IP)."""
    return testing.Network(endpoint, bind_addresses=[testing.BindAddress([testing.Address(address)])])


def _build_a(world: dict[str, typing.Any], base: Path, venv: Path, ca: TestCA) -> None:
    """a.test: deploy, relate the ingress, play traefik, serve the delegation documents."""
    host: TestHost = world["a_host"]
    network: TestNetwork = world["network"]
    driver = harness.CharmDriver(
        base / "a" / "data",
        {"server_name": "a.test", "ip_range_whitelist": str(network.subnet), "trusted_key_servers": ""},
        venv=venv,
        log_path=base / "a" / "synapse.log",
        netns=host.namespace,
        hosts=network.hosts(),
        trusted_ca=world["ca_path"],
        nginx=True,
    )
    world["a"] = driver
    networks = frozenset({_unit_network(INGRESS_ENDPOINT, host.address)})
    driver.state = dataclasses.replace(driver.state, networks=networks)
    driver.deploy()
    restarts: dict[str, int] = {}
    relation = driver.relate(testing.Relation(INGRESS_ENDPOINT, remote_app_name="traefik"))
    restarts["ingress related"] = sum(calls.restarts for calls in driver.history[-2:])
    app_data = typing.cast(dict[str, str], relation.local_app_data)
    unit_data = typing.cast(dict[str, str], relation.local_unit_data)
    request = {
        **{key: json.loads(value) for key, value in app_data.items()},
        **{key: json.loads(unit_data[key]) for key in ("host", "ip")},
    }
    world["ingress_request"] = request
    web = Nginx(base / "a" / "nginx", host.namespace)
    world["webs"].append(web)
    cert, key = ca.write_leaf(base / "a" / "certs", "matrix.a.test")
    web.proxy(["matrix.a.test"], cert, key, f"http://{request['ip']}:{request['port']}")
    driver.update_remote_app_data(relation.id, {"ingress": json.dumps({"url": "https://matrix.a.test/"})})
    restarts["ingress answered"] = driver.last_calls.restarts
    documents = driver.run_action(WELL_KNOWN_ACTION)
    world["a_well_known"] = documents
    cert, key = ca.write_leaf(base / "a" / "certs", "a.test")
    paths = {"/.well-known/matrix/server": documents["server"], "/.well-known/matrix/client": documents["client"]}
    web.static(["a.test"], cert, key, paths)
    web.start()
    world["restarts"] = restarts


def _build_b(world: dict[str, typing.Any], base: Path, venv: Path, ca: TestCA) -> None:
    """b.test: deploy with public_baseurl on matrix.b.test, relate nginx-route, play the integrator."""
    host: TestHost = world["b_host"]
    network: TestNetwork = world["network"]
    config = {
        "server_name": "b.test",
        "public_baseurl": "https://matrix.b.test/",
        "ip_range_whitelist": str(network.subnet),
        "trusted_key_servers": "",
    }
    driver = harness.CharmDriver(
        base / "b" / "data",
        config,
        venv=venv,
        log_path=base / "b" / "synapse.log",
        netns=host.namespace,
        hosts=network.hosts(),
        trusted_ca=world["ca_path"],
        nginx=True,
    )
    world["b"] = driver
    driver.deploy()
    relation = driver.relate(testing.Relation(NGINX_ROUTE_ENDPOINT, remote_app_name="nginx-ingress"))
    request = dict(typing.cast(dict[str, str], relation.local_app_data))
    world["nginx_route_request"] = request
    names = [request["service-hostname"], *filter(None, request.get("additional-hostnames", "").split(","))]
    web = Nginx(base / "b" / "nginx", host.namespace)
    world["webs"].append(web)
    cert, key = ca.write_leaf(base / "b" / "certs", *names)
    # The integrator routes to the application's Kubernetes service: here, the unit's address.
    upstream = f"http://{host.address}:{request['service-port']}"
    web.proxy(names, cert, key, upstream, max_body_mib=int(request["max-body-size"]))
    web.start()
    world["b_well_known"] = driver.run_action(WELL_KNOWN_ACTION)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, synapse_venv: Path) -> Iterator[World]:
    """Both homeservers behind their proxies, a user on each, and the client host."""
    base = tmp_path_factory.mktemp("federation")
    ca = TestCA()
    parts: dict[str, typing.Any] = {"webs": [], "ca_path": ca.write_cert(base / "ca.pem")}
    with TestNetwork(POD_SUBNET) as network:
        parts["network"] = network
        parts["a_host"] = network.add_host("a.test", "matrix.a.test")
        parts["b_host"] = network.add_host("b.test", "matrix.b.test")
        parts["client_host"] = network.add_host("client.test")
        parts["client"] = harness.SystemView.create(
            base / "client", netns=parts["client_host"].namespace, hosts=network.hosts(), trusted_ca=parts["ca_path"]
        )
        try:
            _build_a(parts, base, synapse_venv, ca)
            _build_b(parts, base, synapse_venv, ca)
            parts["passwords"] = {"alice": secrets.token_urlsafe(12), "bob": secrets.token_urlsafe(12)}
            parts["a"].run_action(
                "register-user", {"username": "alice", "admin": True, "password": parts["passwords"]["alice"]}
            )
            parts["b"].run_action("register-user", {"username": "bob", "password": parts["passwords"]["bob"]})
            yield World(**parts)
        finally:
            for web in parts["webs"]:
                web.stop()
            for name in ("a", "b"):
                if name in parts:
                    parts[name].stop()


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to `name` at a given address (the test process does not resolve the test host names)."""

    def __init__(self, name: str, address: str, context: ssl.SSLContext):
        super().__init__(name, 443, timeout=10, context=context)
        self.address = address
        self.tls = context

    def connect(self) -> None:
        """Connect to the address, verifying the certificate for the name."""
        self.sock = self.tls.wrap_socket(socket.create_connection((self.address, 443), 10), server_hostname=self.host)


def https_get(world: World, name: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET https://<name><path> from the client host, verifying the certificate against the test CA."""
    context = ssl.create_default_context(cafile=str(world.ca_path))
    with world.client_host.namespace.entered():
        connection = _PinnedHTTPS(name, world.network.hosts()[name], context)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()


def matrix_client(world: World, homeserver: str, user: str, steps: list[dict[str, typing.Any]]) -> list[typing.Any]:
    """Run the nio client on the client host; its step results (fails the test with its error)."""
    request = json.dumps({"homeserver": homeserver, "user": user, "steps": steps})
    done = subprocess.run(
        world.client.argv([sys.executable, str(NIO_CLIENT), request]),
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT + 60,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    answer = json.loads(lines[-1]) if lines else {"error": done.stderr[-2000:]}
    assert done.returncode == 0 and "results" in answer, f"{answer}\n{done.stderr[-2000:]}"
    return typing.cast(list[typing.Any], answer["results"])


def test_ingress_request_and_one_restart_per_change(world: World) -> None:
    """The charm asked traefik for its port with strip-prefix, from its own address; each change restarted once."""
    request = world.ingress_request
    assert {key: request[key] for key in ("name", "port", "strip-prefix")} == {
        "name": "synapse",
        "port": NGINX_PORT,
        "strip-prefix": True,
    }
    assert request["ip"] == world.a_host.address
    # Synapse always believes X-Forwarded-For (its nginx sets it): relating the ingress restarts nothing.
    assert world.restarts == {"ingress related": 0, "ingress answered": 1}
    assert world.a.process.is_alive() and world.b.process.is_alive()


def test_nginx_route_request(world: World) -> None:
    """nginx-route: public_baseurl's host, the server_name's host in addition, the upload limit."""
    assert world.nginx_route_request == {
        "service-hostname": "matrix.b.test",
        "additional-hostnames": "b.test",
        "service-name": "synapse",
        "service-port": str(NGINX_PORT),
        "service-namespace": world.b.state.model.name,
        "max-body-size": "50",
    }


def test_both_well_known_documents_answer_right(world: World) -> None:
    """a.test: the documents the action gave, served by the operator; b.test: Synapse's own, through nginx."""
    assert world.a_well_known["served-by-synapse"] == "false"
    assert json.loads(world.a_well_known["server"]) == {"m.server": "matrix.a.test:443"}
    assert world.b_well_known["served-by-synapse"] == "true"
    assert json.loads(world.b_well_known["server"]) == {"m.server": "b.test:443"}
    expected = {
        "a.test": (world.a_well_known, "https://matrix.a.test/"),
        "b.test": (world.b_well_known, "https://matrix.b.test/"),
    }
    for name, (documents, base_url) in expected.items():
        status, _, body = https_get(world, name, "/.well-known/matrix/server")
        assert (status, json.loads(body)) == (200, json.loads(documents["server"])), name
        status, headers, body = https_get(world, name, "/.well-known/matrix/client")
        assert (status, json.loads(body)) == (200, {"m.homeserver": {"base_url": base_url}}), name
        assert json.loads(documents["client"]) == json.loads(body)
        assert headers.get("access-control-allow-origin") == "*", name
    # Synapse on a.test does not claim a.test's delegation: that is not its host.
    assert https_get(world, "matrix.a.test", "/.well-known/matrix/server")[0] == 404


def test_a_client_logs_in_creates_a_room_and_sends_through_the_ingress(world: World) -> None:
    """matrix-nio finds the homeserver through a.test's .well-known and uses it over TLS; X-Forwarded-For is trusted."""
    (homeserver,) = matrix_client(
        world, "https://a.test", "@alice:a.test", [{"op": "discover", "server": "https://a.test"}]
    )
    assert homeserver.rstrip("/") == "https://matrix.a.test"
    login, room_id, event_id, sender = matrix_client(
        world,
        homeserver,
        "@alice:a.test",
        [
            {"op": "login", "password": world.passwords["alice"]},
            {"op": "create_room", "alias": "lobby"},
            {"op": "send", "room_from": 1, "body": "hello from a"},
            {"op": "wait_for", "room_from": 1, "body": "hello from a", "timeout": 30},
        ],
    )
    assert room_id.startswith("!")  # room version 12: no server name in room IDs
    assert event_id.startswith("$")
    assert sender == "@alice:a.test"
    with world.a.entered():
        status, whois = harness.http_json("GET", "/_synapse/admin/v1/whois/@alice:a.test", token=login["access_token"])
    assert status == 200, whois
    addresses = {
        connection["ip"]
        for device in whois["devices"].values()
        for session in device["sessions"]
        for connection in session["connections"]
    }
    # The client's address from X-Forwarded-For, never nginx's own (which connects from a.test's address);
    # the whois request itself came from the harness on the unit's loopback.
    assert world.client_host.address in addresses, addresses
    assert world.a_host.address not in addresses, addresses


def test_federation_between_the_two_servers_both_ways(world: World) -> None:
    """bob@b.test joins a room on a.test by its alias; messages flow from a to b and from b to a."""
    alice_server, bob_server = "https://matrix.a.test", "https://matrix.b.test"
    alice, room_id = matrix_client(
        world,
        alice_server,
        "@alice:a.test",
        [{"op": "login", "password": world.passwords["alice"]}, {"op": "create_room", "alias": "federation"}],
    )
    bob, joined = matrix_client(
        world,
        bob_server,
        "@bob:b.test",
        [{"op": "login", "password": world.passwords["bob"]}, {"op": "join", "room": "#federation:a.test"}],
    )
    assert joined == room_id
    matrix_client(world, alice_server, "@alice:a.test", [{"op": "token", **alice}, message(room_id, "hello from a")])
    _, sender, _ = matrix_client(
        world,
        bob_server,
        "@bob:b.test",
        [{"op": "token", **bob}, wait_for(room_id, "hello from a"), message(room_id, "hello from b")],
    )
    assert sender == "@alice:a.test"
    _, sender = matrix_client(
        world, alice_server, "@alice:a.test", [{"op": "token", **alice}, wait_for(room_id, "hello from b")]
    )
    assert sender == "@bob:b.test"


def message(room_id: str, body: str) -> dict[str, str]:
    """A step sending `body`."""
    return {"op": "send", "room": room_id, "body": body}


def wait_for(room_id: str, body: str) -> dict[str, typing.Any]:
    """A step waiting for `body`."""
    return {"op": "wait_for", "room": room_id, "body": body, "timeout": CLIENT_TIMEOUT}
