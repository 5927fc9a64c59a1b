"""The `metrics-endpoint` relation: our provider side of the prometheus_scrape wire format.

Keys we write, app databag (leader), JSON: `scrape_jobs` (a list of Prometheus scrape jobs
whose targets are `*:<port>`, which the consumer expands to each unit's address),
`scrape_metadata` (Juju topology) and `alert_rules` (Prometheus rule-file shape, every rule
labelled and every `%%juju_topology%%` selector filled in with our topology).
Keys we write, unit databag (each unit that runs Synapse), plain: `prometheus_scrape_unit_address`,
`prometheus_scrape_unit_name` (and no `prometheus_scrape_unit_path`, which Juju cannot hold empty).

A key is written only when its value differs, so a no-op hook writes nothing. The rule
files are read once per process; `cosl` (topology) is imported only while related.
"""

import functools
import json
import logging
import typing
from collections.abc import Iterable
from pathlib import Path

import ops
import yaml

from constants import METRICS_ENDPOINT, METRICS_PATH

if typing.TYPE_CHECKING:  # pragma: nocover
    from cosl import JujuTopology

logger = logging.getLogger(__name__)

ALERT_RULES_DIR = Path(__file__).resolve().parents[1] / "prometheus_alert_rules"
RULE_SUFFIXES = (".rule", ".rules", ".yml", ".yaml")
TOPOLOGY_PLACEHOLDER = "%%juju_topology%%"
JOB_NAME = "synapse"

UNIT_ADDRESS_KEY = "prometheus_scrape_unit_address"
UNIT_NAME_KEY = "prometheus_scrape_unit_name"
UNIT_PATH_KEY = "prometheus_scrape_unit_path"


def scrape_job(ports: Iterable[int], metrics_path: str = METRICS_PATH) -> dict[str, typing.Any]:
    """The scrape job for Synapse processes listening for metrics on `ports` on every unit.

    `*` is expanded by the consumer to each unit's `prometheus_scrape_unit_address`.
    """
    return {
        "job_name": JOB_NAME,
        "metrics_path": metrics_path,
        "static_configs": [{"targets": [f"*:{port}" for port in ports]}],
    }


@functools.cache
def rule_groups(directory: Path = ALERT_RULES_DIR) -> tuple[dict[str, typing.Any], ...]:
    """The rule groups of every rule file in `directory`, in file-name order (read once per process)."""
    groups: list[dict[str, typing.Any]] = []
    for path in sorted(directory.iterdir()):
        if path.suffix not in RULE_SUFFIXES:
            continue
        loaded = yaml.safe_load(path.read_text())
        groups.extend(loaded.get("groups", []) if isinstance(loaded, dict) else [])
    return tuple(groups)


def alert_rules(topology: "JujuTopology", directory: Path = ALERT_RULES_DIR) -> dict[str, typing.Any]:
    """Our alert rules scoped to `topology`: topology labels on every rule, selectors filled in.

    `%%juju_topology%%` in an expression becomes the model, model UUID and application matchers,
    so a rule only sees this application's series; group names are prefixed with the topology.
    """
    labels = topology.label_matcher_dict
    matchers = topology.alert_expression_str
    groups = []
    for group in rule_groups(directory):
        rules = [
            {
                **rule,
                "expr": str(rule["expr"]).replace(TOPOLOGY_PLACEHOLDER, matchers),
                "labels": {**labels, **rule.get("labels", {})},
            }
            for rule in group.get("rules", [])
        ]
        groups.append({**group, "name": f"{topology.identifier}_{group['name']}", "rules": rules})
    return {"groups": groups}


def _dumps(value: object) -> str:
    """JSON as we publish it (stable key order, so equal values compare equal as text)."""
    return json.dumps(value, sort_keys=True)


def _update(databag: ops.RelationDataContent, wanted: dict[str, str | None]) -> bool:
    """Set the keys whose value differs (None: remove the key); return whether anything was written."""
    updates = {key: value for key, value in wanted.items() if databag.get(key) != value}
    for key, value in updates.items():
        if value is None:
            del databag[key]
        else:
            databag[key] = value
    return bool(updates)


class MetricsEndpointProvider:
    """Provider side of the prometheus_scrape interface for Synapse's metrics listener(s)."""

    def __init__(self, charm: ops.CharmBase, endpoint: str = METRICS_ENDPOINT):
        self.charm = charm
        self.endpoint = endpoint

    @property
    def relations(self) -> list[ops.Relation]:
        """The established relations on the endpoint."""
        return list(self.charm.model.relations[self.endpoint])

    def publish(self, jobs: list[dict[str, typing.Any]], scraped: bool) -> bool:
        """Publish the scrape jobs and alert rules (leader) and this unit's address (when `scraped`).

        A unit that runs no Synapse (`scraped` false) withdraws its address, so Prometheus does
        not scrape it. Returns whether anything was written.
        """
        relations = self.relations
        if not relations:
            return False
        from cosl import JujuTopology  # noqa: PLC0415 (imported only while related)

        topology = JujuTopology.from_charm(self.charm)
        app_data: dict[str, str | None] = {}
        if self.charm.unit.is_leader():
            app_data = {
                "scrape_jobs": _dumps(jobs),
                "scrape_metadata": _dumps(topology.as_dict()),
                "alert_rules": _dumps(alert_rules(topology)),
            }
        changed = False
        for relation in relations:
            changed = _update(relation.data[self.charm.app], app_data) or changed
            changed = _update(relation.data[self.charm.unit], self._unit_data(relation, scraped)) or changed
        return changed

    def _unit_data(self, relation: ops.Relation, scraped: bool) -> dict[str, str | None]:
        """This unit's databag: its address while it runs Synapse, nothing otherwise."""
        address = self._address(relation) if scraped else None
        if address is None:
            return {UNIT_ADDRESS_KEY: None, UNIT_NAME_KEY: None, UNIT_PATH_KEY: None}
        # The path is empty (Synapse serves at the root); Juju stores an empty value as no key.
        return {UNIT_ADDRESS_KEY: address, UNIT_NAME_KEY: self.charm.unit.name, UNIT_PATH_KEY: None}

    def _address(self, relation: ops.Relation) -> str | None:
        """This unit's ingress address on the relation, None while Juju has none."""
        try:
            binding = self.charm.model.get_binding(relation)
            address = binding.network.ingress_address if binding is not None else None
        except ops.ModelError:
            return None
        return str(address) if address is not None else None
