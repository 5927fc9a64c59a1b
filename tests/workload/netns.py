"""Private test networks: every test host in its own network namespace, all joined by a bridge.

Two charm-configured Synapses both bind 0.0.0.0:8008 (and 9000) from their Pebble layers,
as each would in its own pod. To run several at once, each unit gets its own network
namespace: its own loopback and one interface, `eth0`, with an address on a private subnet.
The bridge joining them lives in a namespace of its own too, so nothing is ever created in
the caller's network namespace: tests run the same inside /work/bin/netns-run, on CI or on a
developer's machine, and parallel runs cannot collide (nothing has a global name).

    with TestNetwork() as network:
        a = network.add_host("a.test", "matrix.a.test")     # 192.0.2.1, both names
        b = network.add_host("b.test")                      # 192.0.2.2
        network.hosts()      # {"a.test": "192.0.2.1", "matrix.a.test": "192.0.2.1", "b.test": ...}
        a.namespace.wrap(["nginx", ...])                    # argv run inside a's namespace
        with a.namespace.entered():                         # this thread's sockets are in a's namespace
            urllib.request.urlopen("http://127.0.0.1:8008/health")

Each namespace is held open by a `sleep` process that dies with the test process (parent-death
signal), so a killed run leaves nothing behind: a namespace disappears with its last process.
Processes are put into a namespace with `nsenter --net=/proc/<holder>/ns/net`; the calling
thread enters one with setns(2) (`Namespace.entered`), which affects that thread only.
Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import ipaddress
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from types import TracebackType

CLONE_NEWNET = 0x40000000
# TEST-NET-1 (RFC 5737): never routed on the internet. Synapse blocks it for outgoing
# requests by default, so federation between test hosts needs `ip_range_whitelist`, as an
# operator on a private network would set it.
DEFAULT_SUBNET = "192.0.2.0/24"
BRIDGE = "br0"
HOST_INTERFACE = "eth0"
START_TIMEOUT = 10.0

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(Exception):
    """A namespace or link could not be set up."""


def _ip(namespace: Namespace, *args: str) -> None:
    """Run `ip args...` inside `namespace`, raising NetnsError with its output on failure."""
    done = subprocess.run(namespace.wrap(["ip", *args]), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} failed in {namespace.label}: {done.stderr.strip()}")


def _setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at `fd`."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise NetnsError(f"setns failed: {os.strerror(errno)} (needs root)")


class Namespace:
    """A network namespace with loopback up, held open by a holder process until `close`."""

    def __init__(self, label: str):
        self.label = label
        own = os.readlink("/proc/self/ns/net")
        # setpriv: the holder gets SIGKILL when the test process dies; unshare then execs sleep.
        self._holder = subprocess.Popen(
            ["setpriv", "--pdeathsig=KILL", "unshare", "--net", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while self._ns_link() in (None, own):
            if self._holder.poll() is not None or time.monotonic() > deadline:
                error = self._holder.stderr.read().decode() if self._holder.stderr else ""
                self.close()
                raise NetnsError(f"could not create the network namespace {label}: {error.strip()}")
            time.sleep(0.01)
        _ip(self, "link", "set", "lo", "up")

    def _ns_link(self) -> str | None:
        """The holder's network namespace link (e.g. net:[4026532]), None if unreadable."""
        try:
            return os.readlink(f"/proc/{self._holder.pid}/ns/net")
        except OSError:
            return None

    @property
    def pid(self) -> int:
        """The holder process's PID (what `ip link set ... netns` takes)."""
        return self._holder.pid

    @property
    def path(self) -> str:
        """The namespace's path, for nsenter --net= and setns."""
        return f"/proc/{self._holder.pid}/ns/net"

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside this namespace (the process keeps the namespace alive while it runs)."""
        return ["nsenter", f"--net={self.path}", *argv]

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Put the calling thread into this namespace for the block (sockets opened in it stay in it)."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(self.path, os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(own)

    def close(self) -> None:
        """Let the namespace go: kill the holder (processes still inside keep it until they exit)."""
        if self._holder.poll() is None:
            self._holder.kill()
        self._holder.wait()
        if self._holder.stderr:
            self._holder.stderr.close()


@dataclasses.dataclass(frozen=True)
class TestHost:
    """One machine on a test network: its names, its address and its network namespace."""

    __test__ = False  # not a pytest test class

    names: tuple[str, ...]
    address: str
    namespace: Namespace

    @property
    def name(self) -> str:
        """The host's first name."""
        return self.names[0]


class TestNetwork:
    """A bridge (in its own namespace) and test hosts attached to it, each with an address of `subnet`."""

    __test__ = False  # not a pytest test class

    def __init__(self, subnet: str = DEFAULT_SUBNET):
        self.subnet = ipaddress.ip_network(subnet)
        self._addresses = self.subnet.hosts()
        self.hosts_list: list[TestHost] = []
        self.switch = Namespace("switch")
        try:
            _ip(self.switch, "link", "add", BRIDGE, "type", "bridge")
            _ip(self.switch, "link", "set", BRIDGE, "up")
        except NetnsError:
            self.switch.close()
            raise

    def add_host(self, *names: str) -> TestHost:
        """A new host answering to `names` (all resolve to its address through `hosts()`)."""
        if not names:
            raise ValueError("a test host needs at least one name")
        address = str(next(self._addresses))
        namespace = Namespace(names[0])
        try:
            port = f"p{len(self.hosts_list)}"
            _ip(self.switch, "link", "add", port, "type", "veth", "peer", "name", HOST_INTERFACE)
            _ip(self.switch, "link", "set", HOST_INTERFACE, "netns", str(namespace.pid))
            _ip(self.switch, "link", "set", port, "master", BRIDGE, "up")
            _ip(namespace, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", HOST_INTERFACE)
            _ip(namespace, "link", "set", HOST_INTERFACE, "up")
        except NetnsError:
            namespace.close()
            raise
        host = TestHost(tuple(names), address, namespace)
        self.hosts_list.append(host)
        return host

    def hosts(self) -> dict[str, str]:
        """Every host name on the network and its address (what the hosts' /etc/hosts should say)."""
        return {name: host.address for host in self.hosts_list for name in host.names}

    def close(self) -> None:
        """Remove every host and the bridge (their namespaces go with their last process)."""
        for host in self.hosts_list:
            host.namespace.close()
        self.hosts_list.clear()
        self.switch.close()

    def __enter__(self) -> TestNetwork:
        """The network itself."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Remove everything (see `close`)."""
        self.close()
