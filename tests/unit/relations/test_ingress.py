"""The ingress relation against traefik's "ingress v2" wire format: what we write, what we read."""

import json
import typing
from unittest import mock

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ops import testing

from constants import INGRESS_ENDPOINT, NGINX_PORT
from tests.strategies import mangled_json
from tests.unit.conftest import HOSTILE_STRINGS, CharmEnv, run_recording_relation_sets

MODEL = "chat"
FQDN = "synapse-0.synapse-endpoints.chat.svc.cluster.local"
UNIT_IP = "10.1.157.116"

# Recorded from traefik-k8s (ingress v2, per app): what its provider answers.
RECORDED_ANSWER = {"ingress": '{"url": "https://chat-synapse.ingress.example.com/"}'}
RECORDED_PATH_ANSWER = {"ingress": '{"url": "http://10.64.140.43/chat-synapse"}'}


class TraefikAppData(pydantic.BaseModel):
    """How traefik's provider loads a requirer's app databag (each value JSON-decoded)."""

    model_config = pydantic.ConfigDict(populate_by_name=True, extra="forbid")

    model: str
    name: str
    port: int
    strip_prefix: bool = pydantic.Field(default=False, alias="strip-prefix")
    redirect_https: bool = pydantic.Field(default=False, alias="redirect-https")
    scheme: str = "http"


class TraefikUnitData(pydantic.BaseModel):
    """How traefik's provider loads a requirer's unit databag."""

    model_config = pydantic.ConfigDict(extra="forbid")

    host: str
    ip: str | None = None


JUJU_UNIT_KEYS = {"egress-subnets", "ingress-address", "private-address"}


def traefik_load(databag: typing.Mapping[str, str], model: type[pydantic.BaseModel]) -> pydantic.BaseModel:
    """Load a databag as traefik does: JSON-decode every value, then validate."""
    decoded = {key: json.loads(value) for key, value in databag.items() if key not in JUJU_UNIT_KEYS}
    return model.model_validate(decoded)


def ingress_relation(remote_app_data: dict[str, str] | None = None, **kwargs: typing.Any) -> testing.Relation:
    """The ingress relation to traefik."""
    return testing.Relation(
        INGRESS_ENDPOINT,
        interface="ingress",
        remote_app_name="traefik",
        remote_app_data=remote_app_data or {},
        **kwargs,
    )


def network() -> testing.Network:
    """The ingress binding of the unit, with its pod address."""
    return testing.Network(INGRESS_ENDPOINT, bind_addresses=[testing.BindAddress([testing.Address(UNIT_IP)])])


@pytest.fixture(autouse=True)
def _fqdn() -> typing.Iterator[None]:
    """The unit's FQDN as Kubernetes gives it."""
    with mock.patch("socket.getfqdn", return_value=FQDN):
        yield


def run(env: CharmEnv, relation: testing.Relation, *, leader: bool = True) -> testing.State:
    """config-changed with the ingress relation."""
    state = env.state(leader=leader, relations={relation}, networks={network()}, model=testing.Model(MODEL))
    return env.run(env.ctx.on.config_changed(), state)


def test_leader_requests_a_route_in_traefiks_shape(env: CharmEnv) -> None:
    """App data is model, name, port and strip-prefix, every value JSON; unit data host and ip."""
    relation = ingress_relation()
    out = run(env, relation).get_relation(relation.id)
    # the port is the pod's nginx, which sends each request to the process that serves it
    assert dict(out.local_app_data) == {"model": '"chat"', "name": '"synapse"', "port": "8080", "strip-prefix": "true"}
    app = traefik_load(out.local_app_data, TraefikAppData)
    expected = {"model": MODEL, "name": "synapse", "port": NGINX_PORT, "strip-prefix": True}
    assert app == TraefikAppData.model_validate(expected)
    unit = traefik_load(out.local_unit_data, TraefikUnitData)
    assert unit == TraefikUnitData(host=FQDN, ip=UNIT_IP)


def test_non_leader_writes_its_unit_data_only(env: CharmEnv) -> None:
    """The application databag belongs to the leader."""
    relation = ingress_relation()
    out = run(env, relation, leader=False).get_relation(relation.id)
    assert dict(out.local_app_data) == {}
    assert traefik_load(out.local_unit_data, TraefikUnitData) == TraefikUnitData(host=FQDN, ip=UNIT_IP)


def test_stale_keys_are_replaced_and_nothing_is_rewritten(env: CharmEnv) -> None:
    """A wrong value is corrected; a second hook writes nothing at all."""
    relation = ingress_relation(local_app_data={"port": "80", "model": '"chat"'})
    first = run(env, relation)
    assert typing.cast(dict[str, str], first.get_relation(relation.id).local_app_data)["port"] == "8080"
    _, _, sets = run_recording_relation_sets(env.ctx, env.ctx.on.update_status(), first)
    assert sets == []


def test_reads_the_recorded_answer(env: CharmEnv) -> None:
    """Traefik's `ingress` JSON gives public_baseurl (normalised with a trailing slash)."""
    for answer, url in (
        (RECORDED_ANSWER, "https://chat-synapse.ingress.example.com/"),
        (RECORDED_PATH_ANSWER, "http://10.64.140.43/chat-synapse/"),
    ):
        with env.ctx(env.ctx.on.update_status(), env.state(relations={ingress_relation(answer)})) as manager:
            found = manager.charm.ingress.answer()
        assert found is not None
        assert (found.provider, found.url, found.problem) == ("traefik", url, "")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (None, "waiting for traefik to send the ingress URL"),
        ("", "waiting for traefik to send the ingress URL"),
        ("not json", "its `ingress` data is not JSON"),
        ('["https://x.example.com/"]', "its `ingress` data is not a JSON object"),
        ("{}", "its `ingress` data has no url"),
        ('{"url": 5}', "its `ingress` data has no url"),
        ('{"url": "ftp://x.example.com/"}', "must be an http:// or https:// URL with a host"),
        ('{"url": "https://x.example.com/?a=b"}', "must not have credentials, a query or a fragment"),
        ('{"url": "https://"}', "must be an http:// or https:// URL with a host"),
    ],
)
def test_malformed_answers_are_reasons_to_wait(env: CharmEnv, raw: str | None, problem: str) -> None:
    """No URL, not http(s), garbage JSON: Waiting with what is missing; Synapse keeps its URL."""
    relation = ingress_relation({} if raw is None else {"ingress": raw})
    out = run(env, relation)
    assert isinstance(out.unit_status, testing.WaitingStatus)
    assert problem in out.unit_status.message
    assert "traefik" in out.unit_status.message


@given(raw=st.one_of(st.sampled_from(HOSTILE_STRINGS), mangled_json(["url"]).map(lambda b: b.decode(errors="replace"))))
def test_any_answer_ends_in_a_url_or_a_reason(raw: str) -> None:
    """Whatever the provider writes, the parser gives a usable URL or a problem, never an exception."""
    from relations.ingress import IngressRequires

    charm = mock.MagicMock()
    relation = mock.MagicMock()
    relation.app.name = "traefik"
    relation.data = {relation.app: {"ingress": raw}}
    charm.model.relations = {INGRESS_ENDPOINT: [relation]}
    answer = IngressRequires(charm).answer()
    assert answer is not None
    assert bool(answer.url) != bool(answer.problem)
    if answer.url:
        assert answer.url.startswith(("http://", "https://")) and answer.url.endswith("/")
