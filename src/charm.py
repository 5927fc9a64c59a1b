#!/usr/bin/env python3
"""The Synapse charm: one holistic reconcile from typed state to a running homeserver."""

import json
import logging

import ops

from backup_actions import BackupActions, BackupContext
from constants import (
    BACKUP_ENDPOINT,
    CHECK_READY,
    CONTAINER_NAME,
    DATABASE_ENDPOINT,
    GRAFANA_DASHBOARD_ENDPOINT,
    INGRESS_ENDPOINT,
    LEGACY_DB_ENDPOINT,
    LOGGING_ENDPOINT,
    MEDIA_ENDPOINT,
    METRICS_ENDPOINT,
    METRICS_PORT,
    NGINX_CONTAINER,
    NGINX_PORT,
    NGINX_ROUTE_ENDPOINT,
    PEER_RELATION,
    REDIS_ENDPOINT,
    SAML_ENDPOINT,
    SMTP_ENDPOINT,
    SYNAPSE_PORT,
    WELL_KNOWN_ACTION,
)
from database_lifecycle import DatabaseLifecycle
from main_unit import PROMOTE_ACTION, MainUnit
from outcomes import Desired, Hold, Outcome, PrepareDatabase, Standby, Stop
from relations.database import DatabaseRequires
from relations.grafana_dashboard import GrafanaDashboardProvider
from relations.ingress import IngressRequires
from relations.legacy_db import LegacyDatabaseRequires
from relations.logging import LokiPushRequirer
from relations.matrix_auth import MatrixAuthProvider
from relations.metrics import MetricsEndpointProvider, scrape_job
from relations.nginx_route import NginxRouteRequest, NginxRouteRequires, size_in_mebibytes
from relations.peers import PeerAddresses
from relations.redis import RedisRequires
from relations.s3 import S3Requires
from relations.saml import SamlRequires
from relations.smtp import SmtpRequires
from routing import ProxyRelations, RoutingError, well_known
from server_secrets import ensure_server_secrets
from state import CharmState, InvalidStateError, S3Connection, Workers, format_host_port, size_in_bytes
from topology import Topology, build_topology
from user_actions import ActionContext, UserActions
from workload.nginx import Nginx, NginxRoutes, render_nginx_config
from workload.saml import check_saml_support
from workload.service import MEDIA_PROVIDER_MODULE, Workload
from workload.synapse_api import SynapseAnswerError, SynapseAPIError, SynapseClient, SynapseUnavailableError

logger = logging.getLogger(__name__)


