"""Typed charm state: Juju config and relation data parsed into pydantic models, in one place.

Everything the charm renders comes from a `CharmState`. Bad input never reaches a
template: it raises `InvalidStateError`, whose message names the offending option and
says how to fix it, and the charm turns that into a Blocked status.
"""

import email.utils
import ipaddress
import re
import typing
from collections.abc import Mapping
from urllib.parse import urlsplit

import ops
import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config_options import ServerOptions, read_turn_shared_secret
from constants import DATABASE_CA_PATH, SAML_IDP_METADATA_PATH
from routing import ProxyRelations, Routing, RoutingError, resolve_routing
from topology import Topology

_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_PORT = re.compile(r"[0-9]{1,5}")
_SIZE = re.compile(r"([1-9][0-9]{0,15})([KMGT]?)")
# RFC 3986 characters (unreserved, reserved and percent-escapes), nothing else.
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
MAX_URL_LENGTH = 2048
SIZE_FACTORS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
# The largest size clients can handle exactly (JSON numbers are IEEE doubles): 8 PiB - 1 byte.
MAX_UPLOAD_BYTES = 2**53 - 1
# A SAML attribute name: a simple name or a URN/URI such as urn:oid:0.9.2342.19200300.100.1.1.
_SAML_ATTRIBUTE = re.compile(r"[A-Za-z0-9_.:/#-]{1,256}")
_BACKUP_SECRET_ID = re.compile(r"(secret:(//[A-Za-z0-9-]{1,64}/)?)?[a-z0-9]{20}")
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REGISTRATION_MODES = ("disabled", "token", "open")


class InvalidStateError(Exception):
    """Input the charm cannot act on; the message is shown to the operator as is."""


def quote_value(value: object, limit: int = 64) -> str:
    """`value` quoted for a status message, cut to about `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _check_port(port: str) -> None:
    """Raise ValueError unless `port` is a TCP port number."""
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{quote_value(port)} is not a port number (1-65535)")


def validate_ipv6(address: str) -> str:
    """Return `address` lower-cased if it is an IPv6 address Synapse accepts, or raise ValueError.

    Python's ipaddress also reads a scope (`fe80::1%eth0`), which Synapse's parser (netaddr)
    refuses in a server name or an IP range, and which means nothing off this host.
    """
    if "%" in address:
        raise ValueError(f"{quote_value(address)} has a scope (%...): use an address without one")
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        raise ValueError(f"{quote_value(address)} is not an IPv6 address") from None
    return address.lower()


def validate_network(item: str) -> str:
    """An IPv4/IPv6 CIDR (or address) normalised as Synapse's netaddr reads it, or ValueError."""
    try:
        if "%" in item:
            raise ValueError(item)
        return str(ipaddress.ip_network(item, strict=False))
    except ValueError:
        raise ValueError(f"{quote_value(item)} is not an IPv4/IPv6 CIDR such as 10.0.0.0/8") from None


