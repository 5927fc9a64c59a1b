"""Server options beyond the basics: TURN, rate limits, URL previews, retention and server policy.

Each group is a pydantic model of flat Juju options, validated against what Synapse 1.163
accepts (its `synapse/config/*.py`). `ServerOptions` composes the groups and
`state.CharmConfig` inherits it, so each option is a field of the charm's config and a bad
value gets the same Blocked message (option name and fix) as every other option. The
homeserver.yaml part lives in templates/homeserver/options.yaml.j2.

`state` imports this module, so what this module needs from `state` is imported inside
the functions that use it.
"""

import ipaddress
import math
import re
import typing
from urllib.parse import urlsplit

import ops
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Synapse's `parse_duration` suffixes, in seconds. A suffix is required here: Synapse reads
# a bare number as milliseconds, which nobody means.
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION = re.compile(r"([1-9][0-9]{0,8})([smhdwy])")
_SIZE = re.compile(r"([1-9][0-9]{0,12})([KMGT]?)")
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_RATE = re.compile(r"([0-9]{1,5}(?:\.[0-9]{1,6})?):([0-9]{1,7})")
_TURN_URI = re.compile(r"(turns?|stuns?):([^?]+)(?:\?transport=(udp|tcp))?")
_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")
_ALIAS_LOCALPART = re.compile(r"[!-9;-~]+")  # printable ASCII without ':' or spaces
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
_URL = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")

# The room versions Synapse 1.163 knows and calls stable (synapse.api.room_versions).
ROOM_VERSIONS = tuple(str(version) for version in range(1, 13))
# Retention shorter than a day is almost always a typo ('m' is minutes, not months) and
# deletes history for good.
MIN_RETENTION = DURATION_UNITS["d"]
MAX_LIST_ITEMS = 50
MAX_SECRET_LENGTH = 1024
# The shared secret's key in the operator's Juju secret.
TURN_SECRET_KEY = "shared-secret"  # noqa: S105 (a key name, not a secret)

# Always in url_preview_ip_range_blacklist: Synapse's own default blacklist for outbound
# requests (loopback, private, carrier-grade NAT, link-local, documentation, multicast,
# unique-local and site-local ranges) plus "this network". Synapse also blocks 0.0.0.0 and
# ::, and the IPv4-mapped IPv6 form of each IPv4 range.
URL_PREVIEW_BLACKLIST = (
    "0.0.0.0/8",
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
)


def _server_name(text: str) -> str:
    """A validated Matrix server name (state's parser, imported late: state imports us)."""
    from state import validate_server_name  # noqa: PLC0415 (state imports this module)

    return validate_server_name(text)


def _items(value: object) -> list[str]:
    """The items of a comma-separated option, at most MAX_LIST_ITEMS."""
    from state import split_list  # noqa: PLC0415 (state imports this module)

    if not isinstance(value, str):
        raise ValueError("must be a comma-separated string")
    items = split_list(value)
    if len(items) > MAX_LIST_ITEMS:
        raise ValueError(f"at most {MAX_LIST_ITEMS} items")
    return items


def parse_duration(value: object) -> str:
    """A duration such as 30d: digits then s, m, h, d, w or y (as Synapse's parse_duration)."""
    text = str(value).strip().lower()
    if not _DURATION.fullmatch(text):
        raise ValueError(f"{value!r} is not a duration such as 30d (digits, then s, m, h, d, w or y; m is minutes)")
    return text


