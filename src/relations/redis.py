"""The `redis` relation: our requirer of redis-k8s's `redis` interface.

redis-k8s writes `hostname` and `port` into its units' databags (the first unit that
answered is the one we use); newer providers may add `password`. We write nothing.
Synapse uses Redis for replication between its main process and workers.
"""

import logging

import ops
import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from constants import REDIS_ENDPOINT
from relations._common import first_error, parse_port, validate_host
from state import InvalidStateError

logger = logging.getLogger(__name__)

MAX_PASSWORD_LENGTH = 512


class RedisEndpoint(BaseModel):
    """Where Synapse's processes reach Redis."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int = Field(ge=1, le=65535)
    password: str | None = Field(default=None, repr=False)

    @field_validator("host", mode="before")
    @classmethod
    def _host(cls, value: object) -> str:
        """An IP address or DNS name."""
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return validate_host(value.strip())

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: object) -> int:
        """A TCP port, as the provider writes it (a string)."""
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if not isinstance(value, str):
            raise ValueError("must be a port number")
        return parse_port(value)

    @field_validator("password", mode="before")
    @classmethod
    def _password(cls, value: object) -> str | None:
        """An optional printable password (empty means none)."""
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > MAX_PASSWORD_LENGTH or not value.isprintable():
            raise ValueError(f"must be printable text of at most {MAX_PASSWORD_LENGTH} characters")
        return value

    def synapse_config(self) -> dict[str, str | int | bool]:
        """Synapse's `redis` section."""
        config: dict[str, str | int | bool] = {"enabled": True, "host": self.host, "port": self.port}
        if self.password:
            config["password"] = self.password
        return config


class RedisRequires:
    """Requirer side of the `redis` endpoint (limit 1); reads only, writes nothing."""

    def __init__(self, charm: ops.CharmBase, endpoint: str = REDIS_ENDPOINT):
        self.charm = charm
        self.endpoint_name = endpoint

    @property
    def relation(self) -> ops.Relation | None:
        """The relation, if any."""
        return self.charm.model.get_relation(self.endpoint_name)

    def is_related(self) -> bool:
        """Whether a Redis application is related."""
        return self.relation is not None

    def endpoint(self) -> RedisEndpoint | None:
        """The provider's address: None while no unit has answered; InvalidStateError if malformed."""
        relation = self.relation
        if relation is None:
            return None
        for unit in sorted(relation.units, key=lambda unit: int(unit.name.rpartition("/")[2])):
            data = relation.data[unit]
            if not data.get("hostname") and not data.get("port"):
                continue
            try:
                return RedisEndpoint.model_validate(
                    {"host": data.get("hostname", ""), "port": data.get("port", ""), "password": data.get("password")}
                )
            except pydantic.ValidationError as exc:
                field, reason = first_error(exc, no_field="")
                field = {"host": "hostname"}.get(field, field)
                raise InvalidStateError(
                    f"the {self.endpoint_name} relation's unit {unit.name} sent an invalid {field}: "
                    f"{reason}; check the Redis application"
                ) from None
        return None