def parse_size(text: str) -> int:
    """Bytes in a size such as 50M (K, M, G, T are powers of 1024), as Synapse reads it; ValueError otherwise."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"{quote_value(text)} is not a size such as 50M (digits, then K, M, G or T)")
    size = int(match[1]) * _SIZE_UNITS[match[2]]
    if size > MAX_UPLOAD_BYTES:
        raise ValueError(
            f"{quote_value(text)} is too large: at most {MAX_UPLOAD_BYTES // 1024**4}T ({MAX_UPLOAD_BYTES} bytes)"
        )
    return size


def validate_hostname(name: str) -> str:
    """Return `name` lower-cased if it is a DNS name, or raise ValueError."""
    if not name or len(name) > 253:
        raise ValueError(f"{quote_value(name)} is not a valid host name")
    labels = name.rstrip(".").split(".") if name != "." else [""]
    if not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{quote_value(name)} is not a valid host name")
    if len(labels) > 1 and labels[-1].isdigit():
        raise ValueError(f"{quote_value(name)} is not a valid host name (numeric top-level domain)")
    return name.rstrip(".").lower()


def validate_server_name(name: str) -> str:
    """Return a normalised Matrix server name (host[:port]), or raise ValueError.

    The host is a DNS name, an IPv4 address or a bracketed IPv6 address, as the Matrix
    specification's server-name grammar allows.
    """
    name = name.strip()
    if name.startswith("["):
        host, sep, rest = name[1:].partition("]")
        if not sep:
            raise ValueError(f"{quote_value(name)}: missing ']' after the IPv6 address")
        try:
            host = f"[{validate_ipv6(host)}]"
        except ValueError as exc:
            raise ValueError(f"{quote_value(name)}: {exc}") from None
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{quote_value(name)}: unexpected text after the IPv6 address")
            _check_port(rest[1:])
            return f"{host}{rest}"
        return host
    host, sep, port = name.partition(":")
    if sep:
        _check_port(port)
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{quote_value(name)}: {quote_value(host)} is not an IPv4 address") from None
    else:
        host = validate_hostname(host)
    return f"{host}:{port}" if sep else host


def validate_notif_from(value: str) -> None:
    """Raise ValueError unless Synapse accepts `value` as its email "From" and can fill in '%(app)s'."""
    if len(value) > 998 or any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError(f"{value!r} must be one line of at most 998 characters")
    try:
        formatted = value % {"app": "Matrix"}
    except (ValueError, TypeError, KeyError):
        raise ValueError(f"{value!r}: write '%' as '%%'; the only placeholder is '%(app)s'") from None
    address = email.utils.parseaddr(formatted)[1]
    if "@" not in address or address.startswith("@") or address.endswith("@"):
        raise ValueError(f'{value!r} is not an email address such as "Chat <noreply@chat.example.com>"')


def parse_public_url(value: str) -> str:
    """An absolute http(s) URL with a host (no credentials, query or fragment), ending with '/'; or ValueError."""
    value = value.strip()
    if len(value) > MAX_URL_LENGTH or not _URL_CHARS.fullmatch(value):
        raise ValueError(
            f"{quote_value(value)} is not a URL: use at most {MAX_URL_LENGTH} ASCII URL characters "
            "(percent-encode others)"
        )
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError(f"{quote_value(value)} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{quote_value(value)} must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{quote_value(value)} must not have credentials, a query or a fragment")
    host = parts.netloc.rpartition("@")[2]
    validate_server_name(host)
    return value if value.endswith("/") else value + "/"


def size_in_bytes(size: str) -> int:
    """A validated size (digits with an optional K/M/G/T suffix, powers of 1024 as Synapse counts) in bytes."""
    if size[-1] in SIZE_FACTORS:
        return int(size[:-1]) * SIZE_FACTORS[size[-1]]
    return int(size)


def split_list(value: str) -> list[str]:
    """Split a comma-separated option into its non-empty, stripped, unique items."""
    items: list[str] = []
    for raw in value.split(","):
        item = raw.strip()
        if item and item not in items:
            items.append(item)
    return items


class CharmConfig(ServerOptions):
    """The charm's Juju config, validated and normalised (the option groups of config_options too)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    server_name: str
    public_baseurl: str = ""
    report_stats: bool = False
    max_upload_size: str = "50M"
    federation_domain_whitelist: tuple[str, ...] = ()
    trusted_key_servers: tuple[str, ...] = ("matrix.org",)
    ip_range_whitelist: tuple[str, ...] = ()
    allow_public_rooms_over_federation: bool = False
    enable_room_list_search: bool = True
    block_non_admin_invites: bool = False
    log_level: str = "INFO"
    database_pool_min: int = Field(default=5, ge=1, le=100)
    database_pool_max: int = Field(default=10, ge=1, le=100)
    registration: str = "disabled"
    enable_registration_without_verification: bool = False
    allow_guest_access: bool = False
    notif_from: str = ""
    enable_email_notifs: bool = False
    enable_password_config: bool = True
    saml_localpart_attribute: str = "uid"
    backup_passphrase: str = ""

    @field_validator("backup_passphrase", mode="before")
    @classmethod
    def _backup_passphrase_id(cls, value: object) -> str:
        """Empty, or a Juju secret ID (secret:<id> or secret://<model>/<id>)."""
        text = str(value or "").strip()
        if text and not _BACKUP_SECRET_ID.fullmatch(text):
            raise ValueError(f"{text!r} is not a Juju secret ID such as secret:cs1bhhl2ug2c78e8erh0")
        return text

    @field_validator("server_name", mode="before")
    @classmethod
    def _server_name(cls, value: object) -> str:
        """A non-empty Matrix server name."""
        if not isinstance(value, str) or not value.strip():
            raise ValueError("it is required, e.g. chat.example.com")
        return validate_server_name(value)

    @field_validator("public_baseurl", mode="before")
    @classmethod
    def _public_baseurl(cls, value: object) -> str:
        """An absolute http(s) URL with a host, normalised to end with '/'."""
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return parse_public_url(value) if value.strip() else ""

    @field_validator("max_upload_size", mode="before")
    @classmethod
    def _size(cls, value: object) -> str:
        """A byte size with an optional K/M/G/T suffix, as Synapse parses it, of at most MAX_UPLOAD_BYTES."""
        if not isinstance(value, str):
            raise ValueError("must be a string such as 50M")
        text = value.strip().upper()
        parse_size(text)
        return text

    @field_validator("federation_domain_whitelist", "trusted_key_servers", mode="before")
    @classmethod
    def _server_list(cls, value: object) -> tuple[str, ...]:
        """Comma-separated Matrix server names."""
        if not isinstance(value, str):
            raise ValueError("must be a comma-separated string")
        return tuple(dict.fromkeys(validate_server_name(item) for item in split_list(value)))

    @field_validator("ip_range_whitelist", mode="before")
    @classmethod
    def _cidr_list(cls, value: object) -> tuple[str, ...]:
        """Comma-separated IPv4/IPv6 CIDRs, normalised."""
        if not isinstance(value, str):
            raise ValueError("must be a comma-separated string")
        return tuple(dict.fromkeys(validate_network(item) for item in split_list(value)))

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> str:
        """One of Python's logging level names."""
        text = str(value).strip().upper()
        if text not in LOG_LEVELS:
            raise ValueError(f"{quote_value(value)} is not one of {', '.join(LOG_LEVELS)}")
        return text

    @field_validator("registration", mode="before")
    @classmethod
    def _registration(cls, value: object) -> str:
        """One of the registration modes."""
        text = str(value).strip().lower()
        if text not in REGISTRATION_MODES:
            raise ValueError(f"{quote_value(value)} is not one of {', '.join(REGISTRATION_MODES)}")
        return text

    @field_validator("notif_from", mode="before")
    @classmethod
    def _notif_from(cls, value: object) -> str:
        """Empty (the default), or a "Name <address>" / address that Synapse can format and send from."""
        if not isinstance(value, str):
            raise ValueError("must be a string")
        value = value.strip()
        if value:
            validate_notif_from(value)
        return value

    @field_validator("saml_localpart_attribute", mode="before")
    @classmethod
    def _saml_attribute(cls, value: object) -> str:
        """A SAML attribute name."""
        text = str(value).strip()
        if not _SAML_ATTRIBUTE.fullmatch(text):
            raise ValueError(f"{value!r} is not a SAML attribute name such as uid (letters, digits, _ . : / # -)")
        return text

    @model_validator(mode="after")
    def _open_registration_acknowledged(self) -> "CharmConfig":
        """Open registration without verification must be an explicit choice."""
        if self.registration == "open" and not self.enable_registration_without_verification:
            raise ValueError(
                "invalid config registration=open: it lets anyone create accounts without email or captcha "
                "verification; to accept that, run `juju config {app} enable_registration_without_verification=true`"
                ", or use `juju config {app} registration=token`"
            )
        return self

    @model_validator(mode="after")
    def _pool_bounds(self) -> "CharmConfig":
        """The connection pool's minimum cannot exceed its maximum."""
        if self.database_pool_min > self.database_pool_max:
            raise ValueError(
                f"invalid config database_pool_min={self.database_pool_min}: it exceeds database_pool_max="
                f"{self.database_pool_max}; fix it with "
                "`juju config {app} database_pool_min=... database_pool_max=...`"
            )
        return self

    @model_validator(mode="after")
    def _default_baseurl(self) -> "CharmConfig":
        """public_baseurl defaults to https://<server_name>/."""
        if not self.public_baseurl:
            object.__setattr__(self, "public_baseurl", f"https://{self.server_name}/")
        return self

    @model_validator(mode="after")
    def _default_notif_from(self) -> "CharmConfig":
        """notif_from defaults to "%(app)s <noreply@<server_name's host>>"."""
        if not self.notif_from:
            host = urlsplit(f"//{self.server_name}").hostname or self.server_name
            domain = f"[{host}]" if ":" in host or re.fullmatch(r"[0-9.]+", host) else host
            object.__setattr__(self, "notif_from", f"%(app)s <noreply@{domain}>")
        return self

    @classmethod
    def from_juju(cls, config: Mapping[str, typing.Any], app_name: str) -> "CharmConfig":
        """Parse Juju config, raising InvalidStateError naming the option and the fix."""
        try:
            return cls.model_validate(dict(config))
        except pydantic.ValidationError as exc:
            error = exc.errors()[0]
            reason = str(error["msg"]).removeprefix("Value error, ")
            if not error["loc"]:  # a rule across options: the message is complete
                raise InvalidStateError(reason.replace("{app}", app_name)) from None
            option = str(error["loc"][0])
            raise InvalidStateError(
                f"invalid config {option}: {reason}; fix it with `juju config {app_name} {option}=...`"
            ) from None


