"""The `database` relation: our requirer of the postgresql_client "v0" wire format.

The leader asks for a database (`publish_request`); every unit reads the provider's
answer (`endpoint`). Neither sets a status or defers: the charm's reconcile calls both
and turns `InvalidStateError` into Blocked and `None` into Waiting.

Keys we write (app databag): `database`, `extra-user-roles`, `requested-secrets`.
Keys we read (provider's app databag): `endpoints`, `read-only-endpoints`, `database`,
`version`, plain `username`/`password` or `secret-user`, plain `tls`/`tls-ca` or
`secret-tls`.
"""

import ipaddress
import json
import logging

import ops

from constants import DATABASE_ENDPOINT
from relations._common import SingleRelationRequirer, parse_flag, parse_port, read_secret, validate_host
from state import DatabaseEndpoint, InvalidStateError, format_host_port

__all__ = [
    "DatabaseEndpoint",
    "DatabaseRequires",
    "RequirerEndpoint",
    "format_host_port",
    "parse_flag",
    "parse_port",
    "read_secret",
    "validate_host",
]

logger = logging.getLogger(__name__)


# `createdb` lets the charm create a C-collated database itself when the provided one is not.
# Lower case: postgresql-k8s 16 accepts exactly `createdb` (it makes the user a member of
# charmed_databases_owner, which has CREATEDB); 14 lower-cases the list and sets the attribute.
REQUESTED_ROLES = "createdb"
REQUESTED_SECRETS = ("username", "password", "tls", "tls-ca", "uris")
DEFAULT_POSTGRES_PORT = 5432
TLS_SSLMODES = ("require", "verify-ca", "verify-full")


def parse_host_port(text: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 as `[addr]:port`), validating both, or raise ValueError."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{text!r} is not [IPv6 address]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        return str(ipaddress.IPv6Address(host)), parse_port(rest[1:])
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} has no port (expected host:port)")
    if not host:
        raise ValueError(f"{text!r} has no host (expected host:port)")
    return validate_host(host), parse_port(port)


