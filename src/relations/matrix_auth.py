"""The `matrix-auth` relation: bridges get the homeserver and its shared secret; their appservices load.

Provider side of the matrix_auth interface, built on our library `charms.synapse.v1.matrix_auth`
(which owns the wire format). Any number of bridges relate.

- The leader publishes, on every relation, `homeserver` (public_baseurl without its trailing
  slash), `shared_secret_id` and `encryption_key_secret_id`. The two Juju secrets are created
  once and the same ones are granted to every relation; their IDs are also kept in peer app
  data, so a new leader (and the non-leaders) find the same secrets: the encryption key is never
  regenerated.
- Every unit decrypts each bridge's `registration_secret`, validates it as an appservice
  registration (what Synapse's own loader requires, and ids and as_tokens unique across
  relations) and renders it as /data/appservices/matrix-auth-<relation id>.yaml. A bad
  registration is left out and reported (`MatrixAuthState.rejected`); the others load.

Registrations hold the appservices' tokens: they are never logged, and no message here quotes them.
"""

import ipaddress
import logging
import re
import typing
from urllib.parse import urlsplit

import ops
import yaml
from charms.synapse.v1 import matrix_auth as lib
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictBool, StrictStr, ValidationError, field_validator

from constants import (
    ADMIN_LOCALPART,
    APPSERVICES_DIR,
    MATRIX_AUTH_ENDPOINT,
    PEER_MATRIX_AUTH_KEY_ID,
    PEER_MATRIX_AUTH_SHARED_SECRET_ID,
    PEER_RELATION,
)
from state import AppserviceFile

logger = logging.getLogger(__name__)

MAX_REGISTRATION_BYTES = 64 * 1024
MAX_REASON_LENGTH = 200
# A localpart Synapse accepts for an appservice sender: the Matrix user-ID grammar, limited to the
# characters that URL-quoting leaves as they are (Synapse refuses the others).
_LOCALPART = re.compile(r"[a-z0-9._/-]{1,255}")
# Tokens travel in HTTP headers: printable ASCII, no spaces.
_TOKEN = re.compile(r"[\x21-\x7e]{1,512}")
_ID = re.compile(r"[^|\x00-\x1f\x7f]{1,255}")


class RegistrationError(ValueError):
    """A registration Synapse must not load; the message names the field and never quotes a token."""


class NamespaceEntry(BaseModel):
    """One namespace of an appservice: a regular expression, and whether it is exclusive."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    exclusive: StrictBool
    regex: StrictStr

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str) -> str:
        """A regular expression Python (Synapse) compiles."""
        try:
            re.compile(value)
        except (re.error, RecursionError, OverflowError) as exc:
            shown = value if len(value) <= 60 else value[:60] + "..."
            raise ValueError(f"{shown!r} is not a valid regular expression ({exc})") from None
        return value


class Namespaces(BaseModel):
    """The user, alias and room namespaces an appservice claims."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    users: tuple[NamespaceEntry, ...] = ()
    aliases: tuple[NamespaceEntry, ...] = ()
    rooms: tuple[NamespaceEntry, ...] = ()


class AppserviceRegistration(BaseModel):
    """An appservice registration, as Synapse's `app_service_config_files` loader reads it.

    Only the fields below are kept: what the charm writes is what it validated.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    id: StrictStr
    url: StrictStr | None
    as_token: SecretStr
    hs_token: SecretStr
    sender_localpart: StrictStr
    namespaces: Namespaces
    rate_limited: StrictBool | None = None
    protocols: tuple[StrictStr, ...] = ()
    receive_ephemeral: StrictBool = False
    push_ephemeral: StrictBool = Field(default=False, alias="de.sorunome.msc2409.push_ephemeral")
    msc3202: StrictBool = Field(default=False, alias="org.matrix.msc3202")
    msc4190: StrictBool = Field(default=False, alias="io.element.msc4190")
    ip_range_whitelist: tuple[StrictStr, ...] = ()

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        """1-255 characters, no '|' (Synapse refuses it) and no control characters."""
        if not _ID.fullmatch(value):
            raise ValueError("must be 1-255 characters without '|' or control characters")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        """An http(s) URL with a host, or null (Synapse then sends the appservice nothing)."""
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            has_host = bool(parts.hostname)
            _ = parts.port
        except ValueError:
            has_host = False
        if parts.scheme not in ("http", "https") or not has_host or any(c.isspace() for c in value):
            raise ValueError("must be an http:// or https:// URL with a host, or null")
        return value

    @field_validator("as_token", "hs_token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        """1-512 printable ASCII characters without spaces (the message never shows the token)."""
        if not _TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("must be 1-512 printable ASCII characters without spaces")
        return value

    @field_validator("sender_localpart")
    @classmethod
    def _sender(cls, value: str) -> str:
        """A Matrix localpart Synapse accepts, not the charm's own admin account."""
        if not _LOCALPART.fullmatch(value):
            raise ValueError(f"{value[:60]!r} is not a localpart (1-255 of a-z, 0-9, '.', '_', '-', '/')")
        if value == ADMIN_LOCALPART:
            raise ValueError(f"{value!r} is the charm's own admin account")
        return value

    @field_validator("ip_range_whitelist")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """IPv4/IPv6 CIDRs."""
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item[:60]!r} is not an IPv4/IPv6 CIDR") from None
        return value

    def to_synapse(self) -> dict[str, typing.Any]:
        """The registration as Synapse reads it (with the tokens)."""
        document: dict[str, typing.Any] = {
            "id": self.id,
            "url": self.url,
            "as_token": self.as_token.get_secret_value(),
            "hs_token": self.hs_token.get_secret_value(),
            "sender_localpart": self.sender_localpart,
            "namespaces": self.namespaces.model_dump(mode="json"),
        }
        optional = self.model_dump(
            mode="json", by_alias=True, exclude_unset=True, exclude=set(document) | {"namespaces"}
        )
        document.update({key: list(value) if isinstance(value, tuple) else value for key, value in optional.items()})
        return document

    def to_yaml(self) -> str:
        """The registration file's content."""
        return yaml.safe_dump(self.to_synapse(), sort_keys=False, allow_unicode=False)


