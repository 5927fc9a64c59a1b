"""The nginx-route relation against nginx-ingress-integrator's wire format."""

import typing

import pytest
from hypothesis import given
from ops import testing

from constants import NGINX_ROUTE_ENDPOINT
from relations.nginx_route import size_in_mebibytes
from tests.strategies import sizes
from tests.unit.conftest import CharmEnv, run_recording_relation_sets

MODEL = "chat"
# Keys nginx-ingress-integrator requires of a requirer, and the optional ones we use.
REQUIRED = {"service-hostname", "service-name", "service-port"}
OPTIONAL = {"service-namespace", "max-body-size", "additional-hostnames"}


def route_relation(**kwargs: typing.Any) -> testing.Relation:
    """The nginx-route relation (the integrator answers nothing)."""
    return testing.Relation(NGINX_ROUTE_ENDPOINT, interface="nginx-route", remote_app_name="nginx-ingress", **kwargs)


def run(
    env: CharmEnv, relation: testing.Relation, config: dict[str, str] | None = None, *, leader: bool = True
) -> testing.State:
    """config-changed with the nginx-route relation."""
    state = env.state(config, leader=leader, relations={relation}, model=testing.Model(MODEL))
    return env.run(env.ctx.on.config_changed(), state)


def app_data(state: testing.State, relation: testing.Relation) -> dict[str, str]:
    """Our application databag on `relation` in `state`."""
    return dict(typing.cast(dict[str, str], state.get_relation(relation.id).local_app_data))


def check_integrator_shape(databag: typing.Mapping[str, str]) -> None:
    """What the integrator reads: plain strings, the required keys, a numeric port and body size."""
    assert REQUIRED <= set(databag) <= REQUIRED | OPTIONAL
    assert all(isinstance(value, str) for value in databag.values())
    assert databag["service-port"].isdigit()
    assert databag["max-body-size"].isdigit()


def test_request_for_the_server_name_host(env: CharmEnv) -> None:
    """Without public_baseurl the route is for the server_name's host; no additional hostname."""
    relation = route_relation()
    out = app_data(run(env, relation), relation)
    assert out == {
        "service-hostname": "example.com",
        "service-name": "synapse",
        "service-port": "8080",  # the pod's nginx
        "service-namespace": MODEL,
        "max-body-size": "50",
    }
    check_integrator_shape(out)


def test_request_adds_the_server_name_host_for_well_known(env: CharmEnv) -> None:
    """public_baseurl on another host: that host, plus the server_name's for /.well-known/matrix/*."""
    relation = route_relation()
    config = {"public_baseurl": "https://matrix.example.com/", "max_upload_size": "100K"}
    out = app_data(run(env, relation, config), relation)
    assert out["service-hostname"] == "matrix.example.com"
    assert out["additional-hostnames"] == "example.com"
    assert out["max-body-size"] == "1"
    check_integrator_shape(out)


def test_a_key_no_longer_needed_is_removed_and_a_no_op_writes_nothing(env: CharmEnv) -> None:
    """Back to the server_name's host: additional-hostnames goes; the next hook writes nothing."""
    relation = route_relation(local_app_data={"additional-hostnames": "example.com", "service-port": "80"})
    first = run(env, relation)
    assert "additional-hostnames" not in app_data(first, relation)
    assert app_data(first, relation)["service-port"] == "8080"
    _, _, sets = run_recording_relation_sets(env.ctx, env.ctx.on.config_changed(), first)
    assert sets == []


def test_non_leader_writes_nothing(env: CharmEnv) -> None:
    """The request is application data."""
    relation = route_relation()
    assert app_data(run(env, relation, leader=False), relation) == {}


def test_an_ip_server_name_needs_a_host_name(env: CharmEnv) -> None:
    """Kubernetes ingress rules route host names: Blocked with the fix, and nothing requested."""
    relation = route_relation()
    out = run(env, relation, {"server_name": "10.0.0.1"})
    assert out.unit_status == testing.BlockedStatus(
        "nginx-route needs a DNS host name, not 10.0.0.1; set one with "
        "`juju config synapse public_baseurl=https://<host name>/`"
    )
    assert app_data(out, relation) == {}


@pytest.mark.parametrize(
    ("size", "mib"), [("50M", 50), ("1", 1), ("1048576", 1), ("1048577", 2), ("512K", 1), ("2G", 2048), ("1T", 2**20)]
)
def test_body_size_in_mebibytes_rounded_up(size: str, mib: int) -> None:
    """Nginx must accept every upload Synapse accepts."""
    assert size_in_mebibytes(size) == mib


@given(size=sizes())
def test_body_size_never_below_the_upload_limit(size: str) -> None:
    """For any size Synapse reads, the proxy's limit is at least as large."""
    text = size.upper()
    factor = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}.get(text[-1], 1)
    number = int(text[:-1]) if text[-1] in "KMGT" else int(text)
    assert size_in_mebibytes(text) * 1024**2 >= number * factor
