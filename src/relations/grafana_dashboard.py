"""The `grafana-dashboard` relation: our provider side of the grafana_dashboard wire format.

Key we write, app databag (leader), JSON: `dashboards` =
`{"templates": {"file:<stem>": ENTRY}, "uuid": <uuid4>}` where ENTRY holds `charm`,
`content` (base64 of the LZMA-compressed dashboard JSON), `juju_topology` (model, model UUID,
application, unit), `inject_dropdowns` and a stable `dashboard_alt_uid`.

Compressing is the expensive part, and a new `uuid` makes every consumer reload, so the
leader also publishes `dashboards_source_sha256`: a hash of the dashboard files and of the
entry's other fields. When it matches, nothing is compressed or written. The dashboard files
are read once per process; `cosl` (LZMA/base64, the alternative UID) is imported only to write.
"""

import functools
import hashlib
import json
import typing
import uuid
from pathlib import Path

import ops

from constants import GRAFANA_DASHBOARD_ENDPOINT

DASHBOARDS_DIR = Path(__file__).resolve().parents[1] / "grafana_dashboards"
DASHBOARDS_KEY = "dashboards"
SOURCE_HASH_KEY = "dashboards_source_sha256"


@functools.cache
def dashboard_sources(directory: Path = DASHBOARDS_DIR) -> tuple[tuple[str, bytes], ...]:
    """(file stem, content) of every dashboard JSON file in `directory`, sorted (read once per process)."""
    return tuple((path.stem, path.read_bytes()) for path in sorted(directory.glob("*.json")))


def _topology(charm: ops.CharmBase) -> dict[str, str]:
    """The Juju topology the consumer labels our dashboards with."""
    return {
        "model": charm.model.name,
        "model_uuid": charm.model.uuid,
        "application": charm.app.name,
        "unit": charm.unit.name,
    }


class GrafanaDashboardProvider:
    """Provider side of the grafana_dashboard interface for the charm's own dashboards."""

    def __init__(
        self, charm: ops.CharmBase, endpoint: str = GRAFANA_DASHBOARD_ENDPOINT, directory: Path = DASHBOARDS_DIR
    ):
        self.charm = charm
        self.endpoint = endpoint
        self.directory = directory

    @property
    def relations(self) -> list[ops.Relation]:
        """The established relations on the endpoint."""
        return list(self.charm.model.relations[self.endpoint])

    def source_hash(self) -> str:
        """A hash of everything the published entries are made of except the random `uuid`."""
        digest = hashlib.sha256()
        fields = {"charm": self.charm.meta.name, "juju_topology": _topology(self.charm), "inject_dropdowns": True}
        digest.update(json.dumps(fields, sort_keys=True).encode())
        for stem, content in dashboard_sources(self.directory):
            digest.update(b"\0" + stem.encode() + b"\0" + hashlib.sha256(content).digest())
        return digest.hexdigest()

    def publish(self) -> bool:
        """Publish the dashboards (leader) where they are missing or stale; return whether anything was written."""
        if not self.charm.unit.is_leader():
            return False
        stale = []
        source_hash = ""
        for relation in self.relations:
            databag = relation.data[self.charm.app]
            source_hash = source_hash or self.source_hash()
            if databag.get(SOURCE_HASH_KEY) != source_hash or DASHBOARDS_KEY not in databag:
                stale.append(databag)
        if not stale:
            return False
        dashboards = json.dumps({"templates": self._templates(), "uuid": str(uuid.uuid4())})
        for databag in stale:
            databag.update({DASHBOARDS_KEY: dashboards, SOURCE_HASH_KEY: source_hash})
        return True

    def _templates(self) -> dict[str, dict[str, typing.Any]]:
        """The `templates` entries: each dashboard compressed, with its topology and stable UID."""
        from cosl import DashboardPath40UID, LZMABase64  # noqa: PLC0415 (imported only to write)

        charm_name = self.charm.meta.name
        topology = _topology(self.charm)
        templates = {}
        for stem, content in dashboard_sources(self.directory):
            templates[f"file:{stem}"] = {
                "charm": charm_name,
                "content": LZMABase64.compress(content),
                "juju_topology": topology,
                "inject_dropdowns": True,
                "dashboard_alt_uid": DashboardPath40UID.generate(charm_name, f"src/grafana_dashboards/{stem}.json"),
            }
        return templates
