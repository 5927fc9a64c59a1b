"""An in-memory stand-in for the leader-get/leader-set hook tools that ops-lib-pgsql calls.

ops.testing provides no leader settings, so every test (and tool) that runs the charm under
ops.testing installs this store first. It lives as long as the process, like Juju's leader
settings outlive one hook.
"""

import pgsql.client


class LeaderSettings:
    """Leader settings as a dict; `set` with an empty value deletes, as leader-set does."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, attribute: str) -> str | None:
        """leader-get ATTRIBUTE."""
        return self.values.get(attribute)

    def set(self, settings: dict[str, str]) -> None:
        """leader-set KEY=VALUE ..."""
        for key, value in settings.items():
            if value:
                self.values[key] = value
            else:
                self.values.pop(key, None)


def install(store: LeaderSettings | None = None) -> LeaderSettings:
    """Route the library's hook-tool calls to `store` (a fresh one by default); return it."""
    store = store or LeaderSettings()
    pgsql.client._leader_get = store.get  # type: ignore[assignment]
    pgsql.client._leader_set = store.set  # type: ignore[assignment]
    return store