def _first_error(exc: ValidationError) -> str:
    """`field.path: reason` of a validation error, without the input value."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "registration"
    return f"{where}: {str(error['msg']).removeprefix('Value error, ')}"


def parse_registration(text: str) -> AppserviceRegistration:
    """Parse a decrypted registration (YAML), or raise RegistrationError saying what is wrong."""
    if len(text.encode("utf-8", errors="replace")) > MAX_REGISTRATION_BYTES:
        raise RegistrationError(f"it is larger than {MAX_REGISTRATION_BYTES // 1024} KiB")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise RegistrationError(f"it is not valid YAML{where}") from None
    except (RecursionError, ValueError, OverflowError):
        raise RegistrationError("it is not valid YAML") from None
    if not isinstance(document, dict):
        raise RegistrationError("it is not a YAML mapping of registration fields")
    try:
        return AppserviceRegistration.model_validate(document)
    except ValidationError as exc:
        raise RegistrationError(_first_error(exc)) from None
    except RecursionError:
        raise RegistrationError("it is nested too deeply") from None


class Rejected(BaseModel):
    """A bridge's registration that is left out, and why."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    relation_id: int
    app: str
    reason: str

    def describe(self) -> str:
        """For the unit's status."""
        reason = self.reason if len(self.reason) <= MAX_REASON_LENGTH else self.reason[:MAX_REASON_LENGTH] + "..."
        return f"{MATRIX_AUTH_ENDPOINT} relation {self.relation_id} ({self.app}): registration left out: {reason}"


class MatrixAuthState(BaseModel):
    """The registrations Synapse loads, and those it does not."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    appservices: tuple[AppserviceFile, ...] = ()
    rejected: tuple[Rejected, ...] = ()
    # Why nothing could be published or decrypted at all (a damaged secret), if so.
    problem: str = ""

    def status(self) -> ops.StatusBase | None:
        """Blocked naming the problem or every rejected registration; None when all load."""
        if self.problem:
            return ops.BlockedStatus(self.problem)
        if not self.rejected:
            return None
        return ops.BlockedStatus(
            "; ".join(item.describe() for item in self.rejected) + "; fix the bridge's registration"
        )


def appservice_path(relation_id: int) -> str:
    """Where a relation's registration lives in the container."""
    return str(APPSERVICES_DIR / f"{MATRIX_AUTH_ENDPOINT}-{relation_id}.yaml")


