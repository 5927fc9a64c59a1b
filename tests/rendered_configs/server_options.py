"""Scenarios over the server options (src/config_options.py): a pairwise matrix, on SQLite.

Every pair of values of any two options (from `FACTORS`) is in at least one scenario. With
TURN, the operator's Juju secret holding the shared secret is in the state. The workload
test tests/workload/test_config_options.py loads the same rows and checks what Synapse read.
"""

import functools
import itertools
import typing
from collections.abc import Mapping

from ops import testing

from config_options import TURN_SECRET_KEY
from tests.rendered_configs import ConfigValue, Stage, add

TURN_SECRET_ID = "secret:cq9ml4fmp25c7ba0sg4g"
TURN_SECRET = "coturn-static-auth-secret-0123456789"

# Each option (or group of options set together) with the values the matrix pairs; the
# first is the charm's default.
FACTORS: dict[str, list[typing.Any]] = {
    "server_name": ["test.local", "chat.example.co.uk", "example.com:8448"],
    "turn": [
        {},
        {
            "turn_uris": "turn:turn.example.com:3478?transport=udp,turns:turn.example.co.uk:5349,stun:[2001:db8::1]",
            "turn_shared_secret": TURN_SECRET_ID,
            "turn_user_lifetime": "5m",
            "turn_allow_guests": False,
        },
    ],
    "ratelimit_messages": ["0.2:10", "0.5:3", "1000:100000"],
    "ratelimit_login_failed_attempts": ["0.17:3", "0.001:1"],
    "ratelimit_joins_remote": ["0.01:10", "2.5:50"],
    "enable_url_previews": [False, True],
    "url_preview_ip_range_blacklist": ["", "8.8.4.0/24,2606:4700::/32"],
    "max_spider_size": ["10M", "1K", "1G"],
    "retention": [
        {},
        {"retention_min_lifetime": "1d"},
        {"retention_max_lifetime": "1y"},
        {"retention_min_lifetime": "2d", "retention_max_lifetime": "26w"},
    ],
    "media_retention": [
        {},
        {"media_retention_local_lifetime": "90d"},
        {"media_retention_local_lifetime": "1y", "media_retention_remote_lifetime": "14d"},
    ],
    "enable_presence": [True, False],
    "limit_remote_rooms_complexity": [0.0, 0.5, 1000.0],
    "require_auth_for_profile_requests": [False, True],
    "allow_profile_lookup_over_federation": [True, False],
    "room_directory_publishers": ["", "*", "@alice:chat.example.co.uk,@*:other.example.org:8448"],
    "admin_contact": ["", "mailto:admin@example.com", "https://help.example.co.uk/contact"],
    "auto_join_rooms": ["", "#welcome:chat.example.co.uk,#Help:other.example.org"],
    "default_room_version": ["", "1", "12"],
}


def pairwise(factors: Mapping[str, list[typing.Any]]) -> list[dict[str, typing.Any]]:
    """Rows covering every pair of values of any two options (greedy: each row takes the most new pairs)."""
    names = list(factors)

    def pair(a: str, i: int, b: str, j: int) -> tuple[str, int, str, int]:
        return (a, i, b, j) if names.index(a) < names.index(b) else (b, j, a, i)

    uncovered = {
        (a, i, b, j)
        for a, b in itertools.combinations(names, 2)
        for i in range(len(factors[a]))
        for j in range(len(factors[b]))
    }
    rows: list[dict[str, int]] = []
    while uncovered:
        a, i, b, j = min(uncovered)
        row = {a: i, b: j}
        for name in names:
            if name in row:
                continue
            gains = [sum(pair(n, v, name, k) in uncovered for n, v in row.items()) for k in range(len(factors[name]))]
            row[name] = gains.index(max(gains))
        uncovered -= {pair(x, row[x], y, row[y]) for x, y in itertools.combinations(names, 2)}
        rows.append(row)
    return [{name: factors[name][row[name]] for name in names} for row in rows]


def juju_config(row: Mapping[str, typing.Any]) -> dict[str, ConfigValue]:
    """The Juju config of one matrix row (grouped options flattened)."""
    config: dict[str, ConfigValue] = {}
    for name, value in row.items():
        config.update(value if isinstance(value, dict) else {name: value})
    return config


ROWS = [juju_config(row) for row in pairwise(FACTORS)]


def turn_secret() -> testing.Secret:
    """The operator's Juju user secret holding the TURN shared secret."""
    return testing.Secret(tracked_content={TURN_SECRET_KEY: TURN_SECRET}, id=TURN_SECRET_ID)


def _with_options(config: Mapping[str, ConfigValue], stage: Stage) -> testing.State:
    """A fresh leader on SQLite with `config` (and the TURN secret when TURN is on)."""
    return stage.state(config, secrets={turn_secret()} if config.get("turn_uris") else set())


for _index, _row in enumerate(ROWS):
    add(f"server-options-pairwise-{_index}", functools.partial(_with_options, _row))
