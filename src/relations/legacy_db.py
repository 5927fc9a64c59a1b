"""The legacy `db` relation (interface pgsql), through ops-lib-pgsql.

The library keeps its own bookkeeping (it mirrors our request into unit data and
leadership settings and emits events such as `master_changed`); this module gives it the
same shape as `database.DatabaseRequires`: the leader's `publish_request` writes the
request only when it differs, and `endpoint` reads the ready `master` connection string
and returns a `DatabaseEndpoint`. Neither sets a status or defers.

The charm must create this object in `__init__` (the library observes relation events)
and reconcile on the library's events listed in `events`.
"""

import logging

import ops
import pgsql
import pgsql.client
import yaml

from constants import LEGACY_DB_ENDPOINT, PEER_RELATION
from relations._common import parse_port, validate_host
from relations.database import TLS_SSLMODES, DatabaseEndpoint, RequirerEndpoint, format_host_port
from state import InvalidStateError

logger = logging.getLogger(__name__)


# The pgsql protocol's `roles`: postgresql-k8s grants these to our user; CREATEDB lets
# the charm create a correctly collated database itself.
LEGACY_ROLES = "CREATEDB"
DEFAULT_PORT = "5432"
_REQUIRED_KEYS = ("host", "dbname", "user", "password")


def parse_conninfo(text: str) -> dict[str, str]:
    """Parse a libpq `keyword=value ...` connection string, or raise ValueError.

    Values may be single-quoted (for spaces or empty values); a backslash escapes the next
    character, as libpq allows both inside and outside quotes. A repeated keyword wins.
    """
    result: dict[str, str] = {}
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos].isspace():
            pos += 1
        if pos >= end:
            return result
        start = pos
        while pos < end and not text[pos].isspace() and text[pos] != "=":
            pos += 1
        keyword = text[start:pos]
        if not keyword.isidentifier():
            # Never echo the text: it may be a fragment of the password.
            raise ValueError(f"expected keyword=value at character {start + 1}")
        while pos < end and text[pos].isspace():
            pos += 1
        if pos >= end or text[pos] != "=":
            raise ValueError(f"expected '=' after the keyword at character {start + 1}")
        pos += 1
        while pos < end and text[pos].isspace():
            pos += 1
        value, pos = _conninfo_value(text, pos, keyword)
        result[keyword] = value


def _conninfo_value(text: str, pos: int, keyword: str) -> tuple[str, int]:
    """The value starting at `pos` and the position after it."""
    quoted = pos < len(text) and text[pos] == "'"
    if quoted:
        pos += 1
    chars: list[str] = []
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            if pos + 1 >= len(text):
                raise ValueError(f"the value of {keyword!r} ends with a lone backslash")
            chars.append(text[pos + 1])
            pos += 2
            continue
        if quoted and char == "'":
            pos += 1
            if pos < len(text) and not text[pos].isspace():
                raise ValueError(f"unexpected text after the quoted value of {keyword!r}")
            return "".join(chars), pos
        if not quoted and char.isspace():
            break
        chars.append(char)
        pos += 1
    if quoted:
        raise ValueError(f"the quoted value of {keyword!r} is not terminated")
    return "".join(chars), pos


def endpoint_from_conninfo(conninfo: str, read_only_hosts: tuple[str, ...] = ()) -> DatabaseEndpoint:
    """A DatabaseEndpoint from a libpq connection string, or ValueError (never echoing the password)."""
    params = parse_conninfo(conninfo)
    missing = [key for key in _REQUIRED_KEYS if not params.get(key)]
    if missing:
        raise ValueError(f"the connection string lacks {', '.join(missing)}")
    host = validate_host(params["host"])
    port = parse_port(params.get("port") or DEFAULT_PORT)
    return DatabaseEndpoint(
        host=host,
        port=port,
        user=params["user"],
        password=params["password"],
        database=params["dbname"],
        tls=params.get("sslmode", "") in TLS_SSLMODES,
        read_only_hosts=read_only_hosts,
    )


