"""Pebble helpers shared by the charm's containers (Synapse's and nginx's)."""

import typing

import ops


def layer_differs(plan: ops.pebble.Plan, layer: ops.pebble.LayerDict) -> bool:
    """Whether `plan` differs from `layer` for the layer's services or checks (only the keys the layer sets)."""
    current_plan: dict[str, typing.Any] = dict(plan.to_dict())
    wanted: dict[str, typing.Any] = dict(ops.pebble.Layer(layer).to_dict())
    for section in ("services", "checks"):
        current: dict[str, typing.Any] = current_plan.get(section, {})
        for name, spec in wanted.get(section, {}).items():
            have = current.get(name, {})
            if any(have.get(key) != value for key, value in spec.items()):
                return True
    return False
