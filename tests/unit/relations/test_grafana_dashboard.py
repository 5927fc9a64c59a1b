"""Our grafana_dashboard provider (src/relations/grafana_dashboard.py) and the dashboard it ships."""

import base64
import json
import lzma
import re
import typing
import uuid
from collections.abc import Iterator
from unittest import mock

import cosl
import pytest
from ops import testing

from constants import GRAFANA_DASHBOARD_ENDPOINT
from relations import grafana_dashboard
from relations.grafana_dashboard import DASHBOARDS_DIR, SOURCE_HASH_KEY, dashboard_sources
from tests.unit.conftest import CharmEnv, record_side_effects
from tests.unit.relations.test_metrics import app_data

DASHBOARD_FILE = DASHBOARDS_DIR / "synapse.json"
ENTRY_KEYS = {"charm", "content", "juju_topology", "inject_dropdowns", "dashboard_alt_uid"}
DATASOURCE = "${prometheusds}"


def all_panels(panels: list[dict[str, typing.Any]]) -> Iterator[dict[str, typing.Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_relation() -> testing.Relation:
    """A grafana-dashboard relation to grafana-k8s."""
    return testing.Relation(GRAFANA_DASHBOARD_ENDPOINT, remote_app_name="grafana", remote_units_data={0: {}})


def decompress(content: str) -> bytes:
    """What the consumer does with `content`: base64-decode, then LZMA-decompress (stdlib, not cosl)."""
    return lzma.decompress(base64.b64decode(content))


@pytest.fixture
def compressions() -> Iterator[mock.MagicMock]:
    """Count calls of cosl's LZMA compression (calling through)."""
    with mock.patch.object(cosl.LZMABase64, "compress", side_effect=cosl.LZMABase64.compress) as spy:
        yield spy


def test_dashboard_is_valid_json_with_every_panel_on_prometheusds() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    assert dashboard["title"] == "Synapse Operator"
    panels = list(all_panels(dashboard["panels"]))
    assert len([p for p in panels if p["type"] != "row"]) >= 30
    for panel in panels:
        if panel["type"] == "row":
            assert panel.get("datasource") in (None, DATASOURCE), panel["title"]
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert "${" not in re.sub(r"\$\{prometheusds\}", "", DASHBOARD_FILE.read_text())


def test_dashboard_covers_what_operators_need() -> None:
    exprs = " ".join(
        target["expr"]
        for panel in all_panels(json.loads(DASHBOARD_FILE.read_text())["panels"])
        for target in panel.get("targets", [])
    )
    for metric in (
        "synapse_http_server_requests_received_total",
        "synapse_http_server_response_time_seconds_bucket",
        "synapse_http_server_responses_total",
        "synapse_storage_events_persisted_events_total",
        "synapse_notifier_notified_events_total",
        "synapse_federation_server_received_pdus_total",
        "synapse_federation_client_sent_transactions_total",
        "synapse_storage_transaction_time_count_total",
        "synapse_storage_schedule_time_bucket",
        "synapse_threadpool_working_threads",
        "synapse_util_caches_cache_hits",
        "python_twisted_reactor_tick_time_bucket",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "python_gc_time_sum",
        "synapse_background_update_status",
    ):
        assert metric in exprs, metric


def test_leader_publishes_the_recorded_shape(env: CharmEnv) -> None:
    relation = dashboard_relation()
    out = env.started(relations={relation})
    app = app_data(out, relation.id)
    assert set(app) == {"dashboards", SOURCE_HASH_KEY}
    dashboards = json.loads(app["dashboards"])
    assert set(dashboards) == {"templates", "uuid"}
    assert uuid.UUID(dashboards["uuid"]).version == 4
    (key,) = dashboards["templates"]
    assert key == "file:synapse"
    entry = dashboards["templates"][key]
    assert set(entry) == ENTRY_KEYS
    assert entry["charm"] == "synapse"
    assert entry["inject_dropdowns"] is True
    assert set(entry["juju_topology"]) == {"model", "model_uuid", "application", "unit"}
    assert (entry["juju_topology"]["application"], entry["juju_topology"]["unit"]) == ("synapse", "synapse/0")
    assert re.fullmatch(r"[0-9a-f]{40}", entry["dashboard_alt_uid"])
    assert decompress(entry["content"]) == DASHBOARD_FILE.read_bytes()


def test_alt_uid_is_stable(env: CharmEnv) -> None:
    uids = set()
    for _ in range(2):
        relation = dashboard_relation()
        out = env.started(relations={relation})
        entry = json.loads(app_data(out, relation.id)["dashboards"])["templates"]["file:synapse"]
        uids.add(entry["dashboard_alt_uid"])
    assert len(uids) == 1


def test_no_op_neither_compresses_nor_writes(env: CharmEnv, compressions: mock.MagicMock) -> None:
    relation = dashboard_relation()
    out = env.started(relations={relation})
    assert compressions.call_count == 1
    with record_side_effects() as effects:
        for _ in range(3):
            out = env.run(env.ctx.on.update_status(), env.ready(out))
        out = env.run(env.ctx.on.leader_elected(), out)
    assert compressions.call_count == 1
    assert effects.relation_writes == []


def test_changed_dashboard_is_republished_with_a_new_uuid(env: CharmEnv, compressions: mock.MagicMock) -> None:
    relation = dashboard_relation()
    out = env.started(relations={relation})
    before = json.loads(app_data(out, relation.id)["dashboards"])
    changed = (
        (stem, content.replace(b"Synapse Operator", b"Synapse Operator v2")) for stem, content in dashboard_sources()
    )
    with mock.patch.object(grafana_dashboard, "dashboard_sources", return_value=tuple(changed)):
        out = env.run(env.ctx.on.upgrade_charm(), out)
    after = json.loads(app_data(out, relation.id)["dashboards"])
    assert compressions.call_count == 2
    assert after["uuid"] != before["uuid"]
    assert b"Synapse Operator v2" in decompress(after["templates"]["file:synapse"]["content"])


def test_non_leader_publishes_nothing(env: CharmEnv, compressions: mock.MagicMock) -> None:
    relation = dashboard_relation()
    out = env.run(env.ctx.on.update_status(), env.state(leader=False, relations={relation}))
    assert app_data(out, relation.id) == {}
    assert compressions.call_count == 0


def test_dashboard_files_are_read_once_per_process(env: CharmEnv) -> None:
    dashboard_sources.cache_clear()
    relation = dashboard_relation()
    out = env.started(relations={relation})
    for _ in range(3):
        out = env.run(env.ctx.on.update_status(), out)
    assert dashboard_sources.cache_info().misses == 1
