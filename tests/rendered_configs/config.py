"""Scenarios over the charm's config options, on SQLite: fixed edge values and hypothesis-drawn configs."""

import functools
from collections.abc import Mapping

from ops import testing

from tests import strategies
from tests.rendered_configs import ConfigValue, Stage, add

# How many hypothesis-drawn valid configs the catalogue holds (the same ones on every run).
DRAWN_CONFIGS = 30

FIXED: dict[str, dict[str, ConfigValue]] = {
    "defaults": {},
    "ipv4-server-name-with-port": {"server_name": "192.0.2.10:8448"},
    "ipv6-server-name": {"server_name": "[2001:DB8::1]"},
    "ipv6-server-name-with-port": {"server_name": "[::ffff:192.0.2.1]:443"},
    "server-name-trailing-dot-and-case": {"server_name": "Chat.Example.COM."},
    "longest-dns-name": {"server_name": ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])},
    "public-baseurl-with-port-and-path": {"public_baseurl": "https://matrix.example.com:8443/synapse"},
    "public-baseurl-ipv6": {"public_baseurl": "http://[2001:db8::2]:8008/"},
    "every-boolean-flipped": {
        "report_stats": True,
        "allow_public_rooms_over_federation": True,
        "enable_room_list_search": False,
        "block_non_admin_invites": True,
        "allow_guest_access": True,
    },
    "registration-token": {"registration": "token"},
    "registration-open": {"registration": "open", "enable_registration_without_verification": True},
    "smallest-upload": {"max_upload_size": "1"},
    "largest-upload": {"max_upload_size": str(2**53 - 1)},
    "upload-in-terabytes": {"max_upload_size": "8191t"},
    "federation-whitelist": {"federation_domain_whitelist": "matrix.org, [2001:db8::3]:8448 ,10.0.0.1,"},
    "no-key-servers": {"trusted_key_servers": ""},
    "many-key-servers": {"trusted_key_servers": "matrix.org,example.org:8448,[::1]"},
    "ip-range-whitelist": {"ip_range_whitelist": "10.0.0.0/8, 192.168.1.7, fd00::/8, ::ffff:10.0.0.0/104, 0.0.0.0/0"},
    "ip-range-whitelist-host-bits-and-netmask": {"ip_range_whitelist": "10.1.2.3/8,172.16.0.0/255.240.0.0"},
    "log-level-debug": {"log_level": "debug"},
    "log-level-critical": {"log_level": "CRITICAL"},
    "pool-bounds": {"database_pool_min": 1, "database_pool_max": 100},
}


def _on_sqlite(config: Mapping[str, ConfigValue], stage: Stage) -> testing.State:
    """A fresh leader on SQLite with `config`."""
    return stage.state(config)


for _name, _config in FIXED.items():
    add(f"config-{_name}", functools.partial(_on_sqlite, _config))

_drawn: Mapping[str, ConfigValue]
for _index, _drawn in enumerate(strategies.sample(strategies.valid_config(), DRAWN_CONFIGS)):
    add(f"config-drawn-{_index}", functools.partial(_on_sqlite, _drawn))
