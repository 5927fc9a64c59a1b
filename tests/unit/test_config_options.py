"""TURN, rate limits, URL previews, retention and server policy options (src/config_options.py)."""

import dataclasses
import math
import typing

import ops
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from ops import testing

from config_options import (
    RATE_LIMIT_OPTIONS,
    TURN_SECRET_KEY,
    URL_PREVIEW_BLACKLIST,
    RateLimit,
    duration_seconds,
    parse_duration,
    size_bytes,
)
from constants import CONFIG_PATH, SERVICE_NAME, TURN_SECRET_PATH
from state import CharmConfig, CharmState, InvalidStateError
from tests.unit.conftest import HOSTILE_STRINGS, CharmEnv, record_side_effects
from workload.service import render_homeserver_config

APP = "synapse"
SECRET_ID = "secret:cq9ml4fmp25c7ba0sg4g"
TURN = {"turn_uris": "turn:turn.example.com:3478?transport=udp", "turn_shared_secret": SECRET_ID}
STRING_OPTIONS = (
    "turn_uris",
    "turn_shared_secret",
    "turn_user_lifetime",
    *RATE_LIMIT_OPTIONS,
    "url_preview_ip_range_blacklist",
    "max_spider_size",
    "retention_min_lifetime",
    "retention_max_lifetime",
    "media_retention_local_lifetime",
    "media_retention_remote_lifetime",
    "limit_remote_rooms_complexity",
    "room_directory_publishers",
    "admin_contact",
    "auto_join_rooms",
    "default_room_version",
)


def parse(**config: typing.Any) -> CharmConfig:
    """Parse Juju config with server_name example.com."""
    return CharmConfig.from_juju({"server_name": "example.com", **config}, APP)


def rejected(option: str, value: typing.Any, **others: typing.Any) -> str:
    """The Blocked message for a bad value: it names the option and the `juju config` fix."""
    with pytest.raises(InvalidStateError) as excinfo:
        parse(**{option: value, **others})
    message = str(excinfo.value)
    assert f"invalid config {option}" in message
    assert f"juju config {APP} {option}=" in message
    return message


def rendered(**config: typing.Any) -> dict[str, typing.Any]:
    """homeserver.yaml for this config, parsed."""
    secret = "turn-secret" if config.get("turn_shared_secret") else None
    state = CharmState(config=parse(**config), turn_shared_secret=secret)
    return yaml.safe_load(render_homeserver_config(state))


# --- TURN ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("turn:turn.example.com", ("turn:turn.example.com",)),
        ("turn:Turn.Example.COM:3478?transport=udp", ("turn:turn.example.com:3478?transport=udp",)),
        (
            " turns:turn.example.co.uk:5349?transport=tcp , stun:stun.example.com:3478 ",
            ("turns:turn.example.co.uk:5349?transport=tcp", "stun:stun.example.com:3478"),
        ),
        ("turn:192.0.2.1:3478,turn:[2001:DB8::1]:3478", ("turn:192.0.2.1:3478", "turn:[2001:db8::1]:3478")),
        ("turn:a.example.com,turn:A.example.com", ("turn:a.example.com",)),
    ],
)
def test_turn_uris_accepted(value: str, expected: tuple[str, ...]) -> None:
    assert parse(**{**TURN, "turn_uris": value}).turn_uris == expected


@pytest.mark.parametrize(
    "value",
    [
        "http://turn.example.com",
        "turn.example.com:3478",
        "turn:",
        "turn:turn.example.com:99999",
        "turn:turn.example.com?transport=sctp",
        "stun:stun.example.com?transport=udp",
        "turn:bad_host.example.com",
        "turn:turn.exa\nmple.com",
        ",".join(f"turn:t{i}.example.com" for i in range(51)),
    ],
)
def test_turn_uris_rejected(value: str) -> None:
    assert "turn" in rejected("turn_uris", value, turn_shared_secret=SECRET_ID)


def test_turn_needs_uris_and_secret_together() -> None:
    with pytest.raises(InvalidStateError, match="TURN needs the shared secret") as excinfo:
        parse(turn_uris="turn:turn.example.com")
    assert f"juju grant-secret turn {APP}" in str(excinfo.value)
    assert "{app}" not in str(excinfo.value)
    with pytest.raises(InvalidStateError, match="turn_uris is empty"):
        parse(turn_shared_secret=SECRET_ID)


