"""Each unit's address in the peer relation (src/relations/peers.py)."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ops import testing

from constants import PEER_ADDRESS_KEY, PEER_RELATION
from relations._common import validate_host
from tests.unit.conftest import CharmEnv, record_side_effects


def addresses(env: CharmEnv, peers: dict[int, dict[str, str]], own: str = "10.0.0.10") -> dict[str, str]:
    """What the charm reads from the peer relation, on a unit whose binding has address `own`."""
    state = env.state(
        peer=testing.PeerRelation(PEER_RELATION, peers_data=peers),
        networks={testing.Network(PEER_RELATION, ingress_addresses=[own])},
    )
    with env.ctx(env.ctx.on.update_status(), state) as manager:
        manager.charm.peers.publish()
        return manager.charm.peers.addresses()


def test_every_published_address_and_our_own(env: CharmEnv) -> None:
    found = addresses(
        env, {1: {PEER_ADDRESS_KEY: "10.0.0.11"}, 2: {}, 3: {PEER_ADDRESS_KEY: "synapse-3.synapse-endpoints"}}
    )
    assert found == {"synapse/0": "10.0.0.10", "synapse/1": "10.0.0.11", "synapse/3": "synapse-3.synapse-endpoints"}


def test_not_an_address_is_ignored(env: CharmEnv) -> None:
    found = addresses(env, {1: {PEER_ADDRESS_KEY: "10.0.0.300"}, 2: {PEER_ADDRESS_KEY: "a b\n- c"}})
    assert found == {"synapse/0": "10.0.0.10"}


def test_an_unchanged_address_is_not_written_again(env: CharmEnv) -> None:
    state = env.state(
        leader=False,  # the leader would also record itself as the main unit
        peer=testing.PeerRelation(PEER_RELATION, local_unit_data={PEER_ADDRESS_KEY: "10.0.0.10"}),
        networks={testing.Network(PEER_RELATION, ingress_addresses=["10.0.0.10"])},
    )
    with record_side_effects() as effects, env.ctx(env.ctx.on.update_status(), state) as manager:
        manager.charm.peers.publish()
    assert effects.relation_writes == []


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(raw=st.text(max_size=300))
def test_any_published_text_is_an_address_or_ignored(env: CharmEnv, raw: str) -> None:
    found = addresses(env, {1: {PEER_ADDRESS_KEY: raw}})
    if "synapse/1" in found:
        assert found["synapse/1"] == validate_host(raw.strip())
        assert "\n" not in found["synapse/1"] and " " not in found["synapse/1"]
