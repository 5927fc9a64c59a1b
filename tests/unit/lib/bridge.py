"""A bridge charm built on our matrix_auth library, and carrying relation data between two contexts.

The provider (the Synapse charm, or a minimal provider) and the bridge run in separate
ops.testing contexts, as two applications do under Juju. What Juju would carry between them
is copied explicitly: the provider's app databag and the secrets it granted to a relation go
to the bridge; the bridge's app databag comes back.
"""

import dataclasses
import typing

import ops
from charms.synapse.v1.matrix_auth import (
    MatrixAuthError,
    MatrixAuthProviderData,
    MatrixAuthRequestProcessed,
    MatrixAuthRequirerData,
    MatrixAuthRequires,
)
from ops import testing
from pydantic import SecretStr

ENDPOINT = "matrix-auth"
BRIDGE_META: dict[str, typing.Any] = {
    "name": "bridge",
    "requires": {ENDPOINT: {"interface": "matrix_auth"}},
}
BRIDGE_CONFIG: dict[str, typing.Any] = {"options": {"registration": {"type": "string", "default": ""}}}
PROVIDER_APP = "synapse"

# What the bridges saw, in order (cleared by `bridge_context`).
SEEN: list[MatrixAuthProviderData] = []


def registration_yaml(name: str = "irc", *, url: str = "http://10.1.2.3:8090", **overrides: str) -> str:
    """A registration such as a bridge generates (tokens derived from `name`, so they differ per bridge)."""
    fields = {
        "id": name,
        "url": url,
        "as_token": f"{name}-as-token-0123456789",
        "hs_token": f"{name}-hs-token-9876543210",
        "sender_localpart": f"{name}bot",
        **overrides,
    }
    lines = [f"{key}: {value}" for key, value in fields.items()]
    lines += [
        "namespaces:",
        "  users:",
        "    - exclusive: true",
        f'      regex: "@{name}_.*:example\\\\.com"',
        "  aliases: []",
        "  rooms: []",
        "rate_limited: false",
        "protocols: [irc]",
    ]
    return "\n".join(lines) + "\n"


class BridgeCharm(ops.CharmBase):
    """A bridge: on matrix_auth_request_processed, records the provider data and sends its registration."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.matrix_auth = MatrixAuthRequires(self)
        framework.observe(self.matrix_auth.on.matrix_auth_request_processed, self._on_processed)

    def _on_processed(self, event: MatrixAuthRequestProcessed) -> None:
        provider = event.get_matrix_auth_provider_relation_data()
        SEEN.append(provider)
        registration = str(self.config.get("registration") or "")
        if registration:
            data = MatrixAuthRequirerData(registration=SecretStr(registration))
            try:
                self.matrix_auth.update_relation_data(event.relation, data)
            except MatrixAuthError as exc:
                self.unit.status = ops.WaitingStatus(str(exc))
                return
        self.unit.status = ops.ActiveStatus()


def relation_of(state: testing.State, relation_id: int) -> testing.Relation:
    """A (regular) relation of `state`, typed."""
    return typing.cast(testing.Relation, state.get_relation(relation_id))


def databag(state: testing.State, relation_id: int) -> dict[str, str]:
    """Our app databag on a relation of `state`."""
    return dict(relation_of(state, relation_id).local_app_data)


def content(secret: testing.Secret) -> dict[str, str]:
    """A secret's latest content."""
    return dict(secret.latest_content or {})


def with_relation(state: testing.State, relation: testing.RelationBase) -> testing.State:
    """`state` with `relation` added, or replacing the relation with its ID."""
    others = [rel for rel in state.relations if rel.id != relation.id]
    return dataclasses.replace(state, relations=frozenset({*others, relation}))


def bridge_context() -> testing.Context[BridgeCharm]:
    """A context for the bridge charm; forgets what earlier bridges saw."""
    SEEN.clear()
    return testing.Context(BridgeCharm, meta=BRIDGE_META, config=BRIDGE_CONFIG)


@dataclasses.dataclass
class Bridge:
    """One bridge application: its context and state, related to the provider on `relation_id`."""

    relation_id: int
    registration: str = ""
    ctx: testing.Context[BridgeCharm] = dataclasses.field(default_factory=bridge_context)
    state: testing.State = dataclasses.field(default_factory=lambda: testing.State(leader=True))

    def __post_init__(self) -> None:
        """Relate the bridge to the provider."""
        relation = testing.Relation(ENDPOINT, id=self.relation_id, remote_app_name=PROVIDER_APP)
        self.state = dataclasses.replace(
            self.state, relations=frozenset({relation}), config={"registration": self.registration}
        )

    @property
    def relation(self) -> testing.Relation:
        return relation_of(self.state, self.relation_id)

    def receive(self, provider: testing.State) -> testing.State:
        """Copy the provider's app databag and the secrets granted to this relation, then run relation-changed."""
        granted = frozenset(
            testing.Secret(content(secret), id=secret.id)
            for secret in provider.secrets
            if self.relation_id in secret.remote_grants
        )
        relation = dataclasses.replace(self.relation, remote_app_data=databag(provider, self.relation_id))
        state = dataclasses.replace(with_relation(self.state, relation), secrets=granted)
        self.state = self.ctx.run(self.ctx.on.relation_changed(relation), state)
        return self.state

    def send(self, provider: testing.State) -> testing.State:
        """The provider's state with this bridge's app databag as the relation's remote app data."""
        theirs = relation_of(provider, self.relation_id)
        return with_relation(
            provider, dataclasses.replace(theirs, remote_app_data=databag(self.state, self.relation_id))
        )
