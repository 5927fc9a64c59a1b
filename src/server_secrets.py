"""The server's identity: signing key and secrets, kept in one Juju application secret.

The leader generates them once with a CSPRNG and never regenerates them; the secret's ID
is published in the peer relation so every unit reads the same content.
"""

import base64
import logging
import re
import secrets
import string

import ops
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from constants import PEER_RELATION, PEER_SECRET_ID_KEY, SECRET_LABEL
from state import InvalidStateError, quote_value

logger = logging.getLogger(__name__)

_SIGNING_KEY = re.compile(r"ed25519 a_[A-Za-z0-9]{4} [A-Za-z0-9+/]{43}")


def generate_signing_key() -> str:
    """A new Synapse signing key line: `ed25519 a_XXXX <unpadded base64 of a 32-byte seed>`."""
    version = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(4))
    seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return f"ed25519 a_{version} {seed}"


class ServerSecrets(BaseModel):
    """Content of the server secret; Juju content keys use '-' where fields use '_'."""

    model_config = ConfigDict(frozen=True)

    signing_key: str
    registration_shared_secret: str
    macaroon_secret_key: str
    form_secret: str
    # Authenticates replication requests between Synapse's processes. Added by the leader to
    # a secret created before workers existed (see `ensure_server_secrets`); None until then.
    worker_replication_secret: str | None = None

    @field_validator("signing_key")
    @classmethod
    def _signing_key(cls, value: str) -> str:
        """The one-line format Synapse reads from signing_key_path."""
        if not _SIGNING_KEY.fullmatch(value.strip()):
            raise ValueError("not an 'ed25519 a_XXXX <base64>' signing key")
        return value.strip()

    @classmethod
    def generate(cls) -> "ServerSecrets":
        """Fresh secrets from the operating system's CSPRNG."""
        return cls(
            signing_key=generate_signing_key(),
            registration_shared_secret=secrets.token_urlsafe(48),
            macaroon_secret_key=secrets.token_urlsafe(48),
            form_secret=secrets.token_urlsafe(48),
            worker_replication_secret=secrets.token_urlsafe(48),
        )

    def to_content(self) -> dict[str, str]:
        """Juju secret content."""
        return {key.replace("_", "-"): value for key, value in self.model_dump().items() if value is not None}

    @classmethod
    def from_content(cls, content: dict[str, str]) -> "ServerSecrets":
        """Parse Juju secret content, raising InvalidStateError if it was tampered with."""
        try:
            return cls.model_validate({key.replace("-", "_"): value for key, value in content.items()})
        except ValidationError as exc:
            fields = ", ".join(str(err["loc"][0]) for err in exc.errors())
            raise InvalidStateError(
                f"the Juju secret {SECRET_LABEL!r} is damaged ({fields}); restore its content"
            ) from None


def _peer_secret_id(charm: ops.CharmBase) -> str | None:
    """The server secret's ID as published by the leader in peer app data."""
    relation = charm.model.get_relation(PEER_RELATION)
    if relation is None:
        return None
    return relation.data[charm.app].get(PEER_SECRET_ID_KEY) or None


def _leader_secret(charm: ops.CharmBase) -> ops.Secret:
    """The leader's server secret, created on first use only.

    A new leader finds the secret by the ID published in peer data (or by its label), so a
    leadership change never generates a new identity.
    """
    published_id = _peer_secret_id(charm)
    if published_id is not None:
        try:
            return charm.model.get_secret(id=published_id, label=SECRET_LABEL)
        except ops.SecretNotFoundError:
            raise InvalidStateError(
                f"the Juju secret {quote_value(published_id)} with the server's signing key is gone; a new key "
                "would change the server's identity, so restore the secret (or redeploy)"
            ) from None
        except ops.ModelError as exc:
            logger.error("cannot read the server secret %s named in peer data: %s", published_id, exc)
            raise InvalidStateError(
                f"the Juju secret {quote_value(published_id)} named in peer data ({PEER_SECRET_ID_KEY}) cannot be read "
                "by this "
                "application; a new key would change the server's identity, so restore the secret it held and "
                "point the peer data at it (or redeploy)"
            ) from None
    try:
        return charm.model.get_secret(label=SECRET_LABEL)
    except ops.SecretNotFoundError:
        logger.info("creating the server's signing key and secrets")
        return charm.app.add_secret(
            ServerSecrets.generate().to_content(),
            label=SECRET_LABEL,
            description="Synapse signing key, registration shared secret, macaroon and form secrets",
        )


def _with_worker_secret(secret: ops.Secret, content: ServerSecrets) -> ServerSecrets:
    """`content` with a worker replication secret; the leader adds one, once, to a secret that lacks it."""
    if content.worker_replication_secret is not None:
        return content
    logger.info("adding the worker replication secret to the server secret")
    content = content.model_copy(update={"worker_replication_secret": secrets.token_urlsafe(48)})
    secret.set_content(content.to_content())
    return content


def ensure_server_secrets(charm: ops.CharmBase) -> ServerSecrets | None:
    """Return the server secrets, creating and publishing them if this unit is the leader.

    None means they do not exist yet (a non-leader before the leader created them).
    """
    relation = charm.model.get_relation(PEER_RELATION)
    if charm.unit.is_leader():
        secret = _leader_secret(charm)
        if relation is not None:
            secret_id = secret.id or secret.get_info().id
            if secret_id and relation.data[charm.app].get(PEER_SECRET_ID_KEY) != secret_id:
                relation.data[charm.app][PEER_SECRET_ID_KEY] = secret_id
        # refresh: the owner follows the latest revision (a restore replaces the content)
        return _with_worker_secret(secret, ServerSecrets.from_content(secret.get_content(refresh=True)))
    published_id = _peer_secret_id(charm)
    if published_id is None:
        return None
    try:
        secret = charm.model.get_secret(id=published_id)
    except (ops.SecretNotFoundError, ops.ModelError):
        logger.warning("server secret %s is not readable yet", published_id)
        return None
    return ServerSecrets.from_content(secret.get_content(refresh=True))


def replace_server_secrets(charm: ops.CharmBase, restored: ServerSecrets) -> None:
    """Make a restored identity the server's: the leader updates the server secret's content."""
    secret = _leader_secret(charm)
    current = ServerSecrets.from_content(secret.get_content(refresh=True))
    if restored.worker_replication_secret is None:  # a backup from before workers: keep ours
        restored = restored.model_copy(update={"worker_replication_secret": current.worker_replication_secret})
    if current != restored:
        logger.info("the server secret now holds the restored signing key and secrets")
        secret.set_content(restored.to_content())
