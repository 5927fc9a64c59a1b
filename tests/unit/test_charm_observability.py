"""The charm with Prometheus, Grafana and Loki all related: one reconcile, and a no-op that costs nothing."""

import sys
from unittest import mock

import cosl
import ops

from constants import CONTAINER_NAME, SERVICE_NAME
from relations import metrics
from tests.unit.conftest import CharmEnv, record_side_effects
from tests.unit.relations.test_grafana_dashboard import dashboard_relation
from tests.unit.relations.test_logging import loki_relation
from tests.unit.relations.test_metrics import metrics_relation


def test_all_three_related_no_op_changes_nothing(env: CharmEnv) -> None:
    relations = {metrics_relation(), dashboard_relation(), loki_relation()}
    out = env.ready(env.started(relations=relations))
    metrics.rule_groups.cache_clear()
    with (
        mock.patch.object(cosl.LZMABase64, "compress", side_effect=cosl.LZMABase64.compress) as compress,
        record_side_effects() as effects,
    ):
        for _ in range(3):
            out = env.run(env.ctx.on.update_status(), out)
        out = env.run(env.ctx.on.config_changed(), out)
        for relation in out.relations:
            if relation.endpoint != "synapse-peers":
                out = env.run(env.ctx.on.relation_changed(relation), out)
    assert effects.nothing, effects
    assert compress.call_count == 0
    assert metrics.rule_groups.cache_info().misses == 1
    assert out.unit_status == ops.ActiveStatus()
    assert out.get_container(CONTAINER_NAME).service_statuses[SERVICE_NAME] == ops.pebble.ServiceStatus.ACTIVE


def test_cosl_is_not_imported_without_these_relations(env: CharmEnv) -> None:
    saved = {name: module for name, module in sys.modules.items() if name == "cosl" or name.startswith("cosl.")}
    for name in saved:
        del sys.modules[name]
    try:
        env.run(env.ctx.on.update_status(), env.ready(env.started()))
        assert "cosl" not in sys.modules
    finally:
        sys.modules.update(saved)