def parse_endpoint_list(text: str) -> list[tuple[str, int]]:
    """A comma-separated `host:port` list with at least one entry, or ValueError."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"{text!r} lists no host:port")
    return [parse_host_port(item) for item in items]


class RequirerEndpoint(SingleRelationRequirer):
    """Bookkeeping shared by the PostgreSQL requirers: one endpoint, limit 1."""

    @property
    def relations(self) -> list[ops.Relation]:
        """The established relations on the endpoint (a broken one is already left out)."""
        return list(self.charm.model.relations[self.endpoint_name])

    def is_related(self) -> bool:
        """Whether a PostgreSQL application is related on this endpoint."""
        return bool(self.relations)

    def _single_relation(self) -> ops.Relation | None:
        """The one relation, None without one, InvalidStateError with several."""
        relations = self.relations
        if len(relations) > 1:
            apps = ", ".join(sorted(rel.app.name for rel in relations if rel.app))
            raise InvalidStateError(
                f"the {self.endpoint_name} endpoint is related to several applications ({apps}); "
                f"keep one with `juju remove-relation {self.charm.app.name}:{self.endpoint_name} <app>`"
            )
        return relations[0] if relations else None

    def _write_request(self, wanted: dict[str, str]) -> bool:
        """Write the keys of `wanted` that differ into our app databags (the leader); return whether any did.

        Nothing is written when the databags already hold the request, so a reconcile that
        changes nothing causes no relation-changed event on the provider.
        """
        if not self.charm.unit.is_leader():
            return False
        changed = False
        for relation in self.relations:
            databag = relation.data[self.charm.app]
            updates = {key: value for key, value in wanted.items() if not _same_value(key, databag.get(key), value)}
            if updates:
                logger.info("requesting database %r on relation %s", wanted.get("database"), relation.id)
                databag.update(updates)
                changed = True
        return changed


class DatabaseRequires(RequirerEndpoint):
    """Requirer side of one postgresql_client endpoint (limit 1)."""

    def __init__(self, charm: ops.CharmBase, endpoint: str = DATABASE_ENDPOINT):
        super().__init__(charm, endpoint)

    def publish_request(self, database_name: str) -> bool:
        """Ask the provider for `database_name` (leader only); return whether anything was written."""
        if not database_name:
            raise ValueError("database_name must not be empty")
        return self._write_request(
            {
                "database": database_name,
                "extra-user-roles": REQUESTED_ROLES,
                "requested-secrets": json.dumps(list(REQUESTED_SECRETS)),
            }
        )

    def endpoint(self, default_database: str | None = None) -> DatabaseEndpoint | None:
        """The provider's answer, None until it has sent credentials and endpoints.

        `default_database` is used when the provider does not echo the database name.
        Raises InvalidStateError, with a message for the operator, on malformed data.
        """
        relation = self._single_relation()
        if relation is None or relation.app is None:
            return None
        provider = relation.app.name
        data = relation.data[relation.app]
        hosts = self._parse_hosts(data, "endpoints", provider)
        read_only = self._parse_hosts(data, "read-only-endpoints", provider, allow_empty=True)
        credentials = self._credentials(data, provider)
        if hosts is None or credentials is None:
            return None
        database = data.get("database") or default_database
        if not database:
            raise InvalidStateError(
                f"{provider} sent credentials but no database name on the {self.endpoint_name} relation; "
                f"check `juju status {provider}`"
            )
        tls, tls_ca = self._tls(data, provider)
        host, port = hosts[0]
        return DatabaseEndpoint(
            host=host,
            port=port,
            user=credentials[0],
            password=credentials[1],
            database=database,
            tls=tls,
            tls_ca=tls_ca,
            read_only_hosts=tuple(format_host_port(*item) for item in read_only or []),
            version=data.get("version") or None,
        )

    def _parse_hosts(
        self, data: ops.RelationDataContent, key: str, provider: str, allow_empty: bool = False
    ) -> list[tuple[str, int]] | None:
        """The `host:port` list under `key`, None if absent, InvalidStateError if malformed.

        With `allow_empty`, a blank list means none (read-only replicas may be absent).
        """
        raw = data.get(key)
        if raw is None or (allow_empty and not raw.replace(",", "").strip()):
            return None
        try:
            return parse_endpoint_list(raw)
        except ValueError as exc:
            raise InvalidStateError(
                f"{provider} sent invalid {key} on the {self.endpoint_name} relation: {exc}; "
                f"check `juju status {provider}`"
            ) from None

    def _credentials(self, data: ops.RelationDataContent, provider: str) -> tuple[str, str] | None:
        """(username, password) from `secret-user` or plain keys; None if not sent yet."""
        secret_uri = data.get("secret-user")
        if secret_uri:
            content = read_secret(self.charm.model, secret_uri, "database credentials", provider)
            source = "the credentials secret"
        elif "username" in data or "password" in data:
            content = {key: data.get(key, "") for key in ("username", "password")}
            source = "the relation data"
        else:
            return None
        missing = [key for key in ("username", "password") if not content.get(key)]
        if missing:
            raise InvalidStateError(
                f"{source} from {provider} lacks {' and '.join(missing)}; remove and re-add the "
                f"{self.endpoint_name} relation"
            )
        return content["username"], content["password"]

    def _tls(self, data: ops.RelationDataContent, provider: str) -> tuple[bool, str | None]:
        """(TLS offered, CA certificate) from `secret-tls` or plain `tls`/`tls-ca`."""
        secret_uri = data.get("secret-tls")
        if secret_uri:
            content = read_secret(self.charm.model, secret_uri, "TLS", provider)
        else:
            content = {key: data[key] for key in ("tls", "tls-ca") if key in data}
        tls_ca = content.get("tls-ca") or None
        flag = content.get("tls")
        if flag is None:
            return tls_ca is not None, tls_ca
        try:
            return parse_flag(flag), tls_ca
        except ValueError as exc:
            raise InvalidStateError(
                f"{provider} sent an invalid tls flag on the {self.endpoint_name} relation: {exc}"
            ) from None


def _same_value(key: str, current: str | None, wanted: str) -> bool:
    """Whether a databag value already says `wanted` (JSON lists compare by content)."""
    if current is None:
        return False
    if key == "requested-secrets":
        try:
            return json.loads(current) == json.loads(wanted)
        except json.JSONDecodeError:
            return False
    return current == wanted