@pytest.mark.parametrize(
    "value", [SECRET_ID, "cq9ml4fmp25c7ba0sg4g", "secret://0f2a4c3e-1b2d-4e5f-8a9b-0c1d2e3f4a5b/cq9ml4fmp25c7ba0sg4g"]
)
def test_turn_secret_ids_accepted(value: str) -> None:
    assert parse(**{**TURN, "turn_shared_secret": value}).turn_shared_secret == value


@pytest.mark.parametrize(
    "value", ["my-password", "secret:short", "secret:cq9ml4fmp2\n5c7ba0sg4g", "secret:CQ9ML4FMP25C7BA0SG4G"]
)
def test_turn_secret_must_be_a_secret_id_not_the_secret(value: str) -> None:
    assert "Juju secret ID" in rejected("turn_shared_secret", value, turn_uris="turn:t.example.com")


@pytest.mark.parametrize(("value", "expected"), [("1h", "1h"), ("1M", "1m"), (" 7d ", "7d"), ("3600s", "3600s")])
def test_turn_user_lifetime_accepted(value: str, expected: str) -> None:
    assert parse(turn_user_lifetime=value).turn_user_lifetime == expected


@pytest.mark.parametrize("value", ["", "59s", "8d", "1y", "3600000", "1.5h", "1 h", "-1h", "0h", "1mo"])
def test_turn_user_lifetime_rejected(value: str) -> None:
    rejected("turn_user_lifetime", value)


def test_turn_rendered_with_the_secret_in_a_file() -> None:
    doc = rendered(**TURN, turn_user_lifetime="2h", turn_allow_guests=False)
    assert doc["turn_uris"] == ["turn:turn.example.com:3478?transport=udp"]
    assert doc["turn_shared_secret_path"] == str(TURN_SECRET_PATH)
    assert "turn_shared_secret" not in doc
    assert (doc["turn_user_lifetime"], doc["turn_allow_guests"]) == ("2h", False)


def test_no_turn_by_default() -> None:
    assert not {"turn_uris", "turn_shared_secret_path", "turn_user_lifetime"} & set(rendered())


# --- durations and sizes -----------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=10**8), st.sampled_from("smhdwy"))
def test_durations_round_trip(number: int, unit: str) -> None:
    text = parse_duration(f"{number}{unit.upper()}")
    assert text == f"{number}{unit}"
    assert duration_seconds(text) == number * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}[unit]


@given(st.text(max_size=12))
def test_parse_duration_raises_only_value_error(text: str) -> None:
    try:
        assert duration_seconds(parse_duration(text)) > 0
    except ValueError:
        pass


def test_duration_seconds_refuses_what_parse_duration_refuses() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds("1mo")


@pytest.mark.parametrize(("text", "expected"), [("1", 1), ("10K", 10240), ("10m", 10 * 1024**2), ("1G", 1024**3)])
def test_size_bytes(text: str, expected: int) -> None:
    assert size_bytes(text) == expected


# --- rate limits -------------------------------------------------------------------------------


def test_rate_limit_defaults_are_synapses() -> None:
    doc = rendered()
    assert doc["rc_message"] == {"per_second": 0.2, "burst_count": 10}
    assert doc["rc_login"] == {
        "address": {"per_second": 0.003, "burst_count": 5},
        "account": {"per_second": 0.003, "burst_count": 5},
        "failed_attempts": {"per_second": 0.17, "burst_count": 3},
    }
    assert doc["rc_registration"] == {"per_second": 0.17, "burst_count": 3}
    assert doc["rc_joins"] == {
        "local": {"per_second": 0.1, "burst_count": 10},
        "remote": {"per_second": 0.01, "burst_count": 10},
    }
    assert doc["rc_invites"] == {
        "per_room": {"per_second": 0.3, "burst_count": 10},
        "per_user": {"per_second": 0.003, "burst_count": 5},
        "per_issuer": {"per_second": 0.3, "burst_count": 10},
    }


@pytest.mark.parametrize(
    ("option", "path"),
    [
        ("ratelimit_messages", ("rc_message",)),
        ("ratelimit_login_address", ("rc_login", "address")),
        ("ratelimit_login_account", ("rc_login", "account")),
        ("ratelimit_login_failed_attempts", ("rc_login", "failed_attempts")),
        ("ratelimit_registration", ("rc_registration",)),
        ("ratelimit_joins_local", ("rc_joins", "local")),
        ("ratelimit_joins_remote", ("rc_joins", "remote")),
        ("ratelimit_invites_per_room", ("rc_invites", "per_room")),
        ("ratelimit_invites_per_user", ("rc_invites", "per_user")),
        ("ratelimit_invites_per_issuer", ("rc_invites", "per_issuer")),
    ],
)
def test_each_rate_limit_reaches_its_synapse_key(option: str, path: tuple[str, ...]) -> None:
    node: typing.Any = rendered(**{option: " 1.5:42 "})
    for key in path:
        node = node[key]
    assert node == {"per_second": 1.5, "burst_count": 42}
    assert set(RATE_LIMIT_OPTIONS) >= {option}


