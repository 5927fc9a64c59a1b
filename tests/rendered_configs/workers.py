"""Scenarios with workers: three units on PostgreSQL with Redis, as the main unit and as a worker unit.

Both the main's homeserver.yaml and a worker's (homeserver.yaml then worker.yaml) go through
Synapse's loader (tests/workload/test_synapse_config_loader.py loads worker.yaml too when a
scenario has one).
"""

from ops import testing

from charm import SynapseCharm
from constants import (
    NGINX_CONTAINER,
    PEER_ADDRESS_KEY,
    PEER_DATABASE_KEY,
    PEER_MAIN_UNIT_KEY,
    PEER_RELATION,
    PEER_SECRET_ID_KEY,
    REDIS_ENDPOINT,
)
from server_secrets import ServerSecrets
from state import DatabaseRecord
from tests.rendered_configs import Stage, scenario
from tests.rendered_configs.database import APP, PLAIN, _database

SECRET_ID = "secret:d1a2b3c4e5f6g7h8i9j0"
REDIS_PASSWORD = "r3dis'\"{{ }}: #pass"


def _address(number: int) -> str:
    """The pod address of unit `synapse/<number>`."""
    return f"10.1.0.{10 + number}"


def _unit_of_three(stage: Stage, number: int) -> testing.State:
    """Unit `synapse/<number>` of three, on the PostgreSQL synapse/0 prepared, with Redis answering."""
    stage.ctx = testing.Context(SynapseCharm, unit_id=number)
    database = _database(PLAIN)
    record = DatabaseRecord(source=f"database:{database.id}", use=f"{APP}_c", state="ready")
    peer = testing.PeerRelation(
        PEER_RELATION,
        local_app_data={
            PEER_SECRET_ID_KEY: SECRET_ID,
            PEER_MAIN_UNIT_KEY: "synapse/0",
            PEER_DATABASE_KEY: record.model_dump_json(),
        },
        local_unit_data={PEER_ADDRESS_KEY: _address(number)},
        peers_data={other: {PEER_ADDRESS_KEY: _address(other)} for other in range(3) if other != number},
    )
    redis = testing.Relation(
        REDIS_ENDPOINT,
        remote_app_name="redis-k8s",
        remote_units_data={
            0: {"hostname": "redis-k8s-0.redis-k8s-endpoints", "port": "6379", "password": REDIS_PASSWORD}
        },
    )
    secret = testing.Secret(ServerSecrets.generate().to_content(), id=SECRET_ID, owner="app" if number == 0 else None)
    network = testing.Network(PEER_RELATION, ingress_addresses=[_address(number)])
    return testing.State(
        leader=number == 0,
        config={"server_name": "example.com"},
        containers={stage.container(), testing.Container(NGINX_CONTAINER, can_connect=False)},
        relations={peer, database, redis},
        secrets={secret},
        networks={network},
    )


@scenario("workers-main-of-three-units")
def main_of_three(stage: Stage) -> testing.State:
    """The main process, with two workers: instance_map, Redis, the senders and pushers on the workers."""
    return _unit_of_three(stage, 0)


@scenario("workers-generic-worker-of-three-units")
def worker_of_three(stage: Stage) -> testing.State:
    """A generic worker (synapse-1) on a non-leader unit."""
    return _unit_of_three(stage, 1)
