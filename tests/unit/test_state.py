"""Config parsing and validation (src/state.py)."""

import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

import state
from state import LOG_LEVELS, CharmConfig, InvalidStateError, split_list, validate_hostname, validate_server_name
from tests import strategies
from tests.unit.conftest import HOSTILE_STRINGS

APP = "synapse"


def parse(**config: typing.Any) -> CharmConfig:
    """Parse Juju config with server_name defaulting to example.com."""
    return CharmConfig.from_juju({"server_name": "example.com", **config}, APP)


def rejected(option: str, value: typing.Any) -> str:
    """The error message for an invalid option value; fails the test if it was accepted."""
    config = {"server_name": "example.com", option: value}
    with pytest.raises(InvalidStateError) as excinfo:
        CharmConfig.from_juju(config, APP)
    message = str(excinfo.value)
    assert f"invalid config {option}:" in message
    assert f"`juju config {APP} {option}=...`" in message
    return message


# --- server_name -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("example.com", "example.com"),
        ("chat.example.com", "chat.example.com"),
        ("Chat.Example.COM", "chat.example.com"),
        ("example.technology", "example.technology"),
        ("matrix.example.photography", "matrix.example.photography"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("matrix.xn--p1ai", "matrix.xn--p1ai"),
        ("localhost", "localhost"),
        ("example.com.", "example.com"),
        ("a-b.c-d.example", "a-b.c-d.example"),
        ("1example.com", "1example.com"),
        ("example.com:8448", "example.com:8448"),
        ("example.com:1", "example.com:1"),
        ("example.com:65535", "example.com:65535"),
        ("192.0.2.10", "192.0.2.10"),
        ("192.0.2.10:8448", "192.0.2.10:8448"),
        ("[::1]", "[::1]"),
        ("[2001:DB8::1]", "[2001:db8::1]"),
        ("[2001:db8::1]:8448", "[2001:db8::1]:8448"),
        ("[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]"),
        ("  example.com  ", "example.com"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
    ],
)
def test_server_name_accepted(value: str, expected: str) -> None:
    assert parse(server_name=value).server_name == expected


@pytest.mark.parametrize(
    "value",
    [
        "exa mple.com",
        "-example.com",
        "example-.com",
        "example..com",
        ".example.com",
        "ex_ample.com",
        "exämple.com",
        "example.com/",
        "https://example.com",
        "alice@example.com",
        "example.123",
        "a" * 64 + ".example",
        ".".join(["a" * 60] * 5),
        "example.com:0",
        "example.com:65536",
        "example.com:123456",
        "example.com:",
        "example.com:http",
        "example.com:-1",
        "example.com:8448:1",
        "192.0.2.256",
        "192.0.2",
        "192.0.2.1.5",
        "[::1",
        "[zz::1]",
        "[192.0.2.1]",
        "[::1]8448",
        "[::1]:",
        "[::1]:99999",
        "::1",
        ".",
    ],
)
def test_server_name_rejected(value: str) -> None:
    rejected("server_name", value)


@pytest.mark.parametrize("value", ["", "   ", None])
def test_server_name_required(value: str | None) -> None:
    message = rejected("server_name", value)
    assert "required" in message


def test_server_name_missing_entirely() -> None:
    with pytest.raises(InvalidStateError, match=r"invalid config server_name: .*juju config synapse server_name="):
        CharmConfig.from_juju({}, APP)


def test_validate_hostname_limits() -> None:
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(longest) == 253
    assert validate_hostname(longest) == longest
    with pytest.raises(ValueError, match="not a valid host name"):
        validate_hostname(longest + "d")
    with pytest.raises(ValueError, match="numeric top-level domain"):
        validate_hostname("example.42")
    with pytest.raises(ValueError, match="not a valid host name"):
        validate_hostname("")


