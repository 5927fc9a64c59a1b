"""Our requirer of redis-k8s's `redis` interface (src/relations/redis.py)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ops import testing

from constants import REDIS_ENDPOINT
from relations.redis import RedisEndpoint
from state import InvalidStateError
from tests.unit.conftest import CharmEnv

# What redis-k8s writes in each of its units' databags (shared/interfaces.md, redis).
RECORDED = {"hostname": "redis-k8s-0.redis-k8s-endpoints.model.svc.cluster.local", "port": "6379"}


def redis_relation(*units: dict[str, str]) -> testing.Relation:
    """A redis relation to redis-k8s with these unit databags (unit ids 0, 1, ...)."""
    return testing.Relation(
        REDIS_ENDPOINT, remote_app_name="redis-k8s", remote_units_data=dict(enumerate(units)) if units else {0: {}}
    )


def endpoint(env: CharmEnv, relation: testing.Relation | None) -> RedisEndpoint | None:
    """What the charm parses from `relation` (None: not related or no answer yet)."""
    state = env.state(relations={relation} if relation else set())
    with env.ctx(env.ctx.on.update_status(), state) as manager:
        return manager.charm.redis.endpoint()


def test_recorded_shape(env: CharmEnv) -> None:
    parsed = endpoint(env, redis_relation(RECORDED))
    assert parsed == RedisEndpoint(host=RECORDED["hostname"], port=6379)
    assert parsed is not None
    assert parsed.synapse_config() == {"enabled": True, "host": RECORDED["hostname"], "port": 6379}


def test_password_when_given(env: CharmEnv) -> None:
    parsed = endpoint(env, redis_relation({**RECORDED, "password": "s3cret"}))
    assert parsed is not None
    assert parsed.synapse_config()["password"] == "s3cret"
    assert "s3cret" not in repr(parsed)


def test_not_related_or_no_answer_yet(env: CharmEnv) -> None:
    assert endpoint(env, None) is None
    assert endpoint(env, redis_relation({})) is None


def test_first_unit_that_answered_is_used(env: CharmEnv) -> None:
    parsed = endpoint(env, redis_relation({}, {"hostname": "10.0.0.2", "port": "6380"}))
    assert parsed == RedisEndpoint(host="10.0.0.2", port=6380)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"hostname": "10.0.0.1", "port": "not-a-port"}, "port"),
        ({"hostname": "10.0.0.1", "port": "70000"}, "port"),
        ({"hostname": "10.0.0.1"}, "port"),
        ({"port": "6379"}, "hostname"),
        ({"hostname": "bad host!", "port": "6379"}, "hostname"),
        ({**RECORDED, "password": "a\nb"}, "password"),
    ],
)
def test_garbage_names_the_field(env: CharmEnv, data: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidStateError) as excinfo:
        endpoint(env, redis_relation(data))
    assert f"redis relation's unit redis-k8s/0 sent an invalid {field}" in str(excinfo.value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.dictionaries(
        st.sampled_from(["hostname", "port", "password"]),
        st.one_of(st.sampled_from(["", "6379", "0", "65536", "10.0.0.1", "redis.local"]), st.text(max_size=40)),
    )
)
def test_any_answer_parses_or_is_refused_with_a_message(env: CharmEnv, data: dict[str, str]) -> None:
    try:
        parsed = endpoint(env, redis_relation(data))
    except InvalidStateError as exc:
        assert "redis relation" in str(exc)
        return
    assert parsed is None or 1 <= parsed.port <= 65535