@pytest.mark.parametrize(
    "value",
    ["", "10", "0:10", "0.0:10", "1:0", "-1:10", "1e3:10", "1:10:1", "a:b", "10001:1", "1:1000001", "1.1234567:1"],
)
def test_rate_limit_rejected(value: str) -> None:
    assert "per second" in rejected("ratelimit_messages", value)


@given(st.decimals(min_value="0.000001", max_value="10000", places=6), st.integers(min_value=1, max_value=10**6))
def test_rate_limits_round_trip(per_second: typing.Any, burst: int) -> None:
    limit = RateLimit.parse(f"{per_second:f}:{burst}")
    assert math.isclose(limit.per_second, float(per_second))
    assert limit.burst_count == burst
    assert yaml.safe_load(yaml.safe_dump(limit.synapse())) == limit.synapse()


# --- URL previews ------------------------------------------------------------------------------


def test_url_previews_off_by_default_but_blacklist_always_there() -> None:
    doc = rendered()
    assert doc["url_preview_enabled"] is False
    assert doc["url_preview_ip_range_blacklist"] == list(URL_PREVIEW_BLACKLIST)
    assert doc["max_spider_size"] == "10M"


def test_url_preview_blacklist_covers_internal_ranges() -> None:
    for network in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "::1/128"):
        assert network in URL_PREVIEW_BLACKLIST
    assert "fe80::/10" in URL_PREVIEW_BLACKLIST
    assert "fc00::/7" in URL_PREVIEW_BLACKLIST


def test_operators_add_to_the_blacklist_but_cannot_remove() -> None:
    doc = rendered(enable_url_previews=True, url_preview_ip_range_blacklist="203.0.113.7, 198.51.0.0/16, 127.0.0.0/8")
    assert doc["url_preview_enabled"] is True
    assert doc["url_preview_ip_range_blacklist"] == [*URL_PREVIEW_BLACKLIST, "203.0.113.7/32", "198.51.0.0/16"]
    assert "url_preview_ip_range_whitelist" not in doc


@pytest.mark.parametrize("value", ["10.0.0.0/33", "example.com", "10.0.0.0/8\n/16"])
def test_url_preview_blacklist_rejected(value: str) -> None:
    assert "CIDR" in rejected("url_preview_ip_range_blacklist", value)


@pytest.mark.parametrize(("value", "expected"), [("1K", "1K"), ("2m", "2M"), ("1G", "1G"), ("4096", "4096")])
def test_max_spider_size_accepted(value: str, expected: str) -> None:
    assert parse(max_spider_size=value).max_spider_size == expected


@pytest.mark.parametrize("value", ["", "1023", "2G", "1T", "0M", "10MB", "1.5M", "-1M"])
def test_max_spider_size_rejected(value: str) -> None:
    rejected("max_spider_size", value)


# --- retention ---------------------------------------------------------------------------------


def test_no_retention_by_default() -> None:
    doc = rendered()
    assert "retention" not in doc
    assert "media_retention" not in doc


def test_retention_rendered() -> None:
    doc = rendered(
        retention_min_lifetime="1D",
        retention_max_lifetime="52w",
        media_retention_local_lifetime="90d",
        media_retention_remote_lifetime="14d",
    )
    assert doc["retention"] == {"enabled": True, "default_policy": {"min_lifetime": "1d", "max_lifetime": "52w"}}
    assert doc["media_retention"] == {"local_media_lifetime": "90d", "remote_media_lifetime": "14d"}


def test_retention_max_alone() -> None:
    assert rendered(retention_max_lifetime="1y")["retention"]["default_policy"] == {"max_lifetime": "1y"}


@pytest.mark.parametrize(
    "option",
    [
        "retention_min_lifetime",
        "retention_max_lifetime",
        "media_retention_local_lifetime",
        "media_retention_remote_lifetime",
    ],
)
@pytest.mark.parametrize("value", ["1m", "23h", "86399s", "1mo", "30", "1.5d"])
def test_retention_under_a_day_or_malformed_rejected(option: str, value: str) -> None:
    rejected(option, value)