class MatrixAuthProvider:
    """Our side of every matrix-auth relation: publish to bridges, read their registrations."""

    def __init__(self, charm: ops.CharmBase):
        self.charm = charm
        self.provides = lib.MatrixAuthProvides(charm, MATRIX_AUTH_ENDPOINT)
        self._state: MatrixAuthState | None = None

    @property
    def events(self) -> tuple[ops.BoundEvent, ...]:
        """The events after which the registrations may differ (relation-broken: see `revoke`)."""
        endpoint = self.charm.on[MATRIX_AUTH_ENDPOINT]
        return (endpoint.relation_created, endpoint.relation_changed, endpoint.relation_departed)

    @property
    def broken(self) -> ops.BoundEvent:
        """The relation-broken event: revoke, then reconcile."""
        return self.charm.on[MATRIX_AUTH_ENDPOINT].relation_broken

    def _peer_data(self) -> ops.RelationDataContent | None:
        """Our peer app data (None before the peer relation exists)."""
        relation = self.charm.model.get_relation(PEER_RELATION)
        return relation.data[self.charm.app] if relation is not None else None

    def evaluate(self, homeserver: str, shared_secret: str) -> MatrixAuthState:
        """Publish our side (the leader) and read every bridge's registration; cached per hook.

        `homeserver` is the public base URL, `shared_secret` the registration shared secret.
        """
        if self._state is None:
            relations = sorted(self.provides.relations, key=lambda relation: relation.id)
            if not relations:
                self._state = MatrixAuthState()
            elif self.charm.unit.is_leader():
                try:
                    key = self._publish(relations, homeserver, shared_secret)
                except lib.MatrixAuthError as exc:
                    logger.error("cannot publish to the matrix-auth relations: %s", exc)
                    self._state = MatrixAuthState(
                        problem=f"{exc}: restore its content, or remove it and re-add the {MATRIX_AUTH_ENDPOINT} "
                        "relations (bridges then get a new key)"
                    )
                else:
                    self._state = self._registrations(relations, key)
            else:
                self._state = self._registrations(relations, self._published_key())
        return self._state

    def status(self) -> ops.StatusBase | None:
        """The status for rejected registrations, if `evaluate` ran in this hook and found any."""
        return self._state.status() if self._state is not None else None

    def _publish(self, relations: list[ops.Relation], homeserver: str, shared_secret: str) -> bytes:
        """Create the secrets once, grant and publish them on every relation; return the encryption key."""
        peer = self._peer_data()
        data = lib.MatrixAuthProviderData(
            homeserver=homeserver.rstrip("/"),
            shared_secret=SecretStr(shared_secret),
            shared_secret_id=peer.get(PEER_MATRIX_AUTH_SHARED_SECRET_ID) if peer is not None else None,
            encryption_key_secret_id=peer.get(PEER_MATRIX_AUTH_KEY_ID) if peer is not None else None,
        )
        for relation in relations:
            self.provides.update_relation_data(relation, data)
        if peer is not None:
            for key, value in (
                (PEER_MATRIX_AUTH_SHARED_SECRET_ID, data.shared_secret_id),
                (PEER_MATRIX_AUTH_KEY_ID, data.encryption_key_secret_id),
            ):
                if value and peer.get(key) != value:
                    peer[key] = value
        return typing.cast(SecretStr, data.encryption_key).get_secret_value().encode()

    def _published_key(self) -> bytes | None:
        """The encryption key, by the ID the leader published in peer data (None until it did)."""
        peer = self._peer_data()
        secret_id = peer.get(PEER_MATRIX_AUTH_KEY_ID) if peer is not None else None
        return lib.MatrixAuthRequirerData.get_encryption_key_secret(self.charm.model, secret_id)

    def _registrations(self, relations: list[ops.Relation], key: bytes | None) -> MatrixAuthState:
        """Decrypt and validate every registration; ids and as_tokens must be unique across relations."""
        accepted: list[AppserviceFile] = []
        rejected: list[Rejected] = []
        ids: dict[str, int] = {}
        tokens: dict[str, int] = {}
        for relation in relations:
            app = relation.app.name if relation.app is not None else "?"
            try:
                registration = self._registration(relation, key)
            except RegistrationError as exc:
                logger.warning("matrix-auth relation %s (%s): registration left out: %s", relation.id, app, exc)
                rejected.append(Rejected(relation_id=relation.id, app=app, reason=str(exc)))
                continue
            if registration is None:
                continue
            token = registration.as_token.get_secret_value()
            reason = None
            if registration.id in ids:
                reason = f"its id {registration.id!r} is already used by relation {ids[registration.id]}"
            elif token in tokens:
                reason = f"its as_token is already used by relation {tokens[token]}"
            if reason is not None:
                rejected.append(Rejected(relation_id=relation.id, app=app, reason=reason))
                continue
            ids[registration.id], tokens[token] = relation.id, relation.id
            accepted.append(AppserviceFile(path=appservice_path(relation.id), content=registration.to_yaml()))
        return MatrixAuthState(appservices=tuple(accepted), rejected=tuple(rejected))

    def _registration(self, relation: ops.Relation, key: bytes | None) -> AppserviceRegistration | None:
        """The relation's registration; None if the bridge sent none; RegistrationError if unusable."""
        if relation.app is None or not relation.data[relation.app].get(lib.REGISTRATION_SECRET_KEY):
            return None
        if key is None:
            raise RegistrationError("the encryption key is not available to this unit yet")
        try:
            data = self.provides.get_remote_relation_data(relation, encryption_key=key)
        except lib.MatrixAuthError as exc:
            raise RegistrationError(f"{lib.REGISTRATION_SECRET_KEY}: {exc}") from None
        if data is None or data.registration is None:
            return None
        return parse_registration(data.registration.get_secret_value())

    def revoke(self, relation: ops.Relation) -> None:
        """Revoke a broken relation's access to both secrets (the leader).

        Juju also drops grants scoped to a removed relation, so a failed revoke is logged, not raised.
        """
        try:
            self.provides.revoke_secrets(relation)
        except ops.ModelError as exc:
            logger.warning("could not revoke the matrix-auth secrets from relation %s: %s", relation.id, exc)