class SynapseCharm(ops.CharmBase):
    """Charm the Synapse homeserver."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.container = self.unit.get_container(CONTAINER_NAME)
        self.workload = Workload(self.container)
        self.nginx = Nginx(self.unit.get_container(NGINX_CONTAINER))
        self.database = DatabaseRequires(self, DATABASE_ENDPOINT)
        self.legacy_db = LegacyDatabaseRequires(self, LEGACY_DB_ENDPOINT)
        self.main_unit = MainUnit(self)
        self.peers = PeerAddresses(self)
        self.redis = RedisRequires(self, REDIS_ENDPOINT)
        self.database_lifecycle = DatabaseLifecycle(
            self, self.workload, self.database, self.legacy_db, main_unit=self.main_unit.recorded
        )
        self.smtp = SmtpRequires(self, SMTP_ENDPOINT)
        self.saml = SamlRequires(self, SAML_ENDPOINT)
        self.metrics = MetricsEndpointProvider(self, METRICS_ENDPOINT)
        self.dashboards = GrafanaDashboardProvider(self, GRAFANA_DASHBOARD_ENDPOINT)
        self.logging = LokiPushRequirer(self, LOGGING_ENDPOINT)
        self.matrix_auth = MatrixAuthProvider(self)
        self.ingress = IngressRequires(self, INGRESS_ENDPOINT)
        self.nginx_route = NginxRouteRequires(self, NGINX_ROUTE_ENDPOINT)
        self.backup = S3Requires(self, BACKUP_ENDPOINT)
        self.media = S3Requires(self, MEDIA_ENDPOINT)
        self._outcome: Outcome | None = None
        self._state: CharmState | InvalidStateError | None = None
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
            self.on[NGINX_CONTAINER].pebble_ready,
            self.on[PEER_RELATION].relation_created,
            self.on[PEER_RELATION].relation_changed,
            self.on[PEER_RELATION].relation_departed,
            self.on[REDIS_ENDPOINT].relation_changed,
            self.on[REDIS_ENDPOINT].relation_broken,
            self.on.data_storage_attached,
            self.on[DATABASE_ENDPOINT].relation_created,
            self.on[DATABASE_ENDPOINT].relation_changed,
            self.on[DATABASE_ENDPOINT].relation_broken,
            *self.legacy_db.events,
            *self.saml.events,
            *self.smtp.events,
            self.on[GRAFANA_DASHBOARD_ENDPOINT].relation_created,
            self.on[LOGGING_ENDPOINT].relation_broken,
            self.on[LOGGING_ENDPOINT].relation_changed,
            self.on[LOGGING_ENDPOINT].relation_departed,
            self.on[METRICS_ENDPOINT].relation_created,
            *self.matrix_auth.events,
            *self._proxy_events(),
            self.on[MEDIA_ENDPOINT].relation_changed,
            self.on[MEDIA_ENDPOINT].relation_broken,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(self.matrix_auth.broken, self._on_matrix_auth_broken)
        framework.observe(self.on[WELL_KNOWN_ACTION].action, self._on_get_well_known)
        framework.observe(self.on.secret_changed, self._on_secret_changed)
        framework.observe(self.on[PROMOTE_ACTION.replace("-", "_")].action, self._on_promote_main)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        self.user_actions = UserActions(self, self._action_server_name, self._action_context)
        self.backup_actions = BackupActions(self, self.backup, self.workload, self._backup_context)

    def _proxy_events(self) -> list[ops.BoundEvent]:
        """The reverse-proxy relation events that change routing."""
        return [
            event
            for endpoint in (INGRESS_ENDPOINT, NGINX_ROUTE_ENDPOINT)
            for event in (
                self.on[endpoint].relation_created,
                self.on[endpoint].relation_changed,
                self.on[endpoint].relation_broken,
            )
        ]

    # -- evaluation: what should run, from the typed state ------------------------------------

    def _charm_state(self) -> CharmState:
        """Config and routing parsed once per hook; InvalidStateError (cached too) on bad input."""
        if self._state is None:
            try:
                proxies = ProxyRelations(ingress=self.ingress.answer(), nginx_route=self.nginx_route.is_related())
                self._state = CharmState.from_charm(self, proxies=proxies)
            except InvalidStateError as exc:
                self._state = exc
        if isinstance(self._state, InvalidStateError):
            raise self._state
        return self._state

    def _evaluate(self) -> Outcome:
        """What this unit should do (cached per hook)."""
        if self._outcome is None:
            self._outcome = self._compute_outcome()
        return self._outcome

    def _compute_outcome(self) -> Outcome:
        """What to run here: the main process, a generic worker, or the same files on standby."""
        outcome = self._compute_leader_outcome()
        if not isinstance(outcome, Desired):
            return outcome
        try:
            redis = self._redis_section()
        except InvalidStateError as exc:
            return Hold(ops.BlockedStatus(str(exc)))
        topology = self._topology(outcome, redis)
        if topology is None or not topology.workers:
            return outcome if self.main_unit.is_main() else self._standby(outcome, topology, redis)
        state = outcome.state.model_copy(update={"workers": Workers(topology=topology, redis=redis)})
        if topology.role == "standby":
            return self._standby(Desired(state, outcome.secrets), topology, redis)
        return Desired(state, outcome.secrets, role=topology.role)

    def _redis_section(self) -> dict[str, str | int | bool]:
        """Synapse's `redis` section (InvalidStateError: bad relation data; {}: not related or no answer yet)."""
        endpoint = self.redis.endpoint()
        return endpoint.synapse_config() if endpoint is not None else {}

    def _topology(self, desired: Desired, redis: dict[str, str | int | bool]) -> Topology | None:
        """Where the processes run; None while the main unit or its address is unknown.

        Workers run only with the data in PostgreSQL, Redis answering (`redis`: its section)
        and the worker replication secret in place; otherwise the main runs alone.
        """
        main = self.main_unit.recorded() or (self.unit.name if self.unit.is_leader() else None)
        if main is None:
            return None
        workers_possible = (
            desired.state.database is not None and desired.secrets.worker_replication_secret is not None and bool(redis)
        )
        return build_topology(self.unit.name, main, self.peers.addresses(), workers_possible)

    def _standby(self, desired: Desired, topology: Topology | None, redis: dict[str, str | int | bool]) -> Standby:
        """A unit that runs no Synapse process keeps the server's files (its nginx sends requests to the main).

        A second main process would split the server (SQLite: a second server with the same
        identity; PostgreSQL: two main processes on one database). The files stay current so
        a unit that takes over starts at once.
        """
        gone = self.main_unit.gone()
        if gone is not None and self.database_lifecycle.data_in_postgresql():
            return Standby(desired.files, ops.WaitingStatus(f"the main unit {gone} is gone; the leader takes over"))
        if gone is not None:
            return Standby(
                desired.files,
                ops.BlockedStatus(
                    f"the main unit {gone} is gone, and the SQLite database and media store were on its storage: "
                    "no unit starts an empty server under the same identity on its own; to start one on the "
                    f"leader, run `juju run {self.app.name}/leader {PROMOTE_ACTION}` (then restore a backup if "
                    "you have one)"
                ),
            )
        main = self.main_unit.recorded() or "the leader"
        missing = [
            f"`juju integrate {self.app.name} {app}`"
            for app, related in (
                ("postgresql-k8s", self.database.is_related() or self.legacy_db.is_related()),
                ("redis-k8s", self.redis.is_related()),
            )
            if not related
        ]
        if missing:
            reason = f"relate {' and '.join(missing)} for workers"
            return Standby(
                desired.files, ops.BlockedStatus(f"standby: Synapse's main process runs on {main}; {reason}")
            )
        if desired.state.database is None:
            waiting = "the PostgreSQL database to be ready"
        elif not redis:
            waiting = "Redis to answer on the redis relation"
        elif desired.secrets.worker_replication_secret is None:
            waiting = "the leader to add the worker replication secret"
        elif topology is None:
            waiting = f"the address of the main unit {main}"
        else:
            waiting = "this unit's address on the peer relation"
        return Standby(desired.files, ops.WaitingStatus(f"standby: waiting for {waiting} before running a worker"))

    def _compute_leader_outcome(self) -> Outcome:
        """Parse inputs, fetch the secrets, then ask the database lifecycle; never raises on bad input."""
        state = self._typed_state()
        if isinstance(state, Hold):
            return state
        try:
            if state.saml is not None:
                check_saml_support(self.container)
            server_secrets = ensure_server_secrets(self)
        except InvalidStateError as exc:
            return Hold(ops.BlockedStatus(str(exc)))
        if server_secrets is None:
            return Hold(ops.WaitingStatus("waiting for the leader to create the server's secrets"))
        bridges = self.matrix_auth.evaluate(state.config.public_baseurl, server_secrets.registration_shared_secret)
        state = state.model_copy(update={"appservices": bridges.appservices})
        installed = self.workload.installed_server_name()
        if installed and installed != state.config.server_name and self.workload.has_data():
            return Hold(
                ops.BlockedStatus(
                    f"server_name cannot change from {installed} to {state.config.server_name} once the server "
                    f"has data; revert with `juju config {self.app.name} server_name={installed}`"
                )
            )
        return self.database_lifecycle.outcome(state, server_secrets)

    def _typed_state(self) -> CharmState | Hold:
        """The config, SMTP, SAML and media bucket as typed state, or a Hold saying why there is none."""
        try:
            state = self._charm_state()
            state = state.model_copy(update={"smtp": self.smtp.endpoint(), "saml": self.saml.provider()})
        except InvalidStateError as exc:
            return Hold(ops.BlockedStatus(str(exc)))
        if not self.container.can_connect():
            return Hold(ops.WaitingStatus("waiting for the synapse container"))
        return self._with_media(state)

    def _with_media(self, state: CharmState) -> CharmState | Hold:
        """`state` with the media relation's bucket, or a Hold saying why media on S3 cannot run."""
        try:
            media = self._media_storage()
        except InvalidStateError as exc:
            return Hold(ops.BlockedStatus(str(exc)))
        if isinstance(media, ops.StatusBase):
            return Hold(media)
        return state.model_copy(update={"media_storage": media}) if media else state

    def _media_storage(self) -> S3Connection | ops.StatusBase | None:
        """The media relation's bucket, if related and usable; else why not (InvalidStateError: bad data)."""
        if self.media.relation is None:
            return None
        connection = self.media.connection()
        if connection is None:
            return ops.WaitingStatus(f"waiting for the s3-integrator to provide the {MEDIA_ENDPOINT} bucket")
        remove = f"or remove the relation: `juju remove-relation {self.app.name}:{MEDIA_ENDPOINT} s3-integrator`"
        if connection.ca_chain:
            return ops.BlockedStatus(
                f"the {MEDIA_ENDPOINT} S3 endpoint uses a private CA (tls-ca-chain), which synapse-s3-storage-provider "
                f"cannot be given; use a publicly trusted certificate, {remove}"
            )
        if not self.workload.has_python_module(MEDIA_PROVIDER_MODULE):
            return ops.BlockedStatus(
                f"media on S3 needs synapse-s3-storage-provider in the Synapse image: use an image with "
                f"`pip install synapse-s3-storage-provider` in Synapse's Python, {remove}"
            )
        return connection

    # -- reconcile: bring the workload to the outcome --------------------------------------------

    def _reconcile(self, _: ops.EventBase | None = None) -> None:
        """Bring the workload to the desired state; a no-op when it is there already."""
        self._publish_main_unit()
        self.peers.publish()
        self._publish_database_request()
        self._publish_routes()
        evaluated = self._evaluate()
        outcome = self.database_lifecycle.prepare(evaluated) if isinstance(evaluated, PrepareDatabase) else evaluated
        self._outcome = outcome
        self._publish_observability(scraped=isinstance(outcome, Desired))
        self._apply(outcome)
        routes = self._nginx_routes(outcome)
        if routes is not None:
            self.nginx.apply(render_nginx_config(routes))

    def _apply(self, outcome: Desired | Standby | Hold | Stop) -> None:
        """Bring Synapse's container to `outcome` (a database already prepared)."""
        if isinstance(outcome, Desired):
            self.workload.apply(outcome.files, outcome.role)
            self._set_workload_version()
            return
        if isinstance(outcome, Standby):
            self.workload.sync_files(outcome.files)
            self.workload.remove_stale(outcome.files)
            self.workload.stop()
            return
        logger.info("not changing Synapse's configuration: %s", outcome.status.message)
        if not self.container.can_connect():
            return
        if isinstance(outcome, Stop):
            self.workload.stop()
        elif self.main_unit.is_main():
            self.workload.keep_running("main")
        elif self.workload.is_worker_configured():
            self.workload.keep_running("worker")

    def _nginx_routes(self, outcome: Outcome) -> NginxRoutes | None:
        """Where this unit's nginx sends requests; None (nginx left as it is) while the main's address is unknown.

        The worker endpoints go to this unit's worker, if it runs one; everything else to the main.
        """
        try:
            max_body_size = size_in_bytes(self._charm_state().config.max_upload_size)
        except InvalidStateError:
            return None
        main = self.main_unit.recorded() or (self.unit.name if self.unit.is_leader() else None)
        local = format_host_port("127.0.0.1", SYNAPSE_PORT)
        if main == self.unit.name:
            main_upstream = local
        elif main is not None and (address := self.peers.addresses().get(main)) is not None:
            main_upstream = format_host_port(address, SYNAPSE_PORT)
        else:
            return None
        worker = local if isinstance(outcome, Desired) and outcome.role == "worker" else None
        return NginxRoutes(main=main_upstream, worker=worker, max_body_size=max_body_size)

    def _publish_main_unit(self) -> None:
        """The leader mirrors the main unit's database record, then records the main unit (writes only on change).

        The record is mirrored first: whether a departed main is replaced depends on where the data is.
        """
        if not self.unit.is_leader():
            return
        self.database_lifecycle.mirror_record()
        self.main_unit.publish(data_is_local=not self.database_lifecycle.data_in_postgresql())
        self._outcome = None

    def _publish_database_request(self) -> None:
        """Ask the related PostgreSQL for our database (the leader; writes only on change)."""
        if self.unit.is_leader():
            self.database.publish_request(self.app.name)
            self.legacy_db.publish_request(self.app.name)

    def _publish_observability(self, scraped: bool) -> None:
        """Scrape job, alert rules, dashboard and log forwarding for the related COS charms (writes only on change).

        `scraped`: this unit runs a Synapse process (the main or a worker, each exposing metrics on
        METRICS_PORT), so its address is offered for scraping; the job's `*` targets list them all.
        """
        self.metrics.publish([scrape_job([METRICS_PORT])], scraped=scraped)
        self.dashboards.publish()
        if self.container.can_connect():
            targets = self.logging.log_targets(self.logging.loki_units().urls, dict(self.workload.plan().log_targets))
            if targets:
                self.workload.add_log_targets(targets)

    def _on_matrix_auth_broken(self, event: ops.RelationBrokenEvent) -> None:
        """A bridge left: revoke its access to our secrets, then reconcile (its registration goes)."""
        self.matrix_auth.revoke(event.relation)
        self._reconcile()

    def _on_promote_main(self, event: ops.ActionEvent) -> None:
        """Run the main process on this unit (the leader) after the main unit was lost."""
        if not self.unit.is_leader():
            event.fail(f"run {PROMOTE_ACTION} on the leader unit")
            return
        recorded = self.main_unit.recorded()
        if recorded is not None and recorded != self.unit.name and self.main_unit.gone() is None:
            event.fail(f"the main unit {recorded} is still part of the application; nothing to take over")
            return
        self.main_unit.promote()
        self._outcome = None
        self._reconcile()
        event.set_results({"main-unit": self.unit.name})

    def _publish_routes(self) -> None:
        """Ask the related reverse proxies to route to Synapse (changed keys only).

        nginx-route's hostnames come from the config: with invalid config (Blocked) the last
        request stays as it is.
        """
        self.ingress.publish(NGINX_PORT)
        if not self.nginx_route.is_related() or not self.unit.is_leader():
            return
        try:
            state = self._charm_state()
        except InvalidStateError:
            return
        hosts = state.routing.nginx_route_hosts
        if not hosts:
            return
        self.nginx_route.publish(
            NginxRouteRequest(
                hostname=hosts[0],
                additional_hostnames=hosts[1:],
                service_name=self.app.name,
                service_port=NGINX_PORT,
                namespace=self.model.name,
                max_body_size_mib=size_in_mebibytes(state.config.max_upload_size),
            )
        )

    def _on_secret_changed(self, _: ops.SecretChangedEvent) -> None:
        """A secret we read changed (server secrets or database credentials): reconcile."""
        self._reconcile()

    def _set_workload_version(self) -> None:
        """Record the version the running Synapse reports, when it answers."""
        if not self._is_ready():
            return
        try:
            version = SynapseClient(timeout=2).version()
        except (SynapseUnavailableError, SynapseAPIError):
            return
        except SynapseAnswerError as exc:
            logger.warning("not recording the workload version: %s", exc)
            return
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
        outcome = self._evaluate()
        for problem in self.logging.loki_units().problems:
            event.add_status(ops.BlockedStatus(problem))
        bridges = self.matrix_auth.status()
        if isinstance(outcome, Desired) and bridges is not None:
            event.add_status(bridges)
        if isinstance(outcome, Hold | Stop | Standby):
            event.add_status(outcome.status)
        elif isinstance(outcome, PrepareDatabase):
            event.add_status(ops.MaintenanceStatus("preparing the PostgreSQL database"))
        elif not self.workload.is_running():
            event.add_status(ops.MaintenanceStatus("starting Synapse"))
        elif not self._is_ready():
            event.add_status(ops.WaitingStatus("waiting for Synapse to become ready"))
        routing = outcome.state.routing if isinstance(outcome, Desired) else None
        if routing is not None and routing.waiting:
            event.add_status(ops.WaitingStatus(routing.waiting))
        notes = [self._role_note(outcome), routing.notice if routing is not None else ""]
        event.add_status(ops.ActiveStatus("; ".join(note for note in notes if note)))

    @staticmethod
    def _role_note(outcome: Outcome) -> str:
        """What an Active unit runs, once there are workers ("" for a main running alone)."""
        workers = outcome.state.workers if isinstance(outcome, Desired) else None
        if workers is None or not workers.active:
            return ""
        topology = workers.topology
        if topology.role == "worker":
            return f"generic worker {topology.this_worker} (main process on {topology.main.unit})"
        count = len(topology.workers)
        return f"main process, with {count} generic worker{'s' if count > 1 else ''}"

    # -- actions -------------------------------------------------------------------------------

    def _backup_context(self) -> BackupContext | str:
        """What the backup actions need from the running server, or why this unit cannot act."""
        outcome = self._evaluate()
        if not isinstance(outcome, Desired):
            reason = outcome.status.message if isinstance(outcome, Hold | Stop | Standby) else "preparing the database"
            return f"the unit is not ready for backups: {reason}"
        if outcome.role != "main":
            return self._not_on_main()
        if not self.workload.is_running():
            return "Synapse is not running yet; retry once the unit is active"
        return BackupContext(state=outcome.state, secrets=outcome.secrets)

    def _not_on_main(self) -> str:
        """Why an action that needs the main process cannot run on this (worker) unit."""
        main = self.main_unit.recorded() or "the leader"
        return f"this unit runs a worker; run the action on the main unit: `juju run {main} ...`"

    def _action_server_name(self) -> str:
        """The configured server name; InvalidStateError when the config is invalid."""
        return self._charm_state().config.server_name

    def _on_get_well_known(self, event: ops.ActionEvent) -> None:
        """The .well-known delegation documents, where to serve them, and whether Synapse does."""
        try:
            state = self._charm_state()
            documents = well_known(state.config.server_name, state.routing)
        except (InvalidStateError, RoutingError) as exc:
            event.fail(str(exc))
            return
        if documents.served_by_synapse:
            message = "Synapse serves both documents itself (the server_name's host is routed to it): nothing to do"
        else:
            message = (
                f"serve these two documents, with Content-Type application/json, at {documents.server_url} and "
                f"{documents.client_url} (the client document also with Access-Control-Allow-Origin: *)"
            )
        event.set_results(
            {
                "served-by-synapse": str(documents.served_by_synapse).lower(),
                "server-url": documents.server_url,
                "server": json.dumps(documents.server),
                "client-url": documents.client_url,
                "client": json.dumps(documents.client),
                "message": message,
            }
        )

    def _action_context(self) -> ActionContext | str:
        """What actions need to call this unit's Synapse, or why they cannot yet."""
        outcome = self._evaluate()
        if not isinstance(outcome, Desired):
            reason = outcome.status.message if isinstance(outcome, Hold | Stop | Standby) else "preparing the database"
            return f"the unit is not ready for this action: {reason}"
        if outcome.role != "main":
            return self._not_on_main()
        client = SynapseClient()
        if not self.workload.is_running() or not client.is_healthy():
            return "Synapse is not ready yet; retry once the unit is active"
        return ActionContext(
            server_name=outcome.state.config.server_name,
            registration_shared_secret=outcome.secrets.registration_shared_secret,
            client=client,
        )


if __name__ == "__main__":  # pragma: nocover
    ops.main(SynapseCharm)
