"""Our loki_push_api requirer (src/relations/logging.py): Pebble log targets, never a restart."""

import json

import ops
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ops import testing

from constants import CONTAINER_NAME, LOGGING_ENDPOINT, SERVICE_NAME
from relations.logging import DISABLED, ENABLED, PushEndpoint, parse_endpoint
from tests.unit.conftest import HOSTILE_STRINGS, CharmEnv, record_side_effects

LOKI_URLS = {
    "loki/0": "http://loki-0.loki-endpoints.cos.svc.cluster.local:3100/loki/api/v1/push",
    "loki/1": "http://loki-1.loki-endpoints.cos.svc.cluster.local:3100/loki/api/v1/push",
}


def loki_relation(urls: dict[str, str] = LOKI_URLS, **extra: dict[str, str]) -> testing.Relation:
    """A logging relation to loki-k8s: each unit's databag as Loki writes it (recorded shape)."""
    units = {int(name.split("/")[1]): {"endpoint": json.dumps({"url": url})} for name, url in urls.items()}
    for name, data in extra.items():
        units[int(name)] = data
    return testing.Relation(LOGGING_ENDPOINT, remote_app_name="loki", remote_units_data=units)


def log_targets(state: testing.State) -> dict[str, ops.pebble.LogTarget]:
    """The log targets of the container's plan."""
    return dict(state.get_container(CONTAINER_NAME).plan.log_targets)


def running(state: testing.State) -> bool:
    """Whether Synapse's service is active."""
    return state.get_container(CONTAINER_NAME).service_statuses.get(SERVICE_NAME) == ops.pebble.ServiceStatus.ACTIVE


def test_recorded_endpoint_parses() -> None:
    assert parse_endpoint(json.dumps({"url": LOKI_URLS["loki/0"]})) == PushEndpoint(url=LOKI_URLS["loki/0"])
    assert parse_endpoint(None) is None
    assert parse_endpoint("") is None


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        '{"url": 3}',
        '{"uri": "http://loki:3100/loki/api/v1/push"}',
        '{"url": "ftp://loki/push"}',
        '{"url": "http:///no-host"}',
        '{"url": "http://loki:3100/push\\nx"}',
        *[json.dumps({"url": f"http://loki{hostile}/push"}) for hostile in HOSTILE_STRINGS if hostile.strip()],
    ],
)
def test_malformed_endpoint_is_a_value_error(raw: str) -> None:
    with pytest.raises(ValueError, match="endpoint is not JSON"):
        parse_endpoint(raw)


@given(st.one_of(st.text(), st.builds(lambda url: json.dumps({"url": url}), st.text())))
def test_any_endpoint_parses_or_is_a_value_error(raw: str) -> None:
    try:
        parsed = parse_endpoint(raw)
    except ValueError:
        return
    assert parsed is None or parsed.url.startswith(("http://", "https://"))


def test_adding_loki_adds_targets_without_restart(env: CharmEnv) -> None:
    out = env.ready(env.started())
    relation = loki_relation()
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_changed(relation), env.with_relations(out, relation))
    assert effects.pebble.calls == []
    assert effects.layers == [CONTAINER_NAME]
    assert effects.pushes == []
    assert running(out)
    targets = log_targets(out)
    assert set(targets) == set(LOKI_URLS)
    for name, target in targets.items():
        assert (target.type, target.location, target.services) == ("loki", LOKI_URLS[name], ENABLED)
        assert target.labels["juju_application"] == "synapse"
        assert target.labels["juju_unit"] == "synapse/0"
        assert target.labels["juju_charm"] == "synapse"
        assert set(target.labels) == {"juju_model", "juju_model_uuid", "juju_application", "juju_unit", "juju_charm"}
    assert out.unit_status == ops.ActiveStatus()


def test_no_op_with_loki_adds_no_layer(env: CharmEnv) -> None:
    relation = loki_relation()
    out = env.ready(env.started(relations={relation}))
    with record_side_effects() as effects:
        for _ in range(3):
            out = env.run(env.ctx.on.update_status(), out)
        out = env.run(env.ctx.on.relation_changed(out.get_relation(relation.id)), out)
    assert effects.nothing, effects


def test_removing_loki_disables_targets_without_restart(env: CharmEnv) -> None:
    relation = loki_relation()
    out = env.ready(env.started(relations={relation}))
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_broken(out.get_relation(relation.id)), out)
        out = env.run(env.ctx.on.update_status(), env.without_relation(out, relation.id))
    assert effects.pebble.calls == []
    assert effects.layers == [CONTAINER_NAME]
    assert running(out)
    targets = log_targets(out)
    assert set(targets) == set(LOKI_URLS)
    assert all(target.services == DISABLED for target in targets.values())
    assert plan_services_unchanged(env, out)


def test_departed_unit_is_disabled_and_the_other_kept(env: CharmEnv) -> None:
    relation = loki_relation()
    out = env.ready(env.started(relations={relation}))
    departed = loki_relation({"loki/0": LOKI_URLS["loki/0"]})
    departed = testing.Relation(
        LOGGING_ENDPOINT, id=relation.id, remote_app_name="loki", remote_units_data=departed.remote_units_data
    )
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_departed(departed, remote_unit=1), env.replace_relation(out, departed))
    assert effects.pebble.calls == []
    targets = log_targets(out)
    assert targets["loki/0"].services == ENABLED
    assert targets["loki/1"].services == DISABLED


def test_loki_back_re_enables_its_target(env: CharmEnv) -> None:
    relation = loki_relation()
    out = env.ready(env.started(relations={relation}))
    out = env.run(env.ctx.on.relation_broken(out.get_relation(relation.id)), out)
    out = env.without_relation(out, relation.id)
    again = loki_relation()
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_changed(again), env.with_relations(out, again))
    assert effects.pebble.calls == []
    assert all(target.services == ENABLED for target in log_targets(out).values())


def test_malformed_endpoint_blocks_with_the_unit_and_the_fix(env: CharmEnv) -> None:
    relation = loki_relation({"loki/0": LOKI_URLS["loki/0"]}, **{"1": {"endpoint": '{"url": "nope"}'}})
    out = env.ready(env.started(relations={relation}))
    assert set(log_targets(out)) == {"loki/0"}
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "loki/1 sent an invalid endpoint" in out.unit_status.message
    assert "`juju remove-relation synapse:logging loki`" in out.unit_status.message
    assert running(out)


def test_loki_without_an_endpoint_yet_adds_nothing(env: CharmEnv) -> None:
    relation = loki_relation({}, **{"0": {}})
    out = env.ready(env.started(relations={relation}))
    assert log_targets(out) == {}
    assert out.unit_status == ops.ActiveStatus()


def plan_services_unchanged(env: CharmEnv, state: testing.State) -> bool:
    """Whether the plan's Synapse service is still exactly the charm's (log targets touched nothing else)."""
    from workload.service import pebble_layer

    service = state.get_container(CONTAINER_NAME).plan.services[SERVICE_NAME].to_dict()
    wanted = pebble_layer()["services"][SERVICE_NAME]
    return all(service.get(key) == value for key, value in wanted.items())
