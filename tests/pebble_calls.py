"""Record what the charm asks Pebble to do, so tests can count starts and restarts.

ops.testing simulates Pebble without processes; wrapping the ops.Container methods that
start or stop services shows exactly which lifecycle calls a hook made. The workload
harness replays the same calls on a real Synapse process.
"""

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from unittest import mock

import ops

LIFECYCLE_METHODS = ("replan", "restart", "start", "stop")


@dataclasses.dataclass
class PebbleCalls:
    """The lifecycle calls made while recording, in order, e.g. [("replan", ()), ("restart", ("synapse",))]."""

    calls: list[tuple[str, tuple[str, ...]]] = dataclasses.field(default_factory=list)

    def count(self, *names: str) -> int:
        """How many calls of the given method names were made."""
        return sum(1 for name, _ in self.calls if name in names)

    @property
    def restarts(self) -> int:
        """Calls that (re)start a running Synapse: restart, and replan when it was already running.

        Callers that need the distinction use `calls`; the charm only replans a running
        service when its layer changed, which Pebble answers with a restart.
        """
        return self.count("restart", "replan")

    def clear(self) -> None:
        """Forget what was recorded."""
        self.calls.clear()


OnCall = Callable[[str, tuple[str, ...], ops.Container], None]


@contextlib.contextmanager
def record_pebble_calls(on_call: OnCall | None = None) -> Iterator[PebbleCalls]:
    """Patch ops.Container's lifecycle methods to record their calls, then call through.

    `on_call(name, args, container)` runs right after each call, while the hook is still
    running (the workload harness uses it to act on a real process at the same moment).
    """
    recorded = PebbleCalls()
    patches = []
    for name in LIFECYCLE_METHODS:
        original = getattr(ops.Container, name)

        def wrapper(self: ops.Container, *args: str, _name: str = name, _orig=original, **kwargs: object) -> object:
            recorded.calls.append((_name, tuple(args)))
            result = _orig(self, *args, **kwargs)
            if on_call is not None:
                on_call(_name, tuple(args), self)
            return result

        patches.append(mock.patch.object(ops.Container, name, wrapper))
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        yield recorded
