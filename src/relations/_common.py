"""Helpers shared by the relation modules: validating what providers send, reading their secrets.

Nothing here knows a wire format: each relation module still owns its keys and its messages.
"""

import ipaddress
import re

import ops
import pydantic

from state import InvalidStateError, validate_hostname

_PORT = re.compile(r"[0-9]{1,5}")


def validate_host(host: str) -> str:
    """Return `host` normalised if it is an IP address or a DNS name, or raise ValueError."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", host):
        raise ValueError(f"{host!r} is not an IPv4 address")
    return validate_hostname(host)


def parse_port(text: str) -> int:
    """A TCP port number, or ValueError."""
    text = text.strip()
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise ValueError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def parse_flag(value: str) -> bool:
    """A boolean sent as text ("true", "True", "false", ...), or ValueError."""
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0", ""):
        return False
    raise ValueError(f"{value!r} is not true or false")


def read_secret(model: ops.Model, uri: str, what: str, provider: str) -> dict[str, str]:
    """The latest content of a secret another application shared, or InvalidStateError."""
    try:
        return model.get_secret(id=uri).get_content(refresh=True)
    except ops.SecretNotFoundError:
        raise InvalidStateError(
            f"the {what} secret {provider} shared no longer exists; wait for {provider} to send a new one "
            f"or remove and re-add the relation"
        ) from None
    except ops.ModelError:
        raise InvalidStateError(
            f"cannot read the {what} secret from {provider} ({uri}): it was not granted to this application; "
            f"remove and re-add the relation"
        ) from None


def first_error(exc: pydantic.ValidationError, no_field: str = "data") -> tuple[str, str]:
    """(top-level field, reason) of a validation error's first error, without pydantic's "Value error, " prefix.

    `no_field` stands for the field when the error has no location.
    """
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else no_field
    return field, str(error["msg"]).removeprefix("Value error, ")


class SingleRelationRequirer:
    """Requirer side of one endpoint of limit 1: the charm, the endpoint name and its relation."""

    def __init__(self, charm: ops.CharmBase, endpoint: str):
        self.charm = charm
        self.endpoint_name = endpoint

    @property
    def relation(self) -> ops.Relation | None:
        """The established relation, if any (a broken one is already left out; the first, if several)."""
        relations = self.charm.model.relations[self.endpoint_name]
        return relations[0] if relations else None

    @property
    def events(self) -> tuple[ops.BoundEvent, ...]:
        """The events after which the provider's answer may differ."""
        on = self.charm.on[self.endpoint_name]
        return (on.relation_created, on.relation_changed, on.relation_broken)
