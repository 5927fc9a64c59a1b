"""The `nginx-route` relation: our requirer of nginx-ingress-integrator's wire format.

Keys we write (app, leader), plain strings: `service-hostname`, `service-name` (the
application's Kubernetes service), `service-port`, `service-namespace` (the model),
`max-body-size` (mebibytes, from max_upload_size, rounded up) and, when the server_name's
host differs from the hostname, `additional-hostnames` (comma-separated).
The provider answers nothing we read.
"""

import dataclasses

import ops

from constants import NGINX_ROUTE_ENDPOINT
from relations._common import SingleRelationRequirer
from relations.databag import write_changed
from state import size_in_bytes

KEYS = (
    "service-hostname",
    "service-name",
    "service-port",
    "service-namespace",
    "max-body-size",
    "additional-hostnames",
)


def size_in_mebibytes(size: str) -> int:
    """A validated max_upload_size (e.g. 50M, 512K, 1G, 1000) in whole mebibytes, rounded up.

    Synapse counts K/M/G/T in powers of 1024, and nginx's `m` is 1024*1024 bytes.
    """
    return max(1, -(-size_in_bytes(size) // 1024**2))


@dataclasses.dataclass(frozen=True)
class NginxRouteRequest:
    """What we ask nginx-ingress-integrator to route."""

    hostname: str
    additional_hostnames: tuple[str, ...]
    service_name: str
    service_port: int
    namespace: str
    max_body_size_mib: int

    def databag(self) -> dict[str, str]:
        """The request as the integrator reads it."""
        data = {
            "service-hostname": self.hostname,
            "service-name": self.service_name,
            "service-port": str(self.service_port),
            "service-namespace": self.namespace,
            "max-body-size": str(self.max_body_size_mib),
        }
        if self.additional_hostnames:
            data["additional-hostnames"] = ",".join(self.additional_hostnames)
        return data


class NginxRouteRequires(SingleRelationRequirer):
    """Requirer side of the nginx-route endpoint (limit 1)."""

    def __init__(self, charm: ops.CharmBase, endpoint: str = NGINX_ROUTE_ENDPOINT):
        super().__init__(charm, endpoint)

    def is_related(self) -> bool:
        """Whether nginx-ingress-integrator is related."""
        return self.relation is not None

    def publish(self, request: NginxRouteRequest) -> bool:
        """Write the request (leader only, changed keys only); return whether anything changed."""
        relation = self.relation
        if relation is None or not self.charm.unit.is_leader():
            return False
        return write_changed(relation.data[self.charm.app], request.databag(), KEYS)
