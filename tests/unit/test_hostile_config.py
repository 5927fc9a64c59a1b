"""Any Juju config ends a hook in a status: Active exactly when it parses, else Blocked naming the option."""

import typing
from pathlib import Path

import ops
import pytest
import yaml
from hypothesis import given

from state import CharmConfig, InvalidStateError
from tests import strategies
from tests.unit.conftest import BASE_CONFIG, CharmEnv

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> tuple[CharmEnv, ops.testing.State]:
    """One unit, started and ready on the base config; each example changes its config."""
    env = CharmEnv(tmp_path_factory.mktemp("hostile-config"))
    return env, env.ready(env.started())


@given(config=strategies.hostile_config())
def test_config_changed_ends_active_or_blocked_naming_the_option(
    started: tuple[CharmEnv, ops.testing.State], config: dict[str, typing.Any]
) -> None:
    env, state = started

    out = env.run(env.ctx.on.config_changed(), env.with_config(state, **config))

    try:
        CharmConfig.from_juju({**BASE_CONFIG, **config}, env.ctx.app_name)
    except InvalidStateError as exc:
        assert out.unit_status == ops.BlockedStatus(str(exc))
        assert "juju config" in str(exc)
    else:
        assert out.unit_status == ops.ActiveStatus()


def test_every_option_is_drawn() -> None:
    """A new option in config.yaml must get a hostile strategy (TURN's pair needs the operator's secret)."""
    options = set(yaml.safe_load((REPO_ROOT / "config.yaml").read_text())["options"])
    assert options - set(strategies.HOSTILE_OPTIONS) == {"turn_uris", "turn_shared_secret"}
    assert set(strategies.HOSTILE_OPTIONS) <= options