# libpq keepalive settings: notice a dead primary within about a minute.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 10, "keepalives_count": 3}


class DatabaseEndpoint(BaseModel):
    """Where and as whom Synapse connects to PostgreSQL."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int = Field(ge=1, le=65535)
    user: str
    password: str = Field(repr=False)
    database: str
    tls: bool = False
    tls_ca: str | None = Field(default=None, repr=False)
    read_only_hosts: tuple[str, ...] = ()
    version: str | None = None
    # Synapse's database.allow_unsafe_locale: set for a database with collation C and ctype
    # C.UTF-8 (see workload/postgres_setup.py).
    allow_unsafe_locale: bool = False

    def describe(self) -> str:
        """A loggable description, without the password."""
        return f"{self.user}@{format_host_port(self.host, self.port)}/{self.database}" + (" (TLS)" if self.tls else "")

    def synapse_args(self, cp_min: int, cp_max: int, sslrootcert: str | None = None) -> dict[str, str | int]:
        """Synapse's psycopg2 `database.args`.

        With TLS, `sslrootcert` (a path to the provider's CA in the container) makes libpq
        verify the server certificate; without it the connection is encrypted only.
        """
        args: dict[str, str | int] = {
            "user": self.user,
            "password": self.password,
            "dbname": self.database,
            "host": self.host,
            "port": self.port,
            "cp_min": cp_min,
            "cp_max": cp_max,
            **KEEPALIVES,
        }
        if self.tls:
            args["sslmode"] = "verify-ca" if sslrootcert else "require"
            if sslrootcert:
                args["sslrootcert"] = sslrootcert
        return args


class SmtpEndpoint(BaseModel):
    """The SMTP server smtp-integrator provides; only encrypted, authenticated set-ups get here."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int = Field(ge=1, le=65535)
    user: str
    password: str = Field(repr=False)
    # starttls: plain connection upgraded with STARTTLS (required); tls: implicit TLS from the start.
    transport_security: typing.Literal["starttls", "tls"]

    def synapse_email(self, config: CharmConfig) -> dict[str, typing.Any]:
        """Synapse's `email` section; the server certificate is always verified against the trust store."""
        section: dict[str, typing.Any] = {
            "smtp_host": self.host,
            "smtp_port": self.port,
            "smtp_user": self.user,
            "smtp_pass": self.password,
            "enable_tls": True,
        }
        if self.transport_security == "tls":
            section["force_tls"] = True
        else:
            section["require_transport_security"] = True
        section["notif_from"] = config.notif_from
        section["enable_notifs"] = config.enable_email_notifs
        return section


class SamlService(BaseModel):
    """One IdP endpoint saml-integrator sends (e.g. single_sign_on_service over HTTP-Redirect)."""

    model_config = ConfigDict(frozen=True)

    name: str
    binding: str
    url: str
    response_url: str | None = None


class SamlProvider(BaseModel):
    """The SAML identity provider saml-integrator describes."""

    model_config = ConfigDict(frozen=True)

    entity_id: str
    metadata_url: str | None = None
    certificates: tuple[str, ...] = ()
    services: tuple[SamlService, ...] = ()

    def synapse_saml2(self, config: CharmConfig) -> dict[str, typing.Any]:
        """Synapse's `saml2_config`: the IdP metadata, our entity ID and the localpart attribute."""
        metadata = (
            {"remote": [{"url": self.metadata_url}]} if self.metadata_url else {"local": [str(SAML_IDP_METADATA_PATH)]}
        )
        return {
            "sp_config": {"entityid": config.public_baseurl, "metadata": metadata, "allow_unknown_attributes": True},
            "idp_entityid": self.entity_id,
            "user_mapping_provider": {"config": {"mxid_source_attribute": config.saml_localpart_attribute}},
        }


def format_host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class AppserviceFile(BaseModel):
    """An appservice registration Synapse loads (validated by relations/matrix_auth.py); it holds tokens."""

    model_config = ConfigDict(frozen=True)

    path: str
    content: str = Field(repr=False)


def _routing_of_config(config: CharmConfig) -> Routing:
    """The routing of config.public_baseurl with no proxy related."""
    try:
        return resolve_routing(config.server_name, config.public_baseurl, ProxyRelations())
    except ValueError:  # a config no validator made (tests of the template itself)
        return Routing(public_baseurl=config.public_baseurl)


class Workers(BaseModel):
    """Synapse as several processes: where each one runs, and the Redis they replicate through."""

    model_config = ConfigDict(frozen=True)

    topology: Topology
    # Synapse's `redis` section (it may hold Redis's password).
    redis: dict[str, str | int | bool] = Field(repr=False)

    @property
    def active(self) -> bool:
        """Whether any worker runs (else the main runs alone, as without this)."""
        return bool(self.topology.workers)


class CharmState(BaseModel):
    """Everything the workload configuration is rendered from."""

    model_config = ConfigDict(frozen=True)

    config: CharmConfig
    # PostgreSQL to run on (with the database Synapse uses, which may be the C-collated one the
    # charm created); None means the embedded SQLite database.
    database: DatabaseEndpoint | None = None
    # The related SMTP server (email section) and SAML identity provider (saml2_config), if any.
    smtp: SmtpEndpoint | None = None
    saml: SamlProvider | None = None
    # Registrations of the bridges related on matrix-auth, in relation order.
    appservices: tuple[AppserviceFile, ...] = ()
    # The TURN servers' shared secret, from the operator's Juju secret (None: no TURN).
    turn_shared_secret: str | None = Field(default=None, repr=False)
    # public_baseurl (also in config.public_baseurl), proxies and delegation; see routing.py.
    # Left out, it is what config alone gives (no proxy related).
    routing: Routing = Field(default_factory=lambda data: _routing_of_config(data["config"]))
    # The media relation's bucket: Synapse stores media there too (synapse-s3-storage-provider).
    media_storage: "S3Connection | None" = None
    # The processes of a multi-unit deployment (None: this unit runs the only Synapse process).
    workers: Workers | None = None

    @classmethod
    def from_charm(
        cls,
        charm: ops.CharmBase,
        database: DatabaseEndpoint | None = None,
        proxies: ProxyRelations | None = None,
    ) -> "CharmState":
        """Build the state from the charm's inputs, or raise InvalidStateError.

        `config.public_baseurl` is the effective URL: the option, else what the proxies give.
        """
        config = CharmConfig.from_juju(charm.config, charm.app.name)
        turn_secret = read_turn_shared_secret(charm.model, config.turn_shared_secret)
        configured_url = config.public_baseurl if str(charm.config.get("public_baseurl") or "").strip() else ""
        try:
            routing = resolve_routing(config.server_name, configured_url, proxies or ProxyRelations())
        except RoutingError as exc:
            raise InvalidStateError(str(exc).replace("{app}", charm.app.name)) from None
        config = config.model_copy(update={"public_baseurl": routing.public_baseurl})
        return cls(config=config, database=database, routing=routing, turn_shared_secret=turn_secret)

    @property
    def proxied(self) -> bool:
        """Whether a reverse proxy is related (Synapse trusts its X-Forwarded-* headers)."""
        return self.routing.proxied

    @property
    def serve_server_wellknown(self) -> bool:
        """Whether Synapse serves /.well-known/matrix/server (its server_name host is routed to it)."""
        return self.routing.serve_server_wellknown

    def database_args(self) -> dict[str, str | int] | None:
        """Synapse's psycopg2 `database.args`, or None on SQLite."""
        if self.database is None:
            return None
        ca_path = str(DATABASE_CA_PATH) if self.database.tls_ca else None
        return self.database.synapse_args(self.config.database_pool_min, self.config.database_pool_max, ca_path)

    def email_config(self) -> dict[str, typing.Any] | None:
        """Synapse's `email` section, or None without an SMTP relation."""
        return self.smtp.synapse_email(self.config) if self.smtp else None

    def saml2_config(self) -> dict[str, typing.Any] | None:
        """Synapse's `saml2_config` section, or None without a SAML relation."""
        return self.saml.synapse_saml2(self.config) if self.saml else None


class DatabaseRecord(BaseModel):
    """The leader's peer-data record of the PostgreSQL database the application runs on.

    `source` identifies the relation (`<endpoint>:<relation id>`); `use` is the database
    Synapse connects to (the provider's, or the C-collated one the charm created), and
    `allow_unsafe_locale` whether its ctype is C.UTF-8; `state` is `ready` once any SQLite
    data was ported, `port-failed` (with `reason`) otherwise.
    """

    model_config = ConfigDict(frozen=True)

    source: str
    use: str = ""
    state: typing.Literal["ready", "port-failed"]
    reason: str = ""
    allow_unsafe_locale: bool = False

    @classmethod
    def from_peer_data(cls, raw: str | None) -> "DatabaseRecord | None":
        """Parse the peer-data value; None if absent or unreadable."""
        if not raw:
            return None
        try:
            return cls.model_validate_json(raw)
        except pydantic.ValidationError:
            return None


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[A-Za-z0-9-]{1,64}")


class S3Connection(BaseModel):
    """An S3 bucket and the credentials to reach it, as an `s3` relation provides them.

    `endpoint` is an http(s) URL ('' means AWS for `region`); `path` a key prefix ('' or ending
    with '/'); `uri_style` 'path' (bucket in the path) or 'host' (bucket in the host name).
    """

    model_config = ConfigDict(frozen=True)

    access_key: str = Field(min_length=1, max_length=256, repr=False)
    secret_key: str = Field(min_length=1, max_length=256, repr=False)
    bucket: str
    endpoint: str = ""
    region: str = "us-east-1"
    path: str = ""
    uri_style: typing.Literal["path", "host"] = "path"
    ca_chain: tuple[str, ...] = Field(default=(), repr=False)

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        """An S3 bucket name (3-63 lower-case letters, digits, dots, hyphens)."""
        if not _BUCKET.fullmatch(value):
            raise ValueError(f"{value!r} is not an S3 bucket name")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        """An http(s) URL with a host and no credentials, query or fragment."""
        value = value.strip()
        if not value:
            return ""
        if "://" not in value:
            value = "https://" + value
        if len(value) > MAX_URL_LENGTH or not _URL_CHARS.fullmatch(value):
            raise ValueError(f"{value!r} is not a URL")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"{value!r} must not have credentials, a query or a fragment")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"{value!r} has an invalid port") from None
        return value.rstrip("/")

    @field_validator("region", mode="before")
    @classmethod
    def _region(cls, value: object) -> str:
        """A region name such as us-east-1; empty means us-east-1."""
        text = str(value or "").strip() or "us-east-1"
        if not _REGION.fullmatch(text):
            raise ValueError(f"{text!r} is not a region name")
        return text

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: object) -> str:
        """A key prefix without leading slash, ending with '/' unless empty."""
        text = str(value or "").strip().strip("/")
        if len(text) > 512 or any(ord(char) < 0x20 or char == "\x7f" for char in text):
            raise ValueError("must be at most 512 printable characters")
        if any(part in ("", ".", "..") for part in text.split("/")) and text:
            raise ValueError(f"{text!r} has an empty, '.' or '..' segment")
        return text + "/" if text else ""

    @field_validator("uri_style", mode="before")
    @classmethod
    def _uri_style(cls, value: object) -> str:
        """'path' or 'host'; empty means path."""
        return str(value or "").strip().lower() or "path"

    def synapse_provider_config(self) -> dict[str, str]:
        """synapse-s3-storage-provider's `config` for this bucket."""
        config = {
            "bucket": self.bucket,
            "region_name": self.region,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            "prefix": self.path,
        }
        if self.endpoint:
            config["endpoint_url"] = self.endpoint
        return config

    def script_config(self) -> dict[str, typing.Any]:
        """What the in-container backup script needs to reach the bucket (sent on stdin)."""
        return {
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "bucket": self.bucket,
            "endpoint": self.endpoint,
            "region": self.region,
            "uri_style": self.uri_style,
            "ca_chain": list(self.ca_chain),
        }


CharmState.model_rebuild()
