"""A catalogue of charm states that end Active, and the files each renders under /data.

Every `homeserver.yaml` the charm can put in front of Synapse as Active must load with
Synapse's own config loader. The unit suite (tests/unit/test_rendered_configs.py) runs every
scenario here under ops.testing and asserts the unit ends Active; the workload suite
(tests/workload/test_synapse_config_loader.py) renders the same catalogue afresh and loads
every `homeserver.yaml` with `synapse.config.homeserver.HomeServerConfig.load_config` in one
subprocess. Nothing is passed between the two runs: each renders for itself.

Adding states for a feature: create `tests/rendered_configs/<feature>.py` (every module of
this package is imported by `scenarios()`) and register builders with `@scenario("name")`.
A builder gets a `Stage` (an ops.testing Context and a fresh /data directory) and returns
the input State; the catalogue runs pebble-ready on it, then (with Synapse's Pebble checks
up, as a healthy Synapse reports them) update-status, asserts Active and collects the files.
A builder may run earlier hooks itself with `stage.run`.
"""

import dataclasses
import importlib
import os
import pkgutil
import stat
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import ops
from ops import testing

from charm import SynapseCharm
from constants import CONTAINER_NAME, DATA_DIR, NGINX_CONTAINER, PEER_RELATION
from server_secrets import ServerSecrets
from state import CharmConfig, CharmState, InvalidStateError
from workload.service import render_files

ConfigValue = str | int | float | bool
BASE_CONFIG: dict[str, ConfigValue] = {"server_name": "example.com"}


@dataclasses.dataclass(frozen=True)
class Rendered:
    """What one scenario left under /data: relative path -> (content, permission bits)."""

    name: str
    files: dict[str, tuple[str, int]]

    @property
    def homeserver_yaml(self) -> str:
        """The rendered homeserver.yaml."""
        return self.files["homeserver.yaml"][0]


class Stage:
    """What a scenario builder gets: the ops.testing Context and a fresh /data directory."""

    def __init__(self, ctx: testing.Context[SynapseCharm], data_dir: Path):
        self.ctx = ctx
        self.data_dir = data_dir

    def container(self, **kwargs: typing.Any) -> testing.Container:
        """The synapse container, connectable, with /data mounted from `data_dir`."""
        mount = testing.Mount(location=str(DATA_DIR), source=self.data_dir)
        return testing.Container(CONTAINER_NAME, can_connect=True, mounts={"data": mount}, **kwargs)

    def state(
        self,
        config: Mapping[str, ConfigValue] | None = None,
        *,
        relations: Iterable[testing.RelationBase] = (),
        container: testing.Container | None = None,
        **kwargs: typing.Any,
    ) -> testing.State:
        """A leader with BASE_CONFIG plus `config`, the container, the peer relation and `relations`."""
        return testing.State(
            leader=True,
            config={**BASE_CONFIG, **(config or {})},
            # the pod's nginx container, not up: the charm renders Synapse's files all the same
            containers={container or self.container(), testing.Container(NGINX_CONTAINER, can_connect=False)},
            relations={testing.PeerRelation(PEER_RELATION), *relations},
            **kwargs,
        )

    def run(self, event: typing.Any, state: testing.State) -> testing.State:
        """Run one event on `state`."""
        return self.ctx.run(event, state)


Builder = Callable[[Stage], testing.State]

_SCENARIOS: dict[str, Builder] = {}


def scenario(name: str) -> Callable[[Builder], Builder]:
    """Register a builder under `name` (unique across the catalogue)."""

    def register(builder: Builder) -> Builder:
        add(name, builder)
        return builder

    return register


def add(name: str, builder: Builder) -> None:
    """Register a builder under `name` (unique across the catalogue)."""
    if name in _SCENARIOS:
        raise ValueError(f"scenario {name!r} is registered twice")
    _SCENARIOS[name] = builder


def scenarios() -> dict[str, Builder]:
    """Every registered scenario, after importing every module of this package."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return dict(_SCENARIOS)


def _ready(state: testing.State) -> testing.State:
    """`state` with every check of Synapse's plan up and succeeded, as a healthy Synapse reports them."""
    container = state.get_container(CONTAINER_NAME)
    checks = frozenset(
        testing.CheckInfo(
            name,
            level=ops.pebble.CheckLevel(check.level) if check.level else None,
            threshold=check.threshold if check.threshold is not None else 3,
            successes=1,
        )
        for name, check in container.plan.checks.items()
    )
    others = {c for c in state.containers if c.name != CONTAINER_NAME}
    return dataclasses.replace(
        state, containers=frozenset({*others, dataclasses.replace(container, check_infos=checks)})
    )


def _files(data_dir: Path) -> dict[str, tuple[str, int]]:
    """Every regular file under `data_dir`: relative path -> (text, permission bits)."""
    files = {}
    for directory, _, names in os.walk(data_dir):
        for name in names:
            path = Path(directory, name)
            files[str(path.relative_to(data_dir))] = (path.read_text(), stat.S_IMODE(path.stat().st_mode))
    return files


def render_one(ctx: testing.Context[SynapseCharm], name: str, builder: Builder, data_dir: Path) -> Rendered:
    """Run one scenario (pebble-ready, then update-status once ready); assert Active; return its files."""
    data_dir.mkdir(parents=True)
    stage = Stage(ctx, data_dir)
    state = builder(stage)
    started = stage.run(ctx.on.pebble_ready(state.get_container(CONTAINER_NAME)), state)
    out = stage.run(ctx.on.update_status(), _ready(started))
    if not isinstance(out.unit_status, testing.ActiveStatus):
        raise AssertionError(f"scenario {name!r} ends {out.unit_status}, not Active")
    return Rendered(name, _files(data_dir))


def render(root: Path, names: Iterable[str] | None = None) -> list[Rendered]:
    """Render the scenarios `names` (default: all) each in its own directory under `root`."""
    catalogue = scenarios()
    ctx = testing.Context(SynapseCharm)
    wanted = list(catalogue) if names is None else list(names)
    return [render_one(ctx, name, catalogue[name], root / f"scenario-{index}") for index, name in enumerate(wanted)]


def render_accepted(configs: Iterable[Mapping[str, ConfigValue]]) -> list[Rendered]:
    """The files the charm renders on SQLite for each config it accepts, once per distinct homeserver.yaml.

    For many configs at a fraction of a hook's cost: `render_files` is exactly what a hook
    applies when the config is accepted, and tests/unit/test_hostile_config.py shows that a hook
    ends Active exactly when the config is accepted. Names are `accepted-<index in configs>`.
    """
    secrets = ServerSecrets.generate()
    rendered: dict[str, Rendered] = {}
    for index, config in enumerate(configs):
        try:
            parsed = CharmConfig.from_juju({**BASE_CONFIG, **config}, "synapse")
        except InvalidStateError:
            continue
        files = render_files(CharmState(config=parsed), secrets)
        relative = {str(path.relative_to(DATA_DIR)): (file.content, file.permissions) for path, file in files.items()}
        rendered.setdefault(relative["homeserver.yaml"][0], Rendered(f"accepted-{index}", relative))
    return list(rendered.values())
