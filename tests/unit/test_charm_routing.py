"""The charm with reverse proxies: public_baseurl, x_forwarded, delegation, statuses, restarts and the action."""

import dataclasses
import json
import typing
from unittest import mock

import ops
import pytest
import yaml
from ops import testing

from constants import (
    CONFIG_PATH,
    CONTAINER_NAME,
    INGRESS_ENDPOINT,
    NGINX_ROUTE_ENDPOINT,
    SERVICE_NAME,
    WELL_KNOWN_ACTION,
)
from tests.unit.conftest import CharmEnv, record_side_effects

INGRESS_URL = "https://matrix.example.com/"
PREFIXED_URL = "http://10.64.140.43/chat-synapse"


@pytest.fixture(autouse=True)
def _fqdn() -> typing.Iterator[None]:
    """A stable unit FQDN."""
    with mock.patch("socket.getfqdn", return_value="synapse-0.synapse-endpoints.chat.svc.cluster.local"):
        yield


def ingress(url: str | None = INGRESS_URL, **kwargs: typing.Any) -> testing.Relation:
    """The ingress relation; traefik has answered `url` (None: not yet)."""
    data = {"ingress": json.dumps({"url": url})} if url is not None else {}
    return testing.Relation(INGRESS_ENDPOINT, remote_app_name="traefik", remote_app_data=data, **kwargs)


def nginx_route() -> testing.Relation:
    """The nginx-route relation."""
    return testing.Relation(NGINX_ROUTE_ENDPOINT, remote_app_name="nginx-ingress")


def homeserver(env: CharmEnv) -> dict[str, typing.Any]:
    """The homeserver.yaml the charm pushed."""
    document = yaml.safe_load(env.read(CONFIG_PATH))
    assert isinstance(document, dict)
    return document


def listener(env: CharmEnv) -> dict[str, typing.Any]:
    """The client/federation listener."""
    listeners = homeserver(env)["listeners"]
    (http,) = [item for item in listeners if item["type"] == "http"]
    return typing.cast(dict[str, typing.Any], http)


def with_relations(state: testing.State, *relations: testing.RelationBase) -> testing.State:
    """`state` with these relations added."""
    return dataclasses.replace(state, relations=frozenset({*state.relations, *relations}))


def without(state: testing.State, endpoint: str) -> testing.State:
    """`state` without the relations on `endpoint`."""
    return dataclasses.replace(state, relations=frozenset(rel for rel in state.relations if rel.endpoint != endpoint))


def test_no_proxy_synapse_serves_the_server_document_behind_nginx(env: CharmEnv) -> None:
    """Alone, https://<server_name>/ is the public URL; Synapse believes X-Forwarded-For, which the pod's nginx sets."""
    env.started()
    assert listener(env)["x_forwarded"] is True
    doc = homeserver(env)
    assert (doc["public_baseurl"], doc["serve_server_wellknown"]) == ("https://example.com/", True)


@pytest.mark.parametrize("relation", [lambda: ingress(None), nginx_route])
def test_a_proxy_that_changes_no_url_restarts_nothing(
    env: CharmEnv, relation: typing.Callable[[], testing.Relation]
) -> None:
    """A proxy related (before it answered, or routing the server_name's host) and removed: no restart."""
    related = relation()
    out = env.ready(env.started())
    before = homeserver(env)
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_created(related), with_relations(out, related))
    assert homeserver(env) == before
    assert effects.pebble.calls == []
    with record_side_effects() as effects:  # the broken relation is still in the state, not in the model
        env.run(env.ctx.on.relation_broken(out.get_relation(related.id)), out)
    assert effects.pebble.calls == []


def test_the_ingress_url_becomes_public_baseurl_with_one_restart(env: CharmEnv) -> None:
    """The provider's answer arrives: one restart, on the URL traefik gave, delegated elsewhere."""
    waiting = ingress(None)
    out = env.ready(env.started(relations={waiting}))
    assert isinstance(out.unit_status, ops.WaitingStatus)
    assert out.unit_status.message == "waiting for traefik to send the ingress URL"
    assert out.get_container(CONTAINER_NAME).service_statuses[SERVICE_NAME] == ops.pebble.ServiceStatus.ACTIVE
    answered = dataclasses.replace(
        typing.cast(testing.Relation, out.get_relation(waiting.id)),
        remote_app_data={"ingress": json.dumps({"url": INGRESS_URL})},
    )
    state = with_relations(without(out, INGRESS_ENDPOINT), answered)
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.relation_changed(answered), state)
        out = env.run(env.ctx.on.update_status(), out)
    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]
    assert effects.pushes == [str(CONFIG_PATH)]
    assert effects.relation_writes == []
    doc = homeserver(env)
    assert (doc["public_baseurl"], doc["serve_server_wellknown"]) == (INGRESS_URL, False)
    assert out.unit_status == ops.ActiveStatus()