def test_validate_server_name_messages_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="missing ']'"):
        validate_server_name("[::1")
    with pytest.raises(ValueError, match="is not an IPv6 address"):
        validate_server_name("[nope]")
    with pytest.raises(ValueError, match="unexpected text after the IPv6 address"):
        validate_server_name("[::1]x")
    with pytest.raises(ValueError, match="is not an IPv4 address"):
        validate_server_name("10.0.0.300")
    with pytest.raises(ValueError, match="not a port number"):
        validate_server_name("example.com:70000")


# --- public_baseurl ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server_name", "expected"),
    [
        ("example.com", "https://example.com/"),
        ("example.com:8448", "https://example.com:8448/"),
        ("[2001:db8::1]", "https://[2001:db8::1]/"),
    ],
)
def test_public_baseurl_defaults_to_server_name(server_name: str, expected: str) -> None:
    assert parse(server_name=server_name).public_baseurl == expected
    assert parse(server_name=server_name, public_baseurl="   ").public_baseurl == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://matrix.example.com", "https://matrix.example.com/"),
        ("https://matrix.example.com/", "https://matrix.example.com/"),
        ("http://matrix.example.com:8008", "http://matrix.example.com:8008/"),
        ("https://example.com/synapse", "https://example.com/synapse/"),
        ("https://example.com/synapse/", "https://example.com/synapse/"),
        ("https://192.0.2.1:8443", "https://192.0.2.1:8443/"),
        ("https://[2001:db8::1]:8448/", "https://[2001:db8::1]:8448/"),
        ("  https://matrix.example.com  ", "https://matrix.example.com/"),
        ("https://matrix.example.technology", "https://matrix.example.technology/"),
    ],
)
def test_public_baseurl_accepted_and_normalised(value: str, expected: str) -> None:
    assert parse(public_baseurl=value).public_baseurl == expected


@pytest.mark.parametrize(
    "value",
    [
        "ftp://example.com/",
        "ws://example.com/",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "matrix.example.com",
        "//matrix.example.com/",
        "https://",
        "https:///path",
        "https://exa mple.com/",
        "https://example.com/a path/",
        "https://example.com/\ttab",
        "https://alice:secret@example.com/",
        "https://alice@example.com/",
        "https://example.com/?next=evil",
        "https://example.com/#frag",
        "https://[::1/",
        "https://example.com:99999/",
        "https://example.com:port/",
        "https://exa_mple.com/",
        "https://example.com/a\u2028b",
        "https://example.com/a\x85b",
        "https://example.com/a\x00b",
    ],
)
def test_public_baseurl_rejected(value: str) -> None:
    rejected("public_baseurl", value)


def test_public_baseurl_credentials_message() -> None:
    assert "credentials" in rejected("public_baseurl", "https://alice:secret@example.com/")


# --- report_stats and the booleans -------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    ["report_stats", "allow_public_rooms_over_federation", "enable_room_list_search", "block_non_admin_invites"],
)
@pytest.mark.parametrize("value", [True, False])
def test_booleans(option: str, value: bool) -> None:
    assert getattr(parse(**{option: value}), option) is value


def test_boolean_defaults() -> None:
    config = parse()
    assert config.report_stats is False
    assert config.allow_public_rooms_over_federation is False
    assert config.enable_room_list_search is True
    assert config.block_non_admin_invites is False


@pytest.mark.parametrize("option", ["report_stats", "block_non_admin_invites"])
def test_boolean_rejects_non_booleans(option: str) -> None:
    rejected(option, "perhaps")


# --- max_upload_size ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("50M", "50M"), ("1G", "1G"), ("1024", "1024"), ("10k", "10K"), ("2T", "2T"), (" 100M ", "100M")],
)
def test_max_upload_size_accepted(value: str, expected: str) -> None:
    assert parse(max_upload_size=value).max_upload_size == expected


def test_max_upload_size_default() -> None:
    assert parse().max_upload_size == "50M"


@pytest.mark.parametrize("value", ["", "0", "050M", "M", "50MB", "50 M", "-1", "1.5G", "50P", "fifty", "50M\n1G"])
def test_max_upload_size_rejected(value: str) -> None:
    assert "is not a size such as 50M" in rejected("max_upload_size", value)