def test_retention_minutes_are_not_months() -> None:
    assert "m means minutes" in rejected("retention_max_lifetime", "6m")


def test_retention_min_above_max_rejected() -> None:
    with pytest.raises(InvalidStateError, match="retention_min_lifetime=2w: it exceeds retention_max_lifetime=1w"):
        parse(retention_min_lifetime="2w", retention_max_lifetime="1w")
    assert parse(retention_min_lifetime="7d", retention_max_lifetime="1w").retention_policy


# --- server policy -----------------------------------------------------------------------------


def test_policy_defaults() -> None:
    doc = rendered()
    assert doc["presence"] == {"enabled": True}
    assert doc["require_auth_for_profile_requests"] is False
    assert doc["allow_profile_lookup_over_federation"] is True
    for key in ("limit_remote_rooms", "room_list_publication_rules", "admin_contact", "auto_join_rooms"):
        assert key not in doc
    assert "default_room_version" not in doc


def test_policy_rendered() -> None:
    doc = rendered(
        enable_presence=False,
        limit_remote_rooms_complexity=1.5,
        require_auth_for_profile_requests=True,
        allow_profile_lookup_over_federation=False,
        admin_contact="mailto:admin@example.com",
        auto_join_rooms="#welcome:example.com, #Help:chat.example.co.uk",
        default_room_version="11",
    )
    assert doc["presence"] == {"enabled": False}
    assert doc["limit_remote_rooms"] == {"enabled": True, "complexity": 1.5}
    assert doc["require_auth_for_profile_requests"] is True
    assert doc["allow_profile_lookup_over_federation"] is False
    assert doc["admin_contact"] == "mailto:admin@example.com"
    assert doc["auto_join_rooms"] == ["#welcome:example.com", "#Help:chat.example.co.uk"]
    assert doc["default_room_version"] == "11"


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), ("0.5", 0.5), (1000, 1000.0), (" 2 ", 2.0)])
def test_complexity_accepted(value: typing.Any, expected: float) -> None:
    assert parse(limit_remote_rooms_complexity=value).limit_remote_rooms_complexity == expected


@pytest.mark.parametrize("value", [-1, 0.001, 1001, "nan", "inf", "lots", ""])
def test_complexity_rejected(value: typing.Any) -> None:
    rejected("limit_remote_rooms_complexity", value)


@pytest.mark.parametrize(
    ("value", "rules"),
    [
        ("*", ["*"]),
        ("@alice:example.com, *", ["*"]),
        ("@alice:chat.example.co.uk", ["@alice:chat.example.co.uk"]),
        ("@alice:Chat.Example.Co.UK,@*:other.example.org", ["@alice:chat.example.co.uk", "@*:other.example.org"]),
        ("@bob:example.com:8448,@carol:[2001:db8::1]", ["@bob:example.com:8448", "@carol:[2001:db8::1]"]),
    ],
)
def test_room_directory_publishers(value: str, rules: list[str]) -> None:
    doc = rendered(room_directory_publishers=value)
    assert doc["room_list_publication_rules"] == [
        {"user_id": user, "alias": "*", "room_id": "*", "action": "allow"} for user in rules
    ]


@pytest.mark.parametrize(
    "value", ["alice", "@alice", "@Alice:example.com", "@al?ce:example.com", "@alice:bad_host", "@:example.com", "**"]
)
def test_room_directory_publishers_rejected(value: str) -> None:
    message = rejected("room_directory_publishers", value)
    assert "user ID" in message or "host name" in message


@pytest.mark.parametrize(
    "value", ["mailto:admin@example.com", "https://example.com/contact", "http://help.example.co.uk/"]
)
def test_admin_contact_accepted(value: str) -> None:
    assert parse(admin_contact=f" {value} ").admin_contact == value


@pytest.mark.parametrize(
    "value", ["admin@example.com", "mailto:admin", "ftp://example.com", "https://", "https://a b/"]
)
def test_admin_contact_rejected(value: str) -> None:
    rejected("admin_contact", value)


@pytest.mark.parametrize(
    "value", ["welcome:example.com", "#welcome", "#two words:example.com", "!room:example.com", "#a:b_c"]
)
def test_auto_join_rooms_rejected(value: str) -> None:
    assert "room alias" in rejected("auto_join_rooms", value) or "host" in rejected("auto_join_rooms", value)


@pytest.mark.parametrize("value", ["0", "13", "v12", "org.matrix.msc3757.10", "1.0"])
def test_default_room_version_rejected(value: str) -> None:
    assert "stable room version" in rejected("default_room_version", value)


