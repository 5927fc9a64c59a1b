"""The harness's test machines: network namespaces, /etc/hosts and a trusted test CA.

Pins what other workload tests rely on: hosts on a TestNetwork reach each other by the
names of a SystemView's hosts file and nothing else, the caller's network namespace is left
untouched, and the Synapse venv's OpenSSL (as Synapse's uid) trusts exactly the CAs of the view.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from constants import SYNAPSE_GID, SYNAPSE_UID
from tests.workload import harness
from tests.workload.netns import TestNetwork
from tests.workload.tls import TestCA

# A one-file TLS (or plain) HTTP server: argv = port [cert key].
SERVER = textwrap.dedent(
    """
    import http.server, ssl, sys
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello from " + self.headers["Host"].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), Handler)
    if len(sys.argv) > 2:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()
    """
)

# pyOpenSSL with its default verify paths, as Twisted's platformTrust() (Synapse's federation
# client) sets them up: argv = host port.
OPENSSL_CLIENT = textwrap.dedent(
    """
    import socket, sys
    from OpenSSL import SSL
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_default_verify_paths()
    context.set_verify(SSL.VERIFY_PEER, lambda conn, cert, errno, depth, ok: bool(ok))
    sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    sock.settimeout(None)  # pyOpenSSL needs a blocking socket
    connection = SSL.Connection(context, sock)
    connection.set_tlsext_host_name(sys.argv[1].encode())
    connection.set_connect_state()
    try:
        connection.do_handshake()
    except SSL.Error as exc:
        print("refused", repr(exc))
        sys.exit(1)
    print("verified", connection.get_peer_certificate().get_subject().CN)
    """
)


def _links() -> str:
    """The caller's network interfaces and addresses."""
    return subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def network(test_network: TestNetwork) -> TestNetwork:
    """Two hosts: a.test (also www.a.test) and b.test."""
    test_network.add_host("a.test", "www.a.test")
    test_network.add_host("b.test")
    return test_network


def _serve(network: TestNetwork, port: int, *tls: Path) -> subprocess.Popen[str]:
    """Start SERVER on a.test; return it once it listens."""
    server = subprocess.Popen(
        network.hosts_list[0].namespace.wrap([sys.executable, "-c", SERVER, str(port), *map(str, tls)]),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    return server


def test_hosts_reach_each_other_by_name_and_the_caller_is_untouched(network: TestNetwork, tmp_path: Path) -> None:
    """b.test's view resolves a.test through its hosts file and connects over the bridge."""
    before = _links()
    view = harness.SystemView.create(tmp_path / "b", netns=network.hosts_list[1].namespace, hosts=network.hosts())
    server = _serve(network, 8080)
    try:
        fetch = "import urllib.request as u; print(u.urlopen('http://www.a.test:8080/', timeout=5).read().decode())"
        done = subprocess.run(view.argv([sys.executable, "-c", fetch]), capture_output=True, text=True, check=False)
        without_hosts = harness.SystemView(netns=view.netns).argv([sys.executable, "-c", fetch])
        unresolved = subprocess.run(without_hosts, capture_output=True, text=True, check=False)
    finally:
        server.kill()
        server.wait()

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello from www.a.test:8080"
    assert unresolved.returncode != 0, "without the view's hosts file the test names must not resolve"
    assert "a.test" not in Path("/etc/hosts").read_text(), "the hosts file must stay inside the view"
    assert _links() == before, "the caller's network namespace must not change"
    assert network.hosts() == {"a.test": "192.0.2.1", "www.a.test": "192.0.2.1", "b.test": "192.0.2.2"}


def test_synapse_openssl_trusts_the_views_ca_and_nothing_else(
    network: TestNetwork, tmp_path: Path, synapse_venv: Path
) -> None:
    """As Synapse's uid, the venv's pyOpenSSL verifies a test-CA certificate only with the view's bundle."""
    ca = TestCA()
    cert, key = ca.write_leaf(tmp_path / "certs", "a.test")
    trusting = harness.SystemView.create(
        tmp_path / "trusting",
        netns=network.hosts_list[1].namespace,
        hosts=network.hosts(),
        trusted_ca=ca.write_cert(tmp_path / "ca.pem"),
    )
    plain = harness.SystemView.create(tmp_path / "plain", netns=network.hosts_list[1].namespace, hosts=network.hosts())
    server = _serve(network, 8443, cert, key)
    spec = harness.ServiceSpec(command=(), environment={}, user_id=SYNAPSE_UID, group_id=SYNAPSE_GID, working_dir="/")
    client = ["python", "-c", OPENSSL_CLIENT, "a.test", "8443"]
    data = tmp_path / "data"
    data.mkdir()
    try:
        trusted, refused = (
            subprocess.run(
                harness.workload_argv(spec, data, synapse_venv, client, view=view),
                capture_output=True,
                text=True,
                check=False,
            )
            for view in (trusting, plain)
        )
    finally:
        server.kill()
        server.wait()

    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert trusted.stdout.strip() == "verified a.test"
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stdout.startswith("refused") and "certificate verify failed" in refused.stdout, refused.stdout