# --- server name lists -------------------------------------------------------------------


@pytest.mark.parametrize("option", ["federation_domain_whitelist", "trusted_key_servers"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("  ", ()),
        (" , ,, ", ()),
        ("matrix.org", ("matrix.org",)),
        ("matrix.org,example.com", ("matrix.org", "example.com")),
        ("  matrix.org ,\texample.com  ", ("matrix.org", "example.com")),
        ("matrix.org,example.com,matrix.org", ("matrix.org", "example.com")),
        ("matrix.org,,example.com,", ("matrix.org", "example.com")),
        ("example.com:8448,[::1]:8448,192.0.2.1", ("example.com:8448", "[::1]:8448", "192.0.2.1")),
        ("xn--bcher-kva.example,example.technology", ("xn--bcher-kva.example", "example.technology")),
    ],
)
def test_server_lists_accepted(option: str, value: str, expected: tuple[str, ...]) -> None:
    assert getattr(parse(**{option: value}), option) == expected


@pytest.mark.parametrize("option", ["federation_domain_whitelist", "trusted_key_servers"])
def test_server_lists_dedup_after_normalisation(option: str) -> None:
    assert getattr(parse(**{option: "matrix.org, MATRIX.org, matrix.org."}), option) == ("matrix.org",)


def test_server_list_defaults() -> None:
    config = parse()
    assert config.trusted_key_servers == ("matrix.org",)
    assert config.federation_domain_whitelist == ()


@pytest.mark.parametrize("option", ["federation_domain_whitelist", "trusted_key_servers"])
@pytest.mark.parametrize(
    "value", ["matrix.org;example.com", "matrix.org example.com", "matrix.org,https://example.com", "matrix.org,-x.org"]
)
def test_server_lists_rejected(option: str, value: str) -> None:
    rejected(option, value)


def test_split_list() -> None:
    assert split_list(" a , b,,a ,c ") == ["a", "b", "c"]
    assert split_list("") == []


# --- ip_range_whitelist ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("10.0.0.0/8", ("10.0.0.0/8",)),
        ("10.1.2.3/8", ("10.0.0.0/8",)),
        ("192.0.2.7", ("192.0.2.7/32",)),
        ("fd00::/8", ("fd00::/8",)),
        ("FD00:0:0::1/8", ("fd00::/8",)),
        ("2001:db8::1", ("2001:db8::1/128",)),
        (" 10.0.0.0/8 , fd00::/8 ,,", ("10.0.0.0/8", "fd00::/8")),
    ],
)
def test_ip_range_whitelist_accepted(value: str, expected: tuple[str, ...]) -> None:
    assert parse(ip_range_whitelist=value).ip_range_whitelist == expected


def test_ip_range_whitelist_dedup_after_normalisation() -> None:
    assert parse(ip_range_whitelist="10.0.0.0/8,10.1.2.3/8").ip_range_whitelist == ("10.0.0.0/8",)


@pytest.mark.parametrize(
    "value", ["10.0.0.0/33", "10.0.0.256/8", "example.com", "10.0.0.0/8/8", "fd00::/129", "10.0.0.0/8;rm", "any"]
)
def test_ip_range_whitelist_rejected(value: str) -> None:
    assert "is not an IPv4/IPv6 CIDR" in rejected("ip_range_whitelist", value)


# --- log_level ---------------------------------------------------------------------------


@pytest.mark.parametrize("level", LOG_LEVELS)
@pytest.mark.parametrize("spelling", [str.upper, str.lower, str.capitalize, lambda s: f"  {s.lower()} "])
def test_log_level_case_insensitive(level: str, spelling: typing.Callable[[str], str]) -> None:
    assert parse(log_level=spelling(level)).log_level == level


def test_log_level_default() -> None:
    assert parse().log_level == "INFO"


