"""Our prometheus_scrape provider (src/relations/metrics.py) against the shapes prometheus-k8s reads."""

import dataclasses
import json
import re
import typing

import yaml
from ops import testing

from constants import METRICS_ENDPOINT, METRICS_PATH, METRICS_PORT, PEER_MAIN_UNIT_KEY, PEER_RELATION
from relations.metrics import ALERT_RULES_DIR, TOPOLOGY_PLACEHOLDER, rule_groups, scrape_job
from tests.prometheus_consumer import expand_scrape_jobs
from tests.unit.conftest import CharmEnv, record_side_effects

# The job shape of the wire format (shared/interfaces.md, prometheus_scrape).
RECORDED_JOB = {"job_name": "synapse", "metrics_path": "/_synapse/metrics", "static_configs": [{"targets": ["*:9000"]}]}
TOPOLOGY_LABELS = ("juju_model", "juju_model_uuid", "juju_application", "juju_charm")
EXPECTED_ALERTS = {
    "SynapseTargetDown",
    "SynapseRestarting",
    "SynapseHighServerErrorRate",
    "SynapseSlowClientRequests",
    "SynapseEventProcessingBehind",
    "SynapseFederationQueueGrowing",
    "SynapseDatabaseSlowTransactions",
    "SynapseDatabasePoolSaturated",
    "SynapseReactorLag",
    "SynapseHighMemory",
    "SynapseBackgroundUpdatesAborted",
    "SynapseBackgroundUpdatesStuck",
}


def metrics_relation() -> testing.Relation:
    """A metrics-endpoint relation to prometheus-k8s, before we wrote anything."""
    return testing.Relation(METRICS_ENDPOINT, remote_app_name="prometheus", remote_units_data={0: {}})


def app_data(state: testing.State, relation_id: int) -> dict[str, str]:
    """Our app databag on a relation of `state`."""
    return typing.cast(dict[str, str], dict(state.get_relation(relation_id).local_app_data))


def unit_data(state: testing.State, relation_id: int) -> dict[str, str]:
    """Our unit databag on a relation of `state`."""
    return typing.cast(dict[str, str], dict(state.get_relation(relation_id).local_unit_data))


def published(env: CharmEnv, *, leader: bool = True) -> tuple[testing.State, int]:
    """A unit related to Prometheus (started if leader), and the relation's id."""
    relation = metrics_relation()
    out = (
        env.started(relations={relation})
        if leader
        else env.run(env.ctx.on.update_status(), env.state(leader=False, relations={relation}))
    )
    return out, relation.id


def test_scrape_job_is_the_recorded_shape() -> None:
    assert scrape_job([METRICS_PORT]) == RECORDED_JOB
    assert scrape_job([9000, 9101])["static_configs"] == [{"targets": ["*:9000", "*:9101"]}]


def test_leader_publishes_job_metadata_rules_and_its_address(env: CharmEnv) -> None:
    out, relation_id = published(env)
    app = app_data(out, relation_id)
    unit = unit_data(out, relation_id)
    assert set(app) == {"scrape_jobs", "scrape_metadata", "alert_rules"}
    assert json.loads(app["scrape_jobs"]) == [RECORDED_JOB]
    metadata = json.loads(app["scrape_metadata"])
    assert set(metadata) == {"model", "model_uuid", "application", "unit", "charm_name"}
    assert (metadata["application"], metadata["unit"], metadata["charm_name"]) == ("synapse", "synapse/0", "synapse")
    assert unit["prometheus_scrape_unit_address"] == "192.0.2.0"
    assert unit["prometheus_scrape_unit_name"] == "synapse/0"
    assert "prometheus_scrape_unit_path" not in unit  # "" is no key in Juju
    (job,) = expand_scrape_jobs(app, {"synapse/0": unit})
    assert job["metrics_path"] == METRICS_PATH
    (static,) = job["static_configs"]
    assert static["targets"] == ["192.0.2.0:9000"]
    assert static["labels"]["juju_unit"] == "synapse/0"
    assert static["labels"]["juju_application"] == "synapse"