def duration_seconds(text: str) -> int:
    """The seconds in a duration parse_duration accepted."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration")
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


def size_bytes(text: str) -> int:
    """The bytes in a size such as 10M (Synapse's parse_size: K, M, G, T are powers of 1024)."""
    match = _SIZE.fullmatch(text.strip().upper())
    if match is None:
        raise ValueError(f"{text!r} is not a size such as 10M (digits, then K, M, G or T)")
    return int(match.group(1)) * SIZE_UNITS[match.group(2)]


class RateLimit(BaseModel):
    """One of Synapse's rate limiters: tokens refilled per second, and the burst allowed."""

    model_config = ConfigDict(frozen=True)

    per_second: float = Field(gt=0, le=10000)
    burst_count: int = Field(ge=1, le=1000000)

    @classmethod
    def parse(cls, value: object) -> "RateLimit":
        """`<per_second>:<burst_count>`, e.g. 0.2:10."""
        if isinstance(value, RateLimit):
            return value
        text = str(value).strip()
        match = _RATE.fullmatch(text)
        if match is None:
            raise ValueError(f"{value!r} is not <per second>:<burst count>, e.g. 0.2:10")
        per_second, burst = float(match.group(1)), int(match.group(2))
        if not 0 < per_second <= 10000 or not 1 <= burst <= 1000000:
            raise ValueError(f"{value!r}: per second must be above 0 (at most 10000), burst count 1 to 1000000")
        return cls(per_second=per_second, burst_count=burst)

    def synapse(self) -> dict[str, float | int]:
        """Synapse's rate limiter settings."""
        return {"per_second": self.per_second, "burst_count": self.burst_count}


def _rate(per_second: float, burst_count: int) -> RateLimit:
    """A rate limit default."""
    return RateLimit(per_second=per_second, burst_count=burst_count)


RATE_LIMIT_OPTIONS = (
    "ratelimit_messages",
    "ratelimit_login_address",
    "ratelimit_login_account",
    "ratelimit_login_failed_attempts",
    "ratelimit_registration",
    "ratelimit_joins_local",
    "ratelimit_joins_remote",
    "ratelimit_invites_per_room",
    "ratelimit_invites_per_user",
    "ratelimit_invites_per_issuer",
)


class TurnOptions(BaseModel):
    """TURN for VoIP calls: Synapse hands clients time-limited credentials for these servers."""

    turn_uris: tuple[str, ...] = ()
    # The ID of the operator's Juju secret holding the shared secret (key `shared-secret`).
    turn_shared_secret: str = ""
    turn_user_lifetime: str = "1h"
    turn_allow_guests: bool = True

    @field_validator("turn_uris", mode="before")
    @classmethod
    def _turn_uris(cls, value: object) -> tuple[str, ...]:
        """Comma-separated turn:, turns:, stun: or stuns: URIs."""
        uris = []
        for item in _items(value):
            match = _TURN_URI.fullmatch(item)
            if match is None or (match.group(3) and match.group(1).startswith("stun")):
                raise ValueError(
                    f"{item!r} is not a TURN URI such as turn:turn.example.com:3478?transport=udp "
                    "(turn:, turns:, stun: or stuns:, a host, an optional port and transport)"
                )
            host = _server_name(match.group(2))
            uris.append(f"{match.group(1)}:{host}" + (f"?transport={match.group(3)}" if match.group(3) else ""))
        return tuple(dict.fromkeys(uris))

    @field_validator("turn_shared_secret", mode="before")
    @classmethod
    def _secret_id(cls, value: object) -> str:
        """A Juju secret ID, e.g. secret:cq9ml4fmp25c7ba0sg4g, or empty."""
        text = str(value).strip()
        if text and not re.fullmatch(r"(secret:)?(//[0-9a-f-]+/)?[0-9a-v]{20}", text):
            raise ValueError(f"{value!r} is not a Juju secret ID (secret:...), as `juju add-secret` prints it")
        return text

    @field_validator("turn_user_lifetime", mode="before")
    @classmethod
    def _turn_lifetime(cls, value: object) -> str:
        """How long the TURN credentials Synapse hands out are valid: 1m to 7d."""
        text = parse_duration(value)
        if not 60 <= duration_seconds(text) <= 7 * 86400:
            raise ValueError(f"{value!r} is out of range: use 1m to 7d")
        return text

    @model_validator(mode="after")
    def _turn_complete(self) -> typing.Self:
        """TURN needs both its servers and the shared secret."""
        if self.turn_uris and not self.turn_shared_secret:
            raise ValueError(
                "invalid config turn_uris: TURN needs the shared secret of its servers; store it with "
                f"`juju add-secret turn {TURN_SECRET_KEY}=<secret>`, `juju grant-secret turn {{app}}` and "
                "`juju config {app} turn_shared_secret=<secret ID>`"
            )
        if self.turn_shared_secret and not self.turn_uris:
            raise ValueError(
                "invalid config turn_shared_secret: it is set but turn_uris is empty; set the TURN servers with "
                "`juju config {app} turn_uris=turn:turn.example.com:3478?transport=udp`"
            )
        return self


class RateLimitOptions(BaseModel):
    """Synapse's rate limiters, `<per second>:<burst count>`, defaulting to Synapse's own values."""

    ratelimit_messages: RateLimit = _rate(0.2, 10)
    ratelimit_login_address: RateLimit = _rate(0.003, 5)
    ratelimit_login_account: RateLimit = _rate(0.003, 5)
    ratelimit_login_failed_attempts: RateLimit = _rate(0.17, 3)
    ratelimit_registration: RateLimit = _rate(0.17, 3)
    ratelimit_joins_local: RateLimit = _rate(0.1, 10)
    ratelimit_joins_remote: RateLimit = _rate(0.01, 10)
    ratelimit_invites_per_room: RateLimit = _rate(0.3, 10)
    ratelimit_invites_per_user: RateLimit = _rate(0.003, 5)
    ratelimit_invites_per_issuer: RateLimit = _rate(0.3, 10)

    @field_validator(*RATE_LIMIT_OPTIONS, mode="before")
    @classmethod
    def _rate_limit(cls, value: object) -> RateLimit:
        """`<per second>:<burst count>`."""
        return RateLimit.parse(value)


class UrlPreviewOptions(BaseModel):
    """URL previews: Synapse fetches linked pages, never from the blacklisted ranges."""

    enable_url_previews: bool = False
    url_preview_ip_range_blacklist: tuple[str, ...] = ()
    max_spider_size: str = "10M"

    @field_validator("url_preview_ip_range_blacklist", mode="before")
    @classmethod
    def _extra_blacklist(cls, value: object) -> tuple[str, ...]:
        """Comma-separated CIDRs blocked on top of the built-in private ranges."""
        networks = []
        for item in _items(value):
            try:
                networks.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not an IPv4/IPv6 CIDR such as 203.0.113.0/24") from None
        return tuple(network for network in dict.fromkeys(networks) if network not in URL_PREVIEW_BLACKLIST)

    @field_validator("max_spider_size", mode="before")
    @classmethod
    def _spider_size(cls, value: object) -> str:
        """The largest page Synapse downloads for a preview: 1K to 1G."""
        text = str(value).strip().upper()
        if not 1024 <= size_bytes(text) <= 1024**3:
            raise ValueError(f"{value!r} is out of range: use 1K to 1G")
        return text

    @property
    def url_preview_blacklist(self) -> list[str]:
        """The blacklist Synapse gets: the built-in ranges, then the operator's."""
        return [*URL_PREVIEW_BLACKLIST, *self.url_preview_ip_range_blacklist]


class RetentionOptions(BaseModel):
    """A default message retention policy and media retention; empty means keep forever."""

    retention_min_lifetime: str = ""
    retention_max_lifetime: str = ""
    media_retention_local_lifetime: str = ""
    media_retention_remote_lifetime: str = ""

    @field_validator(
        "retention_min_lifetime",
        "retention_max_lifetime",
        "media_retention_local_lifetime",
        "media_retention_remote_lifetime",
        mode="before",
    )
    @classmethod
    def _retention(cls, value: object) -> str:
        """Empty, or a duration of at least a day."""
        if str(value).strip() == "":
            return ""
        text = parse_duration(value)
        if duration_seconds(text) < MIN_RETENTION:
            raise ValueError(f"{value!r} is less than a day (m means minutes): use e.g. 1d, 4w or 1y")
        return text

    @model_validator(mode="after")
    def _min_below_max(self) -> typing.Self:
        """Synapse refuses a default policy whose minimum exceeds its maximum."""
        low, high = self.retention_min_lifetime, self.retention_max_lifetime
        if low and high and duration_seconds(low) > duration_seconds(high):
            raise ValueError(
                f"invalid config retention_min_lifetime={low}: it exceeds retention_max_lifetime={high}; fix it "
                "with `juju config {app} retention_min_lifetime=... retention_max_lifetime=...`"
            )
        return self

    @property
    def retention_policy(self) -> dict[str, str]:
        """Synapse's `retention.default_policy` (empty: retention off)."""
        policy = {"min_lifetime": self.retention_min_lifetime, "max_lifetime": self.retention_max_lifetime}
        return {key: value for key, value in policy.items() if value}

    @property
    def media_retention(self) -> dict[str, str]:
        """Synapse's `media_retention` (empty: media kept forever)."""
        lifetimes = {
            "local_media_lifetime": self.media_retention_local_lifetime,
            "remote_media_lifetime": self.media_retention_remote_lifetime,
        }
        return {key: value for key, value in lifetimes.items() if value}


class PolicyOptions(BaseModel):
    """Presence, remote room complexity, profiles, the room directory, contact, rooms and versions."""

    enable_presence: bool = True
    limit_remote_rooms_complexity: float = 0.0
    require_auth_for_profile_requests: bool = False
    allow_profile_lookup_over_federation: bool = True
    room_directory_publishers: tuple[str, ...] = ()
    admin_contact: str = ""
    auto_join_rooms: tuple[str, ...] = ()
    default_room_version: str = ""

    @field_validator("limit_remote_rooms_complexity", mode="before")
    @classmethod
    def _complexity(cls, value: object) -> float:
        """0 (off), or the complexity above which users may not join remote rooms (0.01 to 1000)."""
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number such as 1.0 (0 turns the limit off)") from None
        if not math.isfinite(number) or not (number == 0 or 0.01 <= number <= 1000):
            raise ValueError(f"{value!r} is out of range: use 0 (off) or 0.01 to 1000")
        return number

    @field_validator("room_directory_publishers", mode="before")
    @classmethod
    def _publishers(cls, value: object) -> tuple[str, ...]:
        """`*`, or comma-separated user IDs (@alice:example.com) or whole servers (@*:example.com)."""
        publishers = []
        for item in _items(value):
            if item == "*":
                publishers.append(item)
                continue
            local, sep, server = item.removeprefix("@").partition(":")
            if not item.startswith("@") or not sep or not (local == "*" or _LOCALPART.fullmatch(local)):
                raise ValueError(
                    f"{item!r} is not a user ID such as @alice:example.com, @*:example.com (a whole server) or *"
                )
            publishers.append(f"@{local}:{_server_name(server)}")
        return ("*",) if "*" in publishers else tuple(dict.fromkeys(publishers))

    @field_validator("admin_contact", mode="before")
    @classmethod
    def _contact(cls, value: object) -> str:
        """A mailto: address or an http(s) URL, shown to users in some errors."""
        text = str(value).strip()
        if not text:
            return ""
        if len(text) <= 2048 and text.startswith("mailto:") and _EMAIL.fullmatch(text.removeprefix("mailto:")):
            return text
        parts = urlsplit(text)
        if len(text) <= 2048 and _URL.fullmatch(text) and parts.scheme in ("http", "https") and parts.hostname:
            return text
        raise ValueError(f"{value!r} is not a mailto:admin@example.com address or an https:// URL")

    @field_validator("auto_join_rooms", mode="before")
    @classmethod
    def _rooms(cls, value: object) -> tuple[str, ...]:
        """Comma-separated room aliases (#room:example.com) new users join."""
        rooms = []
        for item in _items(value):
            local, sep, server = item.removeprefix("#").partition(":")
            if not item.startswith("#") or not sep or not _ALIAS_LOCALPART.fullmatch(local) or len(item) > 255:
                raise ValueError(f"{item!r} is not a room alias such as #welcome:example.com")
            rooms.append(f"#{local}:{_server_name(server)}")
        return tuple(dict.fromkeys(rooms))

    @field_validator("default_room_version", mode="before")
    @classmethod
    def _room_version(cls, value: object) -> str:
        """Empty (Synapse's default) or a stable room version."""
        text = str(value).strip()
        if text and text not in ROOM_VERSIONS:
            raise ValueError(f"{value!r} is not a stable room version ({ROOM_VERSIONS[0]} to {ROOM_VERSIONS[-1]})")
        return text

    @property
    def room_list_publication_rules(self) -> list[dict[str, str]]:
        """Synapse's rules: the listed users may publish, no one else."""
        return [
            {"user_id": user, "alias": "*", "room_id": "*", "action": "allow"}
            for user in self.room_directory_publishers
        ]


class ServerOptions(TurnOptions, RateLimitOptions, UrlPreviewOptions, RetentionOptions, PolicyOptions):
    """Every option group; `state.CharmConfig` inherits these fields."""


def read_turn_shared_secret(model: ops.Model, secret_id: str) -> str | None:
    """The TURN shared secret from the operator's Juju secret; InvalidStateError with the fix."""
    from state import InvalidStateError  # noqa: PLC0415 (state imports this module)

    if not secret_id:
        return None
    fix = f"`juju grant-secret {secret_id} {model.app.name}`"
    try:
        content = model.get_secret(id=secret_id).get_content(refresh=True)
    except ops.SecretNotFoundError:
        raise InvalidStateError(
            f"invalid config turn_shared_secret: secret {secret_id} does not exist or is not granted to this "
            f"application; create it with `juju add-secret turn {TURN_SECRET_KEY}=<secret>` and run {fix}"
        ) from None
    except ops.ModelError:
        raise InvalidStateError(
            f"invalid config turn_shared_secret: this application may not read secret {secret_id}; run {fix}"
        ) from None
    value = content.get(TURN_SECRET_KEY, "").strip()
    if not value or len(value) > MAX_SECRET_LENGTH or not value.isprintable():
        raise InvalidStateError(
            f"invalid config turn_shared_secret: secret {secret_id} needs a key {TURN_SECRET_KEY} holding the TURN "
            f"servers' shared secret (printable, 1 to {MAX_SECRET_LENGTH} characters); set it with "
            f"`juju update-secret {secret_id} {TURN_SECRET_KEY}=<secret>`"
        )
    return value
