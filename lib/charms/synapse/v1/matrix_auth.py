"""The `matrix_auth` interface: a Matrix homeserver (the Synapse charm) and the bridges related to it.

The provider (Synapse) gives every related application the homeserver's URL, its registration
shared secret and an encryption key. A bridge that runs an application service (IRC bridge,
mautrix bridges) sends its appservice registration back, encrypted with that key; Synapse
decrypts it and loads it. A bridge that only needs to register users (maubot) just reads.

Wire format, all in the applications' databags (written by the leader):

| side | key | value |
|---|---|---|
| provider | `homeserver` | the homeserver's public base URL, e.g. `https://chat.example.com` |
| provider | `shared_secret_id` | ID of a Juju secret, content key `shared-secret-content`: the shared secret |
| provider | `encryption_key_secret_id` | ID of a Juju secret, content key `encryption-key-content`: a Fernet key |
| requirer | `registration_secret` | the appservice registration (YAML), Fernet-encrypted with that key |

Both secrets are granted to every relation on the endpoint and revoked when it is broken. The
encryption key is generated once for the life of the provider application: a provider can only
read secrets that are granted to it, which across models (CMR) a requirer cannot do, so the
registration travels encrypted in plain relation data instead.

A bridge charm (requirer):

```python
from charms.synapse.v1.matrix_auth import MatrixAuthRequestProcessed, MatrixAuthRequirerData, MatrixAuthRequires


class BridgeCharm(ops.CharmBase):
    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.matrix_auth = MatrixAuthRequires(self)  # endpoint "matrix-auth", interface matrix_auth
        framework.observe(self.matrix_auth.on.matrix_auth_request_processed, self._on_matrix_auth)

    def _on_matrix_auth(self, event: MatrixAuthRequestProcessed) -> None:
        provider = event.get_matrix_auth_provider_relation_data()
        homeserver, shared_secret = provider.homeserver, provider.shared_secret
        ...  # configure the bridge, then send its appservice registration (leader only)
        registration = MatrixAuthRequirerData(registration=SecretStr(registration_yaml))
        self.matrix_auth.update_relation_data(event.relation, registration)
```

The Synapse charm (provider) publishes with `MatrixAuthProvides.update_relation_data` and reads
registrations with `MatrixAuthProvides.get_remote_relation_data(relation)`.

Every method that finds the relation data incomplete or invalid raises `MatrixAuthError`, a
`ValueError`. Secret values are `pydantic.SecretStr`: they never appear in a repr or a log.
"""

from __future__ import annotations

import logging
import typing
from urllib.parse import urlsplit

import ops
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

if typing.TYPE_CHECKING:  # cryptography is imported where it is used: most hooks never encrypt.
    from cryptography.fernet import Fernet

# The unique Charmhub identifier of this library
LIBID = "9299612f696e4150b7d3df4a913af059"

# Increment this major API version when introducing breaking changes
LIBAPI = 1

# Increment this PATCH version before using `charmcraft publish-lib` or reset
# to 0 if you are raising the major API version
LIBPATCH = 7

PYDEPS = ["pydantic>=2", "cryptography"]

logger = logging.getLogger(__name__)

DEFAULT_RELATION_NAME = "matrix-auth"

# Juju secret labels (on the provider) and content keys.
SHARED_SECRET_LABEL = "shared-secret"  # noqa: S105 (a label)
SHARED_SECRET_CONTENT_LABEL = "shared-secret-content"  # noqa: S105 (a content key)
ENCRYPTION_KEY_SECRET_LABEL = "encryption-key-secret"  # noqa: S105 (a label)
ENCRYPTION_KEY_SECRET_CONTENT_LABEL = "encryption-key-content"  # noqa: S105 (a content key)

# Databag keys.
HOMESERVER_KEY = "homeserver"
SHARED_SECRET_ID_KEY = "shared_secret_id"  # noqa: S105 (a databag key)
ENCRYPTION_KEY_SECRET_ID_KEY = "encryption_key_secret_id"  # noqa: S105 (a databag key)
REGISTRATION_SECRET_KEY = "registration_secret"  # noqa: S105 (a databag key)