@pytest.mark.parametrize("value", ["", "verbose", "NOTSET", "warn", "INFO DEBUG", "10"])
def test_log_level_rejected(value: str) -> None:
    message = rejected("log_level", value)
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in message


# --- registration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [("disabled", "disabled"), (" Token ", "token"), ("DISABLED", "disabled")]
)
def test_registration_modes(value: str, expected: str) -> None:
    assert parse(registration=value).registration == expected


def test_registration_default_is_disabled() -> None:
    config = parse()
    assert (config.registration, config.allow_guest_access) == ("disabled", False)


@pytest.mark.parametrize("value", ["", "enabled", "true", "open token"])
def test_registration_rejected(value: str) -> None:
    assert "disabled, token, open" in rejected("registration", value)


def test_open_registration_needs_the_acknowledgement() -> None:
    with pytest.raises(InvalidStateError) as excinfo:
        parse(registration="open")
    message = str(excinfo.value)
    assert "registration=open" in message
    assert "`juju config synapse enable_registration_without_verification=true`" in message
    assert "{app}" not in message
    config = parse(registration="Open", enable_registration_without_verification=True)
    assert config.registration == "open"


# --- hostile strings at the parser -------------------------------------------------------

HOSTILE = HOSTILE_STRINGS
STRING_OPTIONS = {
    "server_name": "example.com",
    "public_baseurl": "https://example.com/",
    "max_upload_size": "50M",
    "federation_domain_whitelist": "matrix.org",
    "trusted_key_servers": "matrix.org",
    "ip_range_whitelist": "10.0.0.0/8",
    "log_level": "INFO",
    "registration": "disabled",
}


@pytest.mark.parametrize("payload", HOSTILE, ids=lambda p: repr(p)[:24])
@pytest.mark.parametrize("option", list(STRING_OPTIONS))
def test_hostile_strings_never_pass_through(option: str, payload: str) -> None:
    """Each hostile payload is either rejected naming the option or normalised away entirely."""
    for value in (payload, STRING_OPTIONS[option] + payload, payload + STRING_OPTIONS[option]):
        try:
            config = parse(**{option: value})
        except InvalidStateError as exc:
            assert f"invalid config {option}:" in str(exc)
            continue
        parsed = getattr(config, option)
        items = parsed if isinstance(parsed, tuple) else (parsed,)
        assert all(item.isprintable() and not any(ch.isspace() for ch in item) for item in items)
        if option == "public_baseurl":
            # A URL path may hold quotes, '&', '*' and such: kept verbatim, only stripped.
            assert parsed.rstrip("/") == (value.strip() or "https://example.com").rstrip("/")
        else:
            # Only whitespace may have been dropped, and what is left is plain ASCII.
            assert payload.strip() == "" or payload.strip() not in " ".join(items)
            assert all(item.isascii() for item in items)


def test_first_error_is_reported() -> None:
    with pytest.raises(InvalidStateError) as excinfo:
        CharmConfig.from_juju({"server_name": "", "log_level": "nope"}, "my-synapse")
    assert str(excinfo.value).startswith("invalid config server_name:")
    assert "`juju config my-synapse server_name=...`" in str(excinfo.value)


def test_config_is_frozen_and_ignores_unknown_options() -> None:
    config = CharmConfig.from_juju({"server_name": "example.com", "unknown": "x"}, APP)
    assert not hasattr(config, "unknown")
    with pytest.raises(ValueError, match="frozen"):
        config.server_name = "other.example"  # type: ignore[misc]


# --- a newline before the end of a value is not a valid end (regex `$` would allow it) -------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("server_name", "chat.example.com\n:8448"),
        ("server_name", "chat.example.com:84\n48"),
        ("server_name", "chat.example.com:8448\n\n:1"),
        ("public_baseurl", "https://chat.example.com\n/"),
        ("max_upload_size", "50M\nx"),
        ("federation_domain_whitelist", "matrix.org\n:8448"),
        ("trusted_key_servers", "matrix.org:8448\n:1"),
    ],
)
def test_embedded_newlines_are_rejected(option: str, value: str) -> None:
    rejected(option, value)


