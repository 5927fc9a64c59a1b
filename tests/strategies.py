"""Hypothesis strategies shared by the unit tests and the rendered-config catalogue.

`valid_config()` draws Juju config the charm must accept (and Synapse must load);
`hostile_config()` draws anything Juju's types allow, mixing valid values, near misses and
arbitrary text; the charm must end in a status for every one. `json_values()` and
`mangled_json()` stand for answers of Synapse or of an in-container script that are not
what the charm expects. `sample()` draws a fixed, reproducible list from a strategy.
"""

import ipaddress
import json
import typing
from unittest import mock

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import providers as _providers

from config_options import DURATION_UNITS, RATE_LIMIT_OPTIONS, ROOM_VERSIONS

T = typing.TypeVar("T")

# A shared profile: modest example counts keep the unit suite fast; no example database, so
# no test depends on what an earlier run found.
settings.register_profile(
    "charm",
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("charm")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SIZE_SUFFIXES = ("", "K", "M", "G", "T")

# --- valid values -------------------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_tld = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@st.composite
def dns_names(draw: st.DrawFn) -> str:
    """A DNS name: 0-3 labels then a non-numeric top-level label, in random letter case."""
    labels = [*draw(st.lists(_label, max_size=3)), draw(_tld)]
    name = ".".join(labels)
    return "".join(c.upper() if c.isalpha() and draw(st.booleans()) else c for c in name)


ipv4s = st.ip_addresses(v=4).map(str)
ipv6s = st.ip_addresses(v=6).map(lambda address: str(address).partition("%")[0])
ports = st.integers(min_value=1, max_value=65535)


@st.composite
def server_names(draw: st.DrawFn) -> str:
    """A Matrix server name: DNS name, IPv4 or [IPv6], optionally with :port."""
    host = draw(st.one_of(dns_names(), ipv4s, ipv6s.map(lambda a: f"[{a}]")))
    port = draw(st.none() | ports)
    return host if port is None else f"{host}:{port}"


def server_name_lists(max_size: int = 4) -> st.SearchStrategy[str]:
    """Comma-separated server names, with stray spaces and empty items."""
    return st.lists(server_names(), max_size=max_size).map(lambda names: " , ".join(names) + ("," if names else ""))


@st.composite
def networks(draw: st.DrawFn) -> str:
    """An IPv4/IPv6 CIDR (host bits possibly set), or a bare address."""
    if draw(st.booleans()):
        address = ipaddress.ip_address(draw(ipv4s))
        prefix = draw(st.integers(min_value=0, max_value=32))
    else:
        address = ipaddress.ip_address(draw(ipv6s))
        prefix = draw(st.integers(min_value=0, max_value=128))
    return str(address) if draw(st.booleans()) else f"{address}/{prefix}"


@st.composite
def sizes(draw: st.DrawFn) -> str:
    """A byte size such as 50M that Synapse's parse_size reads, of at most 1 PiB (within the charm's bound)."""
    suffix = draw(st.sampled_from(SIZE_SUFFIXES))
    limit = {"": 2**50, "K": 2**40, "M": 2**30, "G": 2**20, "T": 2**10}[suffix]
    number = draw(st.integers(min_value=1, max_value=limit))
    return f"{number}{suffix.lower() if draw(st.booleans()) else suffix}"


@st.composite
def base_urls(draw: st.DrawFn) -> str:
    """An http(s) URL with a host, optional port and path, without query or fragment."""
    scheme = draw(st.sampled_from(("http", "https")))
    host = draw(st.one_of(dns_names(), ipv4s, ipv6s.map(lambda a: f"[{a}]")))
    port = draw(st.none() | ports)
    path = draw(st.from_regex(r"(/[A-Za-z0-9._~-]{1,10}){0,3}/?", fullmatch=True))
    return f"{scheme}://{host}{'' if port is None else f':{port}'}{path}"


@st.composite
def valid_config(draw: st.DrawFn) -> dict[str, str | int | bool]:
    """Juju config the charm must accept; every option may be left at its default."""
    pool_max = draw(st.integers(min_value=1, max_value=100))
    registration = draw(st.sampled_from(("disabled", "token", "open", "Token", " open ")))
    options: dict[str, st.SearchStrategy[typing.Any]] = {
        "public_baseurl": st.just("") | base_urls(),
        "report_stats": st.booleans(),
        "max_upload_size": sizes(),
        "federation_domain_whitelist": server_name_lists(),
        "trusted_key_servers": server_name_lists(),
        "ip_range_whitelist": st.lists(networks(), max_size=4).map(",".join),
        "allow_public_rooms_over_federation": st.booleans(),
        "enable_room_list_search": st.booleans(),
        "block_non_admin_invites": st.booleans(),
        "log_level": st.sampled_from(LOG_LEVELS).map(lambda level: level.lower() if len(level) % 2 else level),
        "allow_guest_access": st.booleans(),
        "database_pool_max": st.just(pool_max),
        "database_pool_min": st.integers(min_value=1, max_value=pool_max),
    }
    config: dict[str, str | int | bool] = {"server_name": draw(server_names())}
    for option, strategy in options.items():
        if draw(st.booleans()):
            config[option] = draw(strategy)
    if "database_pool_min" in config and "database_pool_max" not in config:
        config["database_pool_min"] = min(int(config["database_pool_min"]), 10)
    if "database_pool_max" in config and "database_pool_min" not in config:
        config["database_pool_max"] = max(int(config["database_pool_max"]), 5)
    if draw(st.booleans()):
        config["registration"] = registration
        if registration.strip().lower() == "open":
            config["enable_registration_without_verification"] = True
    return config


# --- hostile values -----------------------------------------------------------------------

# Text Juju accepts for a string option (anything but NUL, which no YAML or JSON carrier
# keeps), biased towards the characters that separate or quote things.
# Also digits Python's int() reads but ASCII-only parsers do not (Arabic-Indic, fullwidth, Roman).
_SPECIAL = st.sampled_from(list(":/[]%.,@ \t\n\r\"'#&*!{}|>-_+=\\\u2028\x85\u0660\u0668\uff11\u2167"))
texts = st.one_of(
    st.text(max_size=40),
    st.text(st.one_of(_SPECIAL, st.characters(codec="ascii")), max_size=40),
    st.integers().map(str),
    st.integers(min_value=4290, max_value=4400).map(lambda digits: "9" * digits),
)


def near_miss(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid value with a special character inserted, removed or appended."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        value = draw(valid)
        position = draw(st.integers(min_value=0, max_value=len(value)))
        action = draw(st.sampled_from(("insert", "delete", "append")))
        if action == "delete" and value:
            return value[:position] + value[position + 1 :]
        char = draw(_SPECIAL)
        return value + char if action == "append" else value[:position] + char + value[position:]

    return build()


def hostile_string(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Valid values, their near misses, and arbitrary text."""
    return st.one_of(valid, near_miss(valid), texts)


_durations = st.builds("{}{}".format, st.integers(min_value=1, max_value=10**6), st.sampled_from(tuple(DURATION_UNITS)))
_rates = st.builds(
    "{}:{}".format,
    st.decimals(min_value="0.001", max_value="10000", places=3).map("{:f}".format),
    st.integers(min_value=1, max_value=10**6),
)

hostile_ints = st.one_of(
    st.integers(min_value=-5, max_value=120), st.integers(), st.sampled_from([0, -(2**63), 2**63 - 1, 2**64])
)

# Every option, by its Juju type (config.yaml), with values the type allows.
HOSTILE_OPTIONS: dict[str, st.SearchStrategy[typing.Any]] = {
    "server_name": hostile_string(server_names()),
    "public_baseurl": hostile_string(base_urls()),
    "report_stats": st.booleans(),
    "max_upload_size": hostile_string(sizes()),
    "federation_domain_whitelist": hostile_string(server_name_lists()),
    "trusted_key_servers": hostile_string(server_name_lists()),
    "ip_range_whitelist": hostile_string(st.lists(networks(), max_size=3).map(",".join)),
    "allow_public_rooms_over_federation": st.booleans(),
    "enable_room_list_search": st.booleans(),
    "block_non_admin_invites": st.booleans(),
    "log_level": hostile_string(st.sampled_from(LOG_LEVELS)),
    "registration": hostile_string(st.sampled_from(("disabled", "token", "open"))),
    "enable_registration_without_verification": st.booleans(),
    "allow_guest_access": st.booleans(),
    "database_pool_min": hostile_ints,
    "database_pool_max": hostile_ints,
    # src/config_options.py (turn_uris and turn_shared_secret need the operator's secret: see
    # tests/rendered_configs/server_options.py)
    "turn_user_lifetime": hostile_string(_durations),
    "turn_allow_guests": st.booleans(),
    **{option: hostile_string(_rates) for option in RATE_LIMIT_OPTIONS},
    "enable_url_previews": st.booleans(),
    "url_preview_ip_range_blacklist": hostile_string(st.lists(networks(), max_size=3).map(",".join)),
    "max_spider_size": hostile_string(sizes()),
    "retention_min_lifetime": hostile_string(_durations),
    "retention_max_lifetime": hostile_string(_durations),
    "media_retention_local_lifetime": hostile_string(_durations),
    "media_retention_remote_lifetime": hostile_string(_durations),
    "enable_presence": st.booleans(),
    "limit_remote_rooms_complexity": st.one_of(st.floats(), st.sampled_from([0.0, 0.5, 1000.0])),
    "require_auth_for_profile_requests": st.booleans(),
    "allow_profile_lookup_over_federation": st.booleans(),
    "room_directory_publishers": hostile_string(st.sampled_from(("*", "@alice:example.com", "@*:chat.example.co.uk"))),
    "admin_contact": hostile_string(st.sampled_from(("mailto:admin@example.com", "https://example.com/help"))),
    "auto_join_rooms": hostile_string(st.sampled_from(("#welcome:example.com", "#a:b.example.co.uk,#c:example.com"))),
    "default_room_version": hostile_string(st.sampled_from(ROOM_VERSIONS)),
    # email (used with an smtp relation), SSO (with a saml relation) and the backup passphrase
    # (a Juju secret ID, which a hook only reads when a backup action runs)
    "enable_email_notifs": st.booleans(),
    "enable_password_config": st.booleans(),
    "notif_from": hostile_string(st.sampled_from(("Synapse <noreply@example.com>", "noreply@chat.example.com"))),
    "saml_localpart_attribute": hostile_string(st.sampled_from(("uid", "urn:oid:0.9.2342.19200300.100.1.1"))),
    "backup_passphrase": hostile_string(st.sampled_from(("secret:d1a2b3c4e5f6g7h8i9j0", "d1a2b3c4e5f6g7h8i9j0"))),
}


@st.composite
def hostile_config(draw: st.DrawFn) -> dict[str, str | int | bool]:
    """Juju config of the right types but any content: a few options set, the rest default."""
    chosen = draw(st.lists(st.sampled_from(sorted(HOSTILE_OPTIONS)), min_size=1, max_size=4, unique=True))
    return {option: draw(HOSTILE_OPTIONS[option]) for option in chosen}


# --- outside answers ----------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 10**30, 253402300800000, -62135596800001]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)


def json_objects_like(keys: typing.Sequence[str]) -> st.SearchStrategy[dict[str, typing.Any]]:
    """JSON objects with some of `keys` (any value types) and maybe others."""
    names = st.one_of(st.sampled_from(list(keys)), st.text(max_size=8)) if keys else st.text(max_size=8)
    return st.dictionaries(names, json_values, max_size=len(keys) + 2)


def mangled_json(keys: typing.Sequence[str]) -> st.SearchStrategy[bytes]:
    """An answer body that may be JSON of the wrong shape, not JSON, not UTF-8, or empty."""
    return st.one_of(
        json_objects_like(keys).map(lambda value: json.dumps(value).encode()),
        json_values.map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=40),
        st.just(b""),
        st.sampled_from([b"\xff\xfe{", b"{", b"[]", b"null", b"NaN", b"1e999", b'{"a": Infinity}']),
    )


# --- fixed samples ----------------------------------------------------------------------


def sample(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """`count` draws of `strategy`, the same on every run (derandomized, no example database).

    Hypothesis also mixes in literals it finds in the project's loaded modules, so any change
    to src/ (or which modules a test imported) would change the draws: they are left out here.
    """
    drawn: list[T] = []

    @settings(max_examples=count, derandomize=True, database=None, phases=[Phase.generate], deadline=None)
    @given(strategy)
    def collect(value: T) -> None:
        drawn.append(value)

    with mock.patch.object(_providers, "_get_local_constants", _providers.Constants):
        collect()
    return drawn