def test_alert_rules_are_scoped_to_our_topology(env: CharmEnv) -> None:
    out, relation_id = published(env)
    rules = json.loads(app_data(out, relation_id)["alert_rules"])
    metadata = json.loads(app_data(out, relation_id)["scrape_metadata"])
    raw = {rule["alert"]: rule["expr"] for group in rule_groups() for rule in group["rules"]}
    seen = set()
    for group in rules["groups"]:
        assert group["name"].startswith(f"{metadata['model']}_{metadata['model_uuid'][:8]}_synapse_")
        for rule in group["rules"]:
            seen.add(rule["alert"])
            assert {label: rule["labels"][label] for label in TOPOLOGY_LABELS} == {
                "juju_model": metadata["model"],
                "juju_model_uuid": metadata["model_uuid"],
                "juju_application": "synapse",
                "juju_charm": "synapse",
            }
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            assert TOPOLOGY_PLACEHOLDER not in rule["expr"]
            # every selector of the shipped rule carries the placeholder, so every one is scoped
            selectors = len(re.findall(r"\{", raw[rule["alert"]]))
            assert raw[rule["alert"]].count("{" + TOPOLOGY_PLACEHOLDER) == selectors, rule["alert"]
            assert rule["expr"].count('juju_application="synapse"') == selectors
    assert seen == EXPECTED_ALERTS


def test_memory_threshold_is_readable_in_the_rule() -> None:
    (rule,) = [rule for group in rule_groups() for rule in group["rules"] if rule["alert"] == "SynapseHighMemory"]
    assert rule["labels"]["threshold"] == "4GiB"
    assert "4 * 1024 * 1024 * 1024" in rule["expr"]


def test_rule_files_are_the_prometheus_rule_file_shape() -> None:
    for path in ALERT_RULES_DIR.iterdir():
        doc = yaml.safe_load(path.read_text())
        assert set(doc) == {"groups"}, path
        for group in doc["groups"]:
            assert set(group) == {"name", "rules"}
            for rule in group["rules"]:
                assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}


def test_rules_are_read_once_per_process(env: CharmEnv) -> None:
    rule_groups.cache_clear()
    out, _ = published(env)
    for _ in range(3):
        out = env.run(env.ctx.on.update_status(), out)
    assert rule_groups.cache_info().misses == 1


def test_no_op_writes_nothing(env: CharmEnv) -> None:
    out, _ = published(env)
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.update_status(), env.ready(out))
        out = env.run(env.ctx.on.config_changed(), out)
    assert effects.relation_writes == []


def test_non_leader_writes_no_app_data_and_offers_no_address(env: CharmEnv) -> None:
    out, relation_id = published(env, leader=False)
    assert app_data(out, relation_id) == {}
    assert "prometheus_scrape_unit_address" not in unit_data(out, relation_id)


def test_unit_that_stops_serving_withdraws_its_address(env: CharmEnv) -> None:
    out, relation_id = published(env)
    assert unit_data(out, relation_id)["prometheus_scrape_unit_address"]
    # Still the main unit after a leadership change: it keeps serving and stays scraped.
    out = env.run(env.ctx.on.update_status(), dataclasses.replace(out, leader=False))
    assert unit_data(out, relation_id)["prometheus_scrape_unit_address"]
    # Another unit is recorded as the main (this one was taken over): it stops and withdraws.
    peer = out.get_relations(PEER_RELATION)[0]
    assert isinstance(peer, testing.PeerRelation)
    moved = dataclasses.replace(
        peer, local_app_data={**peer.local_app_data, PEER_MAIN_UNIT_KEY: "synapse/1"}, peers_data={1: {}}
    )
    out = env.run(env.ctx.on.update_status(), dataclasses.replace(out, relations=(out.relations - {peer}) | {moved}))
    data = unit_data(out, relation_id)
    assert "prometheus_scrape_unit_address" not in data
    assert "prometheus_scrape_unit_name" not in data


def test_no_address_yet_publishes_none(env: CharmEnv) -> None:
    relation = metrics_relation()
    network = testing.Network(METRICS_ENDPOINT, bind_addresses=[], ingress_addresses=[])
    out = env.started(relations={relation}, networks={network})
    assert "prometheus_scrape_unit_address" not in unit_data(out, relation.id)
    assert "scrape_jobs" in app_data(out, relation.id)
