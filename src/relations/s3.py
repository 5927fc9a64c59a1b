"""The `backup` and `media` relations: requirers of s3-integrator's `s3` interface.

The wire format is spoken by PyPI's `object-storage-charmlib` (`object_storage.S3Requirer`),
the library of s3-integrator itself: on relation-joined the leader writes `bucket` (our
request; s3-integrator answers only a requirer that asked, and uses its own configured bucket
when it has one), `path` and `version`, and `requested-secrets`; it reads the answer whether
the keys are plain (schema v0) or in a Juju secret (v1). This module turns that answer into
a typed `S3Connection`, or says exactly what is missing or wrong.

Keys read (provider's app databag or its secret): `access-key`, `secret-key`, `bucket`,
`endpoint`, `region`, `path`, `s3-uri-style`, `tls-ca-chain` (JSON list of PEM).
"""

import json
import logging

import ops
import pydantic
from object_storage import S3Requirer

from relations._common import first_error
from state import InvalidStateError, S3Connection

logger = logging.getLogger(__name__)

MAX_BUCKET_LENGTH = 63


class GuardedS3Requirer(S3Requirer):
    """object-storage-charmlib's requirer, reading unreadable provider data as absent.

    The library json-decodes every value the provider sent, in its own relation-changed
    handler, and lets a ValueError other than a JSON syntax error escape (an integer of more
    than 4300 digits): that would crash the hook. Our own parser (`parse_connection`) then
    names the bad key in a Blocked status.
    """

    def get_storage_connection_info(self, relation: ops.Relation | None = None):  # type: ignore[no-untyped-def,override]
        """The library's view of the provider's data; empty when it cannot be decoded."""
        try:
            return super().get_storage_connection_info(relation)  # type: ignore[call-overload]
        except ValueError as exc:
            logger.warning("the %s relation's data cannot be decoded: %s", self.relation_name, exc)
            return {}


def requested_bucket(app_name: str, endpoint: str) -> str:
    """The bucket we ask for: `<app>-<endpoint>`, a valid S3 bucket name."""
    name = f"{app_name}-{endpoint}".lower()[:MAX_BUCKET_LENGTH].strip("-.")
    return name if len(name) >= 3 else f"{name}-s3"


def parse_connection(data: dict[str, str], endpoint: str, app_name: str) -> S3Connection | None:
    """The provider's answer as an S3Connection; None while credentials are missing.

    InvalidStateError names the bad key and what to fix.
    """
    if not data.get("access-key") or not data.get("secret-key"):
        return None
    chain: object = []
    if data.get("tls-ca-chain"):
        try:
            chain = json.loads(data["tls-ca-chain"])
        except ValueError:
            chain = None
        if not isinstance(chain, list) or not all(isinstance(item, str) for item in chain):
            raise InvalidStateError(
                f"the {endpoint} relation's tls-ca-chain is not a JSON list of PEM certificates; fix the "
                f"s3-integrator's tls-ca-chain config"
            )
    try:
        return S3Connection(
            access_key=data["access-key"],
            secret_key=data["secret-key"],
            bucket=data.get("bucket") or requested_bucket(app_name, endpoint),
            endpoint=data.get("endpoint", ""),
            region=data.get("region", ""),
            path=data.get("path", ""),
            uri_style=data.get("s3-uri-style", ""),  # type: ignore[arg-type]
            ca_chain=tuple(chain),  # type: ignore[arg-type]
        )
    except pydantic.ValidationError as exc:
        field, reason = first_error(exc)
        key = {"uri_style": "s3-uri-style", "ca_chain": "tls-ca-chain"}.get(field, field.replace("_", "-"))
        raise InvalidStateError(
            f"the {endpoint} relation's {key} is invalid ({reason}); fix it in the s3-integrator's config"
        ) from None


class S3Requires:
    """One `s3` endpoint (backup or media) of this charm."""

    def __init__(self, charm: ops.CharmBase, endpoint: str):
        self.charm = charm
        self.endpoint = endpoint
        self.requirer = GuardedS3Requirer(charm, endpoint, bucket=requested_bucket(charm.app.name, endpoint))

    @property
    def relation(self) -> ops.Relation | None:
        """The relation on this endpoint, if any."""
        return self.charm.model.get_relation(self.endpoint)

    def connection(self) -> S3Connection | None:
        """The bucket and credentials, None while not related or not provided yet.

        InvalidStateError when the provider's answer is unusable.
        """
        relation = self.relation
        if relation is None or relation.app is None:
            return None
        try:
            data = self.requirer.fetch_relation_data([relation.id]).get(relation.id, {})
        except (ops.ModelError, ops.SecretNotFoundError, ValueError, TypeError) as exc:
            logger.warning("cannot read the %s relation's credentials: %s", self.endpoint, exc)
            return None
        return parse_connection({str(k): str(v) for k, v in data.items()}, self.endpoint, self.charm.app.name)