# --- what Synapse's own parsers refuse although Python's accept -----------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("server_name", "[fe80::1%eth0]"),
        ("server_name", "[fe80::1%1]:8448"),
        ("public_baseurl", "https://[fe80::1%25eth0]/"),
        ("federation_domain_whitelist", "matrix.org,[fe80::1%eth0]"),
        ("trusted_key_servers", "[fe80::1%lo]:443"),
        ("ip_range_whitelist", "fe80::%eth0/64"),
        ("ip_range_whitelist", "10.0.0.0/8,fe80::1%1"),
    ],
)
def test_scoped_ipv6_addresses_are_rejected(option: str, value: str) -> None:
    """Python's ipaddress reads `fe80::1%eth0`; Synapse's netaddr refuses it (its config would not load)."""
    assert "%" in rejected(option, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("9007199254740991", 2**53 - 1), ("8191T", 8191 * 1024**4), ("8388607G", 8388607 * 1024**3)],
)
def test_max_upload_size_up_to_the_bound(value: str, expected: int) -> None:
    assert state.parse_size(parse(max_upload_size=value).max_upload_size) == expected


@pytest.mark.parametrize("value", ["9007199254740992", "8192T", "8388608G", "9" * 16 + "T"])
def test_max_upload_size_above_the_bound(value: str) -> None:
    assert "too large: at most 8191T" in rejected("max_upload_size", value)


def test_max_upload_size_with_more_digits_than_python_converts() -> None:
    """int() refuses more than 4300 digits: Synapse's parse_size would crash on it; the charm says why."""
    message = rejected("max_upload_size", "9" * 5000)

    assert "is not a size such as 50M" in message
    assert len(message) < 300


@pytest.mark.parametrize("digit", ["\u0661", "\uff11", "\u2167", "\u00b9"])
def test_non_ascii_digits_are_not_numbers(digit: str) -> None:
    """Python's int() reads Arabic-Indic and fullwidth digits; the charm renders ASCII only."""
    rejected("max_upload_size", f"5{digit}M")
    rejected("server_name", f"example.com:84{digit}8")


@given(option=st.sampled_from(sorted(STRING_OPTIONS)), value=strategies.texts)
def test_long_values_are_cut_in_messages(option: str, value: str) -> None:
    try:
        parse(**{option: value})
    except InvalidStateError as exc:
        assert len(str(exc)) < 400


@given(config=strategies.hostile_config())
def test_any_config_parses_or_names_the_option(config: dict[str, typing.Any]) -> None:
    """Any config of Juju's types is accepted, or refused with InvalidStateError naming an option."""
    try:
        parsed = CharmConfig.from_juju(config, APP)
    except InvalidStateError as exc:
        assert "juju config" in str(exc)
        return
    assert state.parse_size(parsed.max_upload_size) <= state.MAX_UPLOAD_BYTES
    assert all("%" not in name for name in (parsed.server_name, *parsed.ip_range_whitelist))


@given(low=strategies.hostile_ints, high=strategies.hostile_ints)
def test_the_pool_bounds_are_accepted_exactly_when_synapse_can_use_them(low: int, high: int) -> None:
    """Both pool options drawn together: accepted exactly when 1 <= min <= max <= 100, else refused by name."""
    config = {"server_name": "example.com", "database_pool_min": low, "database_pool_max": high}
    try:
        parsed = CharmConfig.from_juju(config, APP)
    except InvalidStateError as exc:
        assert not 1 <= low <= high <= 100, exc
        assert "database_pool_m" in str(exc)
        return
    assert 1 <= low <= high <= 100
    assert (parsed.database_pool_min, parsed.database_pool_max) == (low, high)


@given(config=strategies.valid_config())
def test_valid_configs_are_accepted(config: dict[str, typing.Any]) -> None:
    CharmConfig.from_juju(config, APP)