class MatrixAuthError(ValueError):
    """The relation data is incomplete or invalid; the message says which part and why."""


def _fernet(key: bytes) -> Fernet:
    """A Fernet cipher for `key`, or MatrixAuthError if it is not a Fernet key."""
    from cryptography.fernet import Fernet  # noqa: PLC0415 (lazy: a heavy import)

    try:
        return Fernet(key)
    except (ValueError, TypeError):
        raise MatrixAuthError("the encryption key is not a Fernet key (32 url-safe base64-encoded bytes)") from None


def generate_encryption_key() -> bytes:
    """A new Fernet key, from the operating system's CSPRNG."""
    from cryptography.fernet import Fernet  # noqa: PLC0415 (lazy: a heavy import)

    return Fernet.generate_key()


def encrypt_string(key: bytes, plaintext: SecretStr) -> str:
    """Encrypt a string using Fernet.

    Args:
        key: encryption key in bytes.
        plaintext: text to encrypt.

    Returns:
        encrypted text (a Fernet token).
    """
    return _fernet(key).encrypt(plaintext.get_secret_value().encode("utf-8")).decode("ascii")


def decrypt_string(key: bytes, ciphertext: str) -> str:
    """Decrypt a string using Fernet.

    Args:
        key: encryption key in bytes.
        ciphertext: encrypted text.

    Returns:
        decrypted text.

    Raises:
        MatrixAuthError: the text is not a token made with this key, or not UTF-8.
    """
    from cryptography.fernet import InvalidToken  # noqa: PLC0415 (lazy: a heavy import)

    fernet = _fernet(key)
    try:
        return fernet.decrypt(ciphertext.encode("utf-8")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise MatrixAuthError("it cannot be decrypted with the provider's encryption key") from None


def _read_secret(model: ops.Model, secret_id: str | None, content_key: str) -> str | None:
    """One value of a secret's latest content, None if the secret is unknown, unreadable or lacks it."""
    if not secret_id:
        return None
    try:
        content = model.get_secret(id=secret_id).get_content(refresh=True)
    except (ops.SecretNotFoundError, ops.ModelError):
        return None
    return content.get(content_key) or None


def _owned_secret(model: ops.Model, secret_id: str | None, label: str) -> ops.Secret | None:
    """The provider's own secret, by its known ID first, then by its label; None if there is none."""
    if secret_id:
        try:
            return model.get_secret(id=secret_id)
        except ops.SecretNotFoundError:
            pass
    try:
        return model.get_secret(label=label)
    except ops.SecretNotFoundError:
        return None


def _secret_id(secret: ops.Secret) -> str:
    """The secret's ID (a secret fetched by label knows it only after asking)."""
    return secret.id or typing.cast(str, secret.get_info().id)


def _grant_once(
    secret: ops.Secret, secret_id: str, relation: ops.Relation, databag_key: str, app: ops.Application
) -> None:
    """Grant the secret to the relation unless our databag already names it (we grant before writing it)."""
    if relation.data[app].get(databag_key) != secret_id:
        secret.grant(relation)


class MatrixAuthProviderData(BaseModel):
    """Represent the MatrixAuth provider data.

    Attributes:
        homeserver: the homeserver's public base URL.
        shared_secret: the registration shared secret (not serialised).
        shared_secret_id: ID of the Juju secret holding the shared secret.
        encryption_key: the Fernet key for registrations (not serialised).
        encryption_key_secret_id: ID of the Juju secret holding the encryption key.
    """

    model_config = ConfigDict(validate_assignment=True, defer_build=True)

    homeserver: str
    shared_secret: SecretStr | None = Field(default=None, exclude=True)
    shared_secret_id: str | None = None
    encryption_key: SecretStr | None = Field(default=None, exclude=True)
    encryption_key_secret_id: str | None = None

    @field_validator("homeserver")
    @classmethod
    def _homeserver(cls, value: str) -> str:
        """An absolute http(s) URL."""
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.strip()

    def set_shared_secret_id(self, model: ops.Model, relation: ops.Relation) -> None:
        """Store the Matrix shared secret as a Juju secret and grant it to the relation.

        If the secret exists (by `shared_secret_id` or its label), it is granted (and its
        content updated if the shared secret changed); if not, it is created.

        Args:
            model: the Juju model.
            relation: relation to grant access to the secrets to.
        """
        if self.shared_secret is None:
            raise MatrixAuthError("no shared secret to publish")
        content = {SHARED_SECRET_CONTENT_LABEL: self.shared_secret.get_secret_value()}
        secret = _owned_secret(model, self.shared_secret_id, SHARED_SECRET_LABEL)
        if secret is None:
            secret = model.app.add_secret(content, label=SHARED_SECRET_LABEL, description="Matrix shared secret")
        elif secret.get_content(refresh=True) != content:
            secret.set_content(content)
        secret_id = _secret_id(secret)
        _grant_once(secret, secret_id, relation, SHARED_SECRET_ID_KEY, model.app)
        self.shared_secret_id = secret_id

    def set_encryption_key_secret_id(self, model: ops.Model, relation: ops.Relation) -> None:
        """Store the encryption key to encrypt/decrypt appservice registrations, and grant it.

        The key is created once (from `encryption_key`, or generated) and then always found
        again by `encryption_key_secret_id` or its label: it is never replaced.

        Args:
            model: the Juju model.
            relation: relation to grant access to the secrets to.
        """
        secret = _owned_secret(model, self.encryption_key_secret_id, ENCRYPTION_KEY_SECRET_LABEL)
        if secret is None:
            key = self.encryption_key.get_secret_value() if self.encryption_key else generate_encryption_key().decode()
            secret = model.app.add_secret(
                {ENCRYPTION_KEY_SECRET_CONTENT_LABEL: key},
                label=ENCRYPTION_KEY_SECRET_LABEL,
                description="Key encrypting Matrix appservice registrations",
            )
        secret_id = _secret_id(secret)
        _grant_once(secret, secret_id, relation, ENCRYPTION_KEY_SECRET_ID_KEY, model.app)
        self.encryption_key_secret_id = secret_id
        key_value = secret.get_content().get(ENCRYPTION_KEY_SECRET_CONTENT_LABEL)
        if not key_value:
            raise MatrixAuthError(f"the secret {secret_id} ({ENCRYPTION_KEY_SECRET_LABEL}) holds no encryption key")
        self.encryption_key = SecretStr(key_value)

    @classmethod
    def get_shared_secret(cls, model: ops.Model, shared_secret_id: str | None) -> SecretStr | None:
        """Retrieve the shared secret corresponding to the shared_secret_id.

        Args:
            model: the Juju model.
            shared_secret_id: the secret ID for the shared secret.

        Returns:
            the shared secret or None if not found.
        """
        value = _read_secret(model, shared_secret_id, SHARED_SECRET_CONTENT_LABEL)
        return SecretStr(value) if value is not None else None

    def to_relation_data(self, model: ops.Model, relation: ops.Relation) -> dict[str, str]:
        """Convert an instance of MatrixAuthProviderData to the relation representation.

        Creates the secrets if needed and grants them to the relation.

        Args:
            model: the Juju model.
            relation: relation to grant access to the secrets to.

        Returns:
            Dict containing the representation.
        """
        self.set_shared_secret_id(model, relation)
        self.set_encryption_key_secret_id(model, relation)
        return {
            HOMESERVER_KEY: self.homeserver,
            SHARED_SECRET_ID_KEY: typing.cast(str, self.shared_secret_id),
            ENCRYPTION_KEY_SECRET_ID_KEY: typing.cast(str, self.encryption_key_secret_id),
        }

    @classmethod
    def from_relation(cls, model: ops.Model, relation: ops.Relation) -> MatrixAuthProviderData:
        """Initialize a new instance of the MatrixAuthProviderData class from the relation (requirer side).

        Args:
            model: the Juju model.
            relation: the relation.

        Returns:
            A MatrixAuthProviderData instance.

        Raises:
            MatrixAuthError: the provider has not sent everything yet, or a secret is unreadable.
        """
        if relation.app is None:
            raise MatrixAuthError("the relation has no remote application")
        data = relation.data[relation.app]
        missing = [
            key for key in (HOMESERVER_KEY, SHARED_SECRET_ID_KEY, ENCRYPTION_KEY_SECRET_ID_KEY) if not data.get(key)
        ]
        if missing:
            raise MatrixAuthError(f"the provider has not sent {', '.join(missing)} yet")
        shared_secret = cls.get_shared_secret(model, data[SHARED_SECRET_ID_KEY])
        if shared_secret is None:
            raise MatrixAuthError("the shared secret is not readable (not granted yet, or removed)")
        key = MatrixAuthRequirerData.get_encryption_key_secret(model, data[ENCRYPTION_KEY_SECRET_ID_KEY])
        if key is None:
            raise MatrixAuthError("the encryption key is not readable (not granted yet, or removed)")
        try:
            return cls(
                homeserver=data[HOMESERVER_KEY],
                shared_secret=shared_secret,
                shared_secret_id=data[SHARED_SECRET_ID_KEY],
                encryption_key=SecretStr(key.decode()),
                encryption_key_secret_id=data[ENCRYPTION_KEY_SECRET_ID_KEY],
            )
        except ValidationError as exc:
            raise MatrixAuthError(f"homeserver: {exc.errors()[0]['msg']}") from None


class MatrixAuthRequirerData(BaseModel):
    """Represent the MatrixAuth requirer data.

    Attributes:
        registration: the appservice registration (YAML), or None for a bridge without one.
    """

    model_config = ConfigDict(defer_build=True)

    registration: SecretStr | None = Field(default=None, exclude=True)

    @classmethod
    def get_encryption_key_secret(cls, model: ops.Model, encryption_key_secret_id: str | None) -> bytes | None:
        """Retrieve the encryption key secret corresponding to the encryption_key_secret_id.

        Args:
            model: the Juju model.
            encryption_key_secret_id: the secret ID for the encryption key secret.

        Returns:
            the encryption key secret as bytes or None if not found.
        """
        value = _read_secret(model, encryption_key_secret_id, ENCRYPTION_KEY_SECRET_CONTENT_LABEL)
        return value.encode() if value is not None else None

    def to_relation_data(self, model: ops.Model, relation: ops.Relation) -> dict[str, str]:
        """Convert an instance of MatrixAuthRequirerData to the relation representation.

        Args:
            model: the Juju model.
            relation: the relation (the provider's data names the encryption key).

        Returns:
            Dict containing the representation (empty without a registration).

        Raises:
            MatrixAuthError: if the encryption key is not found.
        """
        if self.registration is None:
            return {}
        provider = relation.data[relation.app] if relation.app else {}
        key = self.get_encryption_key_secret(model, provider.get(ENCRYPTION_KEY_SECRET_ID_KEY))
        if key is None:
            raise MatrixAuthError("the provider's encryption key is not readable yet")
        return {REGISTRATION_SECRET_KEY: encrypt_string(key, self.registration)}

    @classmethod
    def from_relation(
        cls, model: ops.Model, relation: ops.Relation, encryption_key: bytes | None = None
    ) -> MatrixAuthRequirerData:
        """Get a MatrixAuthRequirerData from the relation data (provider side), decrypting the registration.

        Args:
            model: the Juju model.
            relation: the relation.
            encryption_key: the key; by default the one our databag names (readable by the leader).

        Returns:
            the relation data, with `registration` None if the requirer sent none.

        Raises:
            MatrixAuthError: the registration cannot be decrypted, or the key is unknown.
        """
        ciphertext = relation.data[relation.app].get(REGISTRATION_SECRET_KEY) if relation.app else None
        if not ciphertext:
            return cls(registration=None)
        if encryption_key is None:
            secret = _owned_secret(
                model, relation.data[model.app].get(ENCRYPTION_KEY_SECRET_ID_KEY), ENCRYPTION_KEY_SECRET_LABEL
            )
            content = secret.get_content(refresh=True) if secret is not None else {}
            value = content.get(ENCRYPTION_KEY_SECRET_CONTENT_LABEL)
            if not value:
                raise MatrixAuthError("the encryption key secret does not exist yet")
            encryption_key = value.encode()
        return cls(registration=SecretStr(decrypt_string(encryption_key, ciphertext)))


class MatrixAuthRequestProcessed(ops.RelationEvent):
    """MatrixAuth event emitted (on the requirer) when the provider's data is complete and readable."""

    def get_matrix_auth_provider_relation_data(self) -> MatrixAuthProviderData:
        """Get a MatrixAuthProviderData for the relation data.

        Returns:
            the MatrixAuthProviderData for the relation data.
        """
        return MatrixAuthProviderData.from_relation(self.framework.model, self.relation)


class MatrixAuthRequestReceived(ops.RelationEvent):
    """MatrixAuth event emitted (on the provider) when a requirer sent a decryptable registration."""


class MatrixAuthRequiresEvents(ops.ObjectEvents):
    """MatrixAuth requirer events.

    Attributes:
        matrix_auth_request_processed: the provider's data is complete and readable.
    """

    matrix_auth_request_processed = ops.EventSource(MatrixAuthRequestProcessed)


class MatrixAuthProvidesEvents(ops.ObjectEvents):
    """MatrixAuth provider events.

    Attributes:
        matrix_auth_request_received: a requirer sent a registration this provider can decrypt.
    """

    matrix_auth_request_received = ops.EventSource(MatrixAuthRequestReceived)


def _write_changed(databag: ops.RelationDataContent, wanted: dict[str, str]) -> bool:
    """Write the keys whose values differ; return whether anything was written."""
    updates = {key: value for key, value in wanted.items() if databag.get(key) != value}
    if updates:
        databag.update(updates)
    return bool(updates)


class MatrixAuthProvides(ops.Object):
    """Provider side of the MatrixAuth relation: any number of requirers.

    Attributes:
        on: the provider's events.
        relation_name: the endpoint's name.
    """

    on = MatrixAuthProvidesEvents()

    def __init__(self, charm: ops.CharmBase, relation_name: str = DEFAULT_RELATION_NAME) -> None:
        """Construct.

        Args:
            charm: the provider charm.
            relation_name: the relation name.
        """
        super().__init__(charm, relation_name)
        self.relation_name = relation_name
        self.framework.observe(charm.on[relation_name].relation_changed, self._on_relation_changed)

    @property
    def relations(self) -> list[ops.Relation]:
        """The relations on the endpoint (a broken one is already left out)."""
        return list(self.model.relations[self.relation_name])

    def get_remote_relation_data(
        self, relation: ops.Relation | None = None, encryption_key: bytes | None = None
    ) -> MatrixAuthRequirerData | None:
        """Retrieve the remote relation data.

        Args:
            relation: the relation (default: the endpoint's only relation).
            encryption_key: the key to decrypt with (default: the one our databag names).

        Returns:
            the relation data, None without a relation.

        Raises:
            MatrixAuthError: the registration cannot be decrypted.
        """
        relation = relation or self.model.get_relation(self.relation_name)
        if relation is None:
            return None
        return MatrixAuthRequirerData.from_relation(self.model, relation, encryption_key)

    def _on_relation_changed(self, event: ops.RelationChangedEvent) -> None:
        """Emit matrix_auth_request_received when the requirer sent a decryptable registration."""
        if not self.model.unit.is_leader() or event.app is None:
            return
        try:
            data = self.get_remote_relation_data(event.relation)
        except MatrixAuthError as exc:
            logger.warning("registration on relation %s: %s", event.relation.id, exc)
            return
        if data is not None and data.registration is not None:
            self.on.matrix_auth_request_received.emit(event.relation, app=event.app, unit=event.unit)

    def update_relation_data(self, relation: ops.Relation, matrix_auth_provider_data: MatrixAuthProviderData) -> None:
        """Update the relation data (the leader); only keys whose value differs are written.

        The secrets are created once and granted to the relation; the same secrets serve every
        relation.

        Args:
            relation: the relation for which to update the data.
            matrix_auth_provider_data: a MatrixAuthProviderData instance wrapping the data to be updated.
        """
        if not self.model.unit.is_leader():
            return
        wanted = matrix_auth_provider_data.to_relation_data(self.model, relation)
        _write_changed(relation.data[self.model.app], wanted)

    def revoke_secrets(self, relation: ops.Relation) -> None:
        """Revoke the relation's access to the shared secret and the encryption key (the leader).

        Call it on relation-broken; only secrets our databag names on that relation are revoked.
        """
        if not self.model.unit.is_leader():
            return
        databag = relation.data[self.model.app]
        for key, label in (
            (SHARED_SECRET_ID_KEY, SHARED_SECRET_LABEL),
            (ENCRYPTION_KEY_SECRET_ID_KEY, ENCRYPTION_KEY_SECRET_LABEL),
        ):
            secret_id = databag.get(key)
            secret = _owned_secret(self.model, secret_id, label) if secret_id else None
            if secret is not None:
                secret.revoke(relation)


class MatrixAuthRequires(ops.Object):
    """Requirer side of the MatrixAuth requires relation.

    Attributes:
        on: the requirer's events.
        relation_name: the endpoint's name.
    """

    on = MatrixAuthRequiresEvents()

    def __init__(self, charm: ops.CharmBase, relation_name: str = DEFAULT_RELATION_NAME) -> None:
        """Construct.

        Args:
            charm: the requirer charm.
            relation_name: the relation name.
        """
        super().__init__(charm, relation_name)
        self.relation_name = relation_name
        self.framework.observe(charm.on[relation_name].relation_changed, self._on_relation_changed)

    def get_remote_relation_data(self) -> MatrixAuthProviderData | None:
        """Retrieve the remote relation data.

        Returns:
            the relation data, None without a relation.

        Raises:
            MatrixAuthError: the provider has not sent everything yet, or a secret is unreadable.
        """
        relation = self.model.get_relation(self.relation_name)
        if relation is None:
            return None
        return MatrixAuthProviderData.from_relation(self.model, relation)

    def _on_relation_changed(self, event: ops.RelationChangedEvent) -> None:
        """Emit matrix_auth_request_processed when the provider's data is complete and readable."""
        try:
            MatrixAuthProviderData.from_relation(self.model, event.relation)
        except MatrixAuthError as exc:
            logger.info("matrix-auth relation %s not ready: %s", event.relation.id, exc)
            return
        self.on.matrix_auth_request_processed.emit(event.relation, app=event.app, unit=event.unit)

    def update_relation_data(self, relation: ops.Relation, matrix_auth_requirer_data: MatrixAuthRequirerData) -> None:
        """Update the relation data (the leader).

        Fernet tokens differ on every encryption, so the registration is rewritten only when the
        one in the databag does not decrypt to the same text.

        Args:
            relation: the relation for which to update the data.
            matrix_auth_requirer_data: MatrixAuthRequirerData wrapping the data to be updated.

        Raises:
            MatrixAuthError: if the provider's encryption key is not readable yet.
        """
        if not self.model.unit.is_leader() or matrix_auth_requirer_data.registration is None:
            return
        databag = relation.data[self.model.app]
        current = databag.get(REGISTRATION_SECRET_KEY)
        if current and relation.app is not None:
            key = MatrixAuthRequirerData.get_encryption_key_secret(
                self.model, relation.data[relation.app].get(ENCRYPTION_KEY_SECRET_ID_KEY)
            )
            try:
                unchanged = key is not None and decrypt_string(key, current) == (
                    matrix_auth_requirer_data.registration.get_secret_value()
                )
            except MatrixAuthError:
                unchanged = False
            if unchanged:
                return
        _write_changed(databag, matrix_auth_requirer_data.to_relation_data(self.model, relation))