def test_the_option_wins_over_the_ingress_url(env: CharmEnv) -> None:
    """public_baseurl set by the operator is used as is."""
    env.started(config={"public_baseurl": "https://example.com"}, relations={ingress()})
    doc = homeserver(env)
    assert (doc["public_baseurl"], doc["serve_server_wellknown"]) == ("https://example.com/", True)


def test_nginx_route_routes_the_server_name_host(env: CharmEnv) -> None:
    """With nginx-route the server_name's host reaches Synapse: it serves the server document."""
    relation = nginx_route()
    out = env.started(config={"public_baseurl": "https://matrix.example.com/"}, relations={relation})
    doc = homeserver(env)
    assert (doc["public_baseurl"], doc["serve_server_wellknown"]) == ("https://matrix.example.com/", True)
    route = typing.cast(dict[str, str], out.get_relation(relation.id).local_app_data)
    assert route["additional-hostnames"] == "example.com"


def test_a_no_op_hook_changes_nothing_with_both_proxies(env: CharmEnv) -> None:
    """Repeated hooks: no restart, no push, no relation-data write."""
    out = env.ready(env.started(relations={ingress(), nginx_route()}))
    with record_side_effects() as effects:
        for event in (env.ctx.on.config_changed(), env.ctx.on.update_status(), env.ctx.on.upgrade_charm()):
            out = env.run(event, out)
    assert effects.nothing, effects
    assert out.unit_status == ops.ActiveStatus()


def test_a_path_prefix_serves_clients_and_says_federation_cannot(env: CharmEnv) -> None:
    """Traefik's path routing: Active, on the prefixed URL, with the message saying how to route by host."""
    out = env.run(env.ctx.on.update_status(), env.ready(env.started(relations={ingress(PREFIXED_URL)})))
    assert homeserver(env)["public_baseurl"] == PREFIXED_URL + "/"
    assert isinstance(out.unit_status, ops.ActiveStatus)
    assert "has a path prefix (/chat-synapse)" in out.unit_status.message
    assert "traefik `routing_mode=subdomain`, or the nginx-route relation" in out.unit_status.message


def test_garbage_from_the_provider_is_a_wait_not_a_crash(env: CharmEnv) -> None:
    """Synapse keeps running on its current URL; the status says what is wrong."""
    garbage = testing.Relation(INGRESS_ENDPOINT, remote_app_name="traefik", remote_app_data={"ingress": "{url: x"})
    out = env.ready(env.started(relations={garbage}))
    out = env.run(env.ctx.on.update_status(), out)
    assert out.unit_status == ops.WaitingStatus(
        "waiting for a usable ingress URL from traefik: its `ingress` data is not JSON"
    )
    assert homeserver(env)["public_baseurl"] == "https://example.com/"


def run_action(env: CharmEnv, state: testing.State) -> dict[str, typing.Any]:
    """Run get-well-known; return its results."""
    env.run(env.ctx.on.action(WELL_KNOWN_ACTION), state)
    return dict(env.ctx.action_results or {})


def test_action_gives_the_documents_to_serve_elsewhere(env: CharmEnv) -> None:
    """Traefik on another host: the exact documents and where they go."""
    results = run_action(env, env.started(relations={ingress()}))
    assert results["served-by-synapse"] == "false"
    assert results["server-url"] == "https://example.com/.well-known/matrix/server"
    assert json.loads(results["server"]) == {"m.server": "matrix.example.com:443"}
    assert results["client-url"] == "https://example.com/.well-known/matrix/client"
    assert json.loads(results["client"]) == {"m.homeserver": {"base_url": INGRESS_URL}}
    assert "Access-Control-Allow-Origin: *" in results["message"]


def test_action_says_synapse_serves_them(env: CharmEnv) -> None:
    """Routed to Synapse: the documents it serves itself, and nothing to do."""
    results = run_action(env, env.started(relations={ingress(), nginx_route()}))
    assert results["served-by-synapse"] == "true"
    assert json.loads(results["server"]) == {"m.server": "example.com:443"}
    assert "nothing to do" in results["message"]


def test_action_fails_when_federation_cannot_be_delegated(env: CharmEnv) -> None:
    """A path-prefixed URL cannot carry federation: the action says how to fix it."""
    with pytest.raises(testing.ActionFailed, match="route by host instead"):
        env.run(env.ctx.on.action(WELL_KNOWN_ACTION), env.started(relations={ingress(PREFIXED_URL)}))
    with pytest.raises(testing.ActionFailed, match="invalid config max_upload_size"):
        env.run(env.ctx.on.action(WELL_KNOWN_ACTION), env.state({"max_upload_size": "lots"}))
