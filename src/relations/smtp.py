"""The `smtp` relation: our requirer of smtp-integrator's `smtp` interface (Juju secrets only).

Keys we read (provider's app databag): `host`, `port`, `user`, `password_id` (a Juju secret
URI; content key `password`), `auth_type` (`none` | `not_provided` | `plain`),
`transport_security` (`none` | `starttls` | `tls`), `domain`, `skip_ssl_verify`. We write
nothing. The interface's plain `password` key (smtp-legacy) is refused: the password must
come as a secret.

Only encrypted, authenticated, verified set-ups are accepted: anything else raises
`InvalidStateError` naming the setting and the `juju config` that fixes it.
"""

import logging
import typing

import ops
import pydantic
from pydantic import BaseModel, ConfigDict, field_validator

from constants import SMTP_ENDPOINT
from relations._common import SingleRelationRequirer, first_error, parse_flag, parse_port, read_secret, validate_host
from state import InvalidStateError, SmtpEndpoint

logger = logging.getLogger(__name__)

AUTH_TYPES = ("none", "not_provided", "plain")
TRANSPORT_SECURITIES = ("none", "starttls", "tls")


class SmtpRelationData(BaseModel):
    """smtp-integrator's app databag, validated field by field (unknown keys are ignored)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    host: str
    port: int
    user: str | None = None
    password_id: str | None = None
    password: str | None = None
    auth_type: str = "none"
    transport_security: str = "none"
    domain: str | None = None
    skip_ssl_verify: bool = False

    @field_validator("host", mode="before")
    @classmethod
    def _host(cls, value: object) -> str:
        """An IP address or DNS name."""
        return validate_host(str(value).strip())

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: object) -> int:
        """A TCP port number."""
        return parse_port(str(value))

    @field_validator("user", "password_id", "password", "domain", mode="before")
    @classmethod
    def _optional(cls, value: object) -> str | None:
        """Empty means absent."""
        text = str(value) if value is not None else ""
        return text or None

    @field_validator("auth_type", "transport_security", mode="before")
    @classmethod
    def _choice(cls, value: object, info: pydantic.ValidationInfo) -> str:
        """One of the interface's values."""
        choices = AUTH_TYPES if info.field_name == "auth_type" else TRANSPORT_SECURITIES
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return text

    @field_validator("skip_ssl_verify", mode="before")
    @classmethod
    def _flag(cls, value: object) -> bool:
        """A flag sent as text ("True"/"False")."""
        return parse_flag(str(value))


class SmtpRequires(SingleRelationRequirer):
    """Requirer side of the smtp endpoint (limit 1): reads the provider's answer."""

    def __init__(self, charm: ops.CharmBase, endpoint: str = SMTP_ENDPOINT):
        super().__init__(charm, endpoint)

    def endpoint(self) -> SmtpEndpoint | None:
        """The SMTP server to send through; None until smtp-integrator has sent one.

        Raises InvalidStateError, naming the setting and its fix, on malformed or insecure data.
        """
        relation = self.relation
        if relation is None or relation.app is None:
            return None
        data = relation.data[relation.app]
        if not data.get("host"):
            return None
        provider = relation.app.name
        try:
            wire = SmtpRelationData.model_validate(dict(data))
        except pydantic.ValidationError as exc:
            field, reason = first_error(exc)
            raise InvalidStateError(
                f"{provider} sent an invalid {field} on the {self.endpoint_name} relation: {reason}; "
                f"fix it with `juju config {provider} {field}=...`"
            ) from None
        self._refuse_insecure(wire, provider)
        password = self._password(wire, provider)
        return SmtpEndpoint(
            host=wire.host,
            port=wire.port,
            user=typing.cast(str, wire.user),
            password=password,
            transport_security=typing.cast(typing.Literal["starttls", "tls"], wire.transport_security),
        )

    def _refuse_insecure(self, wire: SmtpRelationData, provider: str) -> None:
        """InvalidStateError for the set-ups the charm does not support."""
        if wire.transport_security == "none":
            raise InvalidStateError(
                f"{provider} sends transport_security=none on the {self.endpoint_name} relation: Synapse would send "
                f"the SMTP password and emails unencrypted, which this charm does not support; run "
                f"`juju config {provider} transport_security=starttls` (or tls)"
            )
        if wire.auth_type == "none":
            raise InvalidStateError(
                f"{provider} sends auth_type=none on the {self.endpoint_name} relation: unauthenticated SMTP is not "
                f"supported; run `juju config {provider} auth_type=plain user=... password=...`"
            )
        if wire.skip_ssl_verify:
            raise InvalidStateError(
                f"{provider} sends skip_ssl_verify=True on the {self.endpoint_name} relation: Synapse always verifies "
                f"the SMTP server's certificate; give the server a certificate from a trusted CA and run "
                f"`juju config {provider} skip_ssl_verify=false`"
            )

    def _password(self, wire: SmtpRelationData, provider: str) -> str:
        """The SMTP password from the `password_id` secret."""
        if wire.password is not None and wire.password_id is None:
            raise InvalidStateError(
                f"{provider} sent the SMTP password as plain relation data; this charm takes it only as a Juju "
                f"secret: relate the `smtp` endpoint, not smtp-legacy, with "
                f"`juju integrate {self.charm.app.name}:{self.endpoint_name} {provider}:smtp`"
            )
        if wire.user is None:
            raise InvalidStateError(
                f"{provider} sent no user on the {self.endpoint_name} relation: unauthenticated SMTP is not "
                f"supported; run `juju config {provider} auth_type=plain user=... password=...`"
            )
        if wire.password_id is None:
            raise InvalidStateError(
                f"{provider} sent user {wire.user!r} but no password_id on the {self.endpoint_name} relation; run "
                f"`juju config {provider} password=...`"
            )
        content = read_secret(self.charm.model, wire.password_id, "SMTP password", provider)
        password = content.get("password")
        if not password:
            raise InvalidStateError(
                f"the SMTP password secret from {provider} has no password; run `juju config {provider} password=...`"
            )
        return password