def _standby_host(conninfo: str) -> str:
    """`host:port` of a standby connection string, or ValueError."""
    params = parse_conninfo(conninfo)
    if not params.get("host"):
        raise ValueError("a standby connection string lacks host")
    return format_host_port(validate_host(params["host"]), parse_port(params.get("port") or DEFAULT_PORT))


class LegacyDatabaseRequires(RequirerEndpoint):
    """Requirer side of the legacy pgsql endpoint (limit 1), wrapping pgsql.PostgreSQLClient."""

    def __init__(self, charm: ops.CharmBase, endpoint: str = LEGACY_DB_ENDPOINT):
        super().__init__(charm, endpoint)
        # The library shares the leader's request with the other units through Juju leadership
        # settings, i.e. the leader-get/leader-set hook tools, which are deprecated and absent
        # from newer Juju (and it calls them on every leader event, related or not). Keep that
        # data in our peer relation's application data instead, as the library's own TODO says.
        pgsql.client._leader_get = self._shared_get
        pgsql.client._leader_set = self._shared_set
        self.client = pgsql.PostgreSQLClient(charm, endpoint)

    def _shared_databag(self) -> ops.RelationDataContent | None:
        """Our peer relation's application databag, if the peer relation exists yet."""
        relation = self.charm.model.get_relation(PEER_RELATION)
        return relation.data[self.charm.app] if relation is not None else None

    def _shared_get(self, attribute: str) -> str | None:
        """What `leader-get ATTRIBUTE` would answer, from peer application data."""
        databag = self._shared_databag()
        return databag.get(attribute) if databag is not None else None

    def _shared_set(self, settings: dict[str, str]) -> None:
        """What `leader-set KEY=VALUE...` would store (the leader only; only changed keys)."""
        databag = self._shared_databag()
        if databag is None or not self.charm.unit.is_leader():
            return
        for key, raw in settings.items():
            value = raw if raw and _yaml_nonempty(raw) else ""  # an empty mapping shares nothing
            if (databag.get(key) or "") == value:
                continue
            if value:
                databag[key] = value
            else:
                del databag[key]

    @property
    def events(self) -> tuple[ops.BoundEvent, ...]:
        """The library's events after which the charm should reconcile.

        `database_relation_joined` is when to publish the request, `master_changed` fires
        whenever the ready master appears, changes or goes, and `database_relation_broken`
        when the relation is removed.
        """
        on = self.client.on
        return (on.database_relation_joined, on.master_changed, on.database_relation_broken)

    def publish_request(self, database_name: str) -> bool:
        """Ask for `database_name` with the CREATEDB role (leader only); return whether anything changed.

        Only differing keys are written, and only then does the library mirror them to the
        unit databag and leadership settings, so a no-op writes nothing.
        """
        if not database_name:
            raise ValueError("database_name must not be empty")
        changed = self._write_request({"database": database_name, "roles": LEGACY_ROLES})
        if changed:
            # The library's own sync: unit databag for old servers, leadership settings so
            # that non-leaders can tell whether the server has acted on the request.
            self.client._mirror_appdata()
        return changed

    def endpoint(self) -> DatabaseEndpoint | None:
        """The ready master as a DatabaseEndpoint; None until the server has granted our request.

        Ready means (as the library decides) that the server mirrored our database and
        roles and allows our egress subnet. Raises InvalidStateError on malformed data.
        """
        relation = self._single_relation()
        if relation is None:
            return None
        provider = relation.app.name if relation.app else "the PostgreSQL application"
        master = pgsql.client._master(self.client.log, relation, self.charm.unit)
        if not master:
            return None
        try:
            standbys = pgsql.client._standbys(self.client.log, relation, self.charm.unit)
            read_only = tuple(_standby_host(conninfo) for conninfo in standbys)
            return endpoint_from_conninfo(master, read_only)
        except ValueError as exc:
            raise InvalidStateError(
                f"{provider} sent an invalid connection string on the {self.endpoint_name} relation: {exc}; "
                f"check `juju status {provider}`"
            ) from None


def _yaml_nonempty(text: str) -> bool:
    """Whether a YAML document holds anything (the library writes `{}` when it has nothing)."""
    try:
        return bool(yaml.safe_load(text))
    except yaml.YAMLError:
        return True
