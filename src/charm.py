#!/usr/bin/env python3
"""The Synapse charm: one holistic reconcile from typed state to a running homeserver."""

import dataclasses
import logging
from pathlib import PurePosixPath

import ops

from constants import CHECK_READY, CONTAINER_NAME, PEER_RELATION
from server_secrets import ServerSecrets, ensure_server_secrets
from state import CharmState, InvalidStateError
from synapse_api import SynapseAPIError, SynapseClient, SynapseUnavailableError
from user_actions import ActionContext, UserActions
from workload import Workload, WorkloadFile, render_files

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Desired:
    """What the unit should run: the typed state, the secrets, and the rendered files."""

    state: CharmState
    secrets: ServerSecrets
    files: dict[PurePosixPath, WorkloadFile]


class SynapseCharm(ops.CharmBase):
    """Charm the Synapse homeserver."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.container = self.unit.get_container(CONTAINER_NAME)
        self.workload = Workload(self.container)
        self._desired: Desired | ops.StatusBase | None = None
        for event in (
            self.on.install,
            self.on.start,
            self.on.upgrade_charm,
            self.on.config_changed,
            self.on.leader_elected,
            self.on.update_status,
            self.on[CONTAINER_NAME].pebble_ready,
            self.on[CONTAINER_NAME].pebble_check_failed,
            self.on[CONTAINER_NAME].pebble_check_recovered,
            self.on[PEER_RELATION].relation_created,
            self.on[PEER_RELATION].relation_changed,
            self.on.data_storage_attached,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(self.on.secret_changed, self._on_secret_changed)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        self.user_actions = UserActions(self, self._action_server_name, self._action_context)

    def _evaluate(self) -> Desired | ops.StatusBase:
        """What this unit should run, or the status saying why it cannot (cached per hook)."""
        if self._desired is None:
            self._desired = self._compute_desired()
        return self._desired

    def _compute_desired(self) -> Desired | ops.StatusBase:
        """Parse inputs, fetch the secrets and render; never raises on bad input."""
        try:
            state = CharmState.from_charm(self)
        except InvalidStateError as exc:
            return ops.BlockedStatus(str(exc))
        if not self.container.can_connect():
            return ops.WaitingStatus("waiting for the synapse container")
        try:
            server_secrets = ensure_server_secrets(self)
        except InvalidStateError as exc:
            return ops.BlockedStatus(str(exc))
        if server_secrets is None:
            return ops.WaitingStatus("waiting for the leader to create the server's secrets")
        installed = self.workload.installed_server_name()
        if installed and installed != state.config.server_name and self.workload.has_data():
            return ops.BlockedStatus(
                f"server_name cannot change from {installed} to {state.config.server_name} once the server "
                f"has data; revert with `juju config {self.app.name} server_name={installed}`"
            )
        return Desired(state, server_secrets, render_files(state, server_secrets))

    def _reconcile(self, _: ops.EventBase | None = None) -> None:
        """Bring the workload to the desired state; a no-op when it is there already."""
        desired = self._evaluate()
        if not isinstance(desired, Desired):
            logger.info("not changing Synapse's configuration: %s", desired.message)
            if self.container.can_connect():
                self.workload.keep_running()
            return
        self.workload.apply(desired.files)
        self._set_workload_version()

    def _on_secret_changed(self, _: ops.SecretChangedEvent) -> None:
        """The server secret changed (a new revision): re-render what depends on it."""
        self._reconcile()

    def _set_workload_version(self) -> None:
        """Record the version the running Synapse reports, when it answers."""
        if not self._is_ready():
            return
        try:
            version = SynapseClient(timeout=2).version()
        except (SynapseUnavailableError, SynapseAPIError):
            return
        if version:
            self.unit.set_workload_version(version)

    def _is_ready(self) -> bool:
        """Whether Synapse runs and its Pebble ready check has passed since it last failed.

        Pebble reports a check as up before it has run, so a success is required too.
        """
        if not self.workload.is_running():
            return False
        check = self.container.get_checks(CHECK_READY).get(CHECK_READY)
        if check is None or check.status != ops.pebble.CheckStatus.UP:
            return False
        return check.successes is None or check.successes > 0

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        """The unit's status, derived from the same evaluation as the reconcile."""
        desired = self._evaluate()
        if not isinstance(desired, Desired):
            event.add_status(desired)
        elif not self.workload.is_running():
            event.add_status(ops.MaintenanceStatus("starting Synapse"))
        elif not self._is_ready():
            event.add_status(ops.WaitingStatus("waiting for Synapse to become ready"))
        event.add_status(ops.ActiveStatus())

    def _action_server_name(self) -> str:
        """The configured server name; InvalidStateError when the config is invalid."""
        return CharmState.from_charm(self).config.server_name

    def _action_context(self) -> ActionContext | str:
        """What actions need to call this unit's Synapse, or why they cannot yet."""
        desired = self._evaluate()
        if not isinstance(desired, Desired):
            return f"the unit is not ready for this action: {desired.message}"
        client = SynapseClient()
        if not self.workload.is_running() or not client.is_healthy():
            return "Synapse is not ready yet; retry once the unit is active"
        return ActionContext(
            server_name=desired.state.config.server_name,
            registration_shared_secret=desired.secrets.registration_shared_secret,
            client=client,
        )


if __name__ == "__main__":  # pragma: nocover
    ops.main(SynapseCharm)