# --- any input: a status, never a crash ----------------------------------------------------------


@settings(max_examples=300)
@given(st.sampled_from(STRING_OPTIONS), st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE_STRINGS)))
def test_any_string_is_accepted_or_blocked_with_the_option_named(option: str, value: str) -> None:
    config = {**TURN, option: value} if option.startswith("turn_") else {option: value}
    try:
        state = CharmState(config=parse(**config), turn_shared_secret="s")
    except InvalidStateError as exc:
        assert option in str(exc) or "turn_" in str(exc)
        return
    doc = yaml.safe_load(render_homeserver_config(state))
    assert doc["server_name"] == "example.com"
    assert doc["enable_registration"] is False


# --- the charm: the secret, files and restarts ---------------------------------------------------


def turn_secret(value: str = "coturn-static-auth-secret", key: str = TURN_SECRET_KEY) -> testing.Secret:
    """The operator's user secret with the TURN shared secret."""
    return testing.Secret(tracked_content={key: value}, id=SECRET_ID)


def test_turn_secret_written_to_a_0600_file(env: CharmEnv) -> None:
    out = env.started(TURN, secrets={turn_secret()})
    assert env.read(TURN_SECRET_PATH) == "coturn-static-auth-secret"
    assert env.host_path(TURN_SECRET_PATH).stat().st_mode & 0o777 == 0o600
    assert "coturn-static-auth-secret" not in env.read(CONFIG_PATH)
    assert yaml.safe_load(env.read(CONFIG_PATH))["turn_shared_secret_path"] == str(TURN_SECRET_PATH)
    assert "coturn" not in str(out.get_container("synapse").plan.to_dict())


def test_turn_secret_missing_blocks(env: CharmEnv) -> None:
    out = env.pebble_ready(env.state(TURN))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "turn_shared_secret" in out.unit_status.message
    assert f"juju grant-secret {SECRET_ID} {APP}" in out.unit_status.message


def test_turn_secret_without_the_key_blocks(env: CharmEnv) -> None:
    out = env.pebble_ready(env.state(TURN, secrets={turn_secret(key="password")}))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert f"needs a key {TURN_SECRET_KEY}" in out.unit_status.message


def test_turn_secret_not_readable_blocks(env: CharmEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*_: typing.Any, **__: typing.Any) -> typing.NoReturn:
        raise ops.ModelError("permission denied")

    monkeypatch.setattr(ops.Model, "get_secret", denied)
    out = env.pebble_ready(env.state(TURN))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "may not read secret" in out.unit_status.message


def test_turn_secret_rotation_restarts_once(env: CharmEnv) -> None:
    out = env.ready(env.started(TURN, secrets={turn_secret()}))
    rotated = testing.Secret(
        tracked_content={TURN_SECRET_KEY: "old"}, latest_content={TURN_SECRET_KEY: "new"}, id=SECRET_ID
    )
    others = {secret for secret in out.secrets if secret.id != SECRET_ID}
    state = dataclasses.replace(out, secrets=frozenset({*others, rotated}))
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.secret_changed(rotated), state)
        out = env.run(env.ctx.on.update_status(), out)
    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]
    assert effects.pushes == [str(TURN_SECRET_PATH)]
    assert env.read(TURN_SECRET_PATH) == "new"


def test_options_change_restarts_once_and_no_op_changes_nothing(env: CharmEnv) -> None:
    out = env.ready(env.started(secrets={turn_secret()}))
    change: dict[str, str | bool] = {
        **TURN,
        "ratelimit_messages": "1:3",
        "enable_url_previews": True,
        "retention_max_lifetime": "1y",
    }
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.config_changed(), env.with_config(out, **change))
    assert effects.pebble.calls == [("restart", (SERVICE_NAME,))]
    assert sorted(effects.pushes) == sorted([str(CONFIG_PATH), str(TURN_SECRET_PATH)])
    with record_side_effects() as effects:
        for _ in range(3):
            out = env.run(env.ctx.on.config_changed(), out)
    assert effects.nothing, effects
    assert out.unit_status == ops.ActiveStatus()


def test_bad_option_blocks_and_keeps_the_last_good_config(env: CharmEnv) -> None:
    out = env.ready(env.started())
    before = env.read(CONFIG_PATH)
    with record_side_effects() as effects:
        out = env.run(env.ctx.on.config_changed(), env.with_config(out, retention_max_lifetime="6m"))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert "invalid config retention_max_lifetime" in out.unit_status.message
    assert effects.nothing, effects
    assert env.read(CONFIG_PATH) == before
