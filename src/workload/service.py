"""Synapse in the workload container: rendered files, the Pebble layer, and applying them.

Applying is idempotent: files are compared with what the container holds and only changed
ones are pushed; Synapse is (re)started only when a file it reads or its layer changed.
"""

import dataclasses
import functools
import logging
import typing
from pathlib import Path, PurePosixPath

import jinja2
import ops
import yaml

from constants import (
    APPSERVICES_DIR,
    CHECK_ALIVE,
    CHECK_READY,
    CONFIG_PATH,
    CONTAINER_NAME,
    DATA_DIR,
    DATABASE_CA_PATH,
    FORM_SECRET_PATH,
    LOG_CONFIG_PATH,
    MACAROON_SECRET_PATH,
    MEDIA_STORE_DIR,
    METRICS_PORT,
    REGISTRATION_SECRET_PATH,
    REPLICATION_PORT,
    SAML_IDP_METADATA_PATH,
    SECRETS_DIR,
    SERVICE_NAME,
    SIGNING_KEY_PATH,
    SQLITE_DIR,
    SQLITE_PATH,
    SYNAPSE_GID,
    SYNAPSE_PORT,
    SYNAPSE_UID,
    TURN_SECRET_PATH,
    WORKER_CONFIG_PATH,
    WORKER_REPLICATION_SECRET_PATH,
)
from server_secrets import ServerSecrets
from state import CharmState, validate_server_name
from topology import Role
from workload.pebble import layer_differs

logger = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"

# The Python module of synapse-s3-storage-provider (media on S3), looked for in the image.
MEDIA_PROVIDER_MODULE = "s3_storage_provider"
_FIND_MODULE = "import importlib.util, sys; print('found' if importlib.util.find_spec(sys.argv[1]) else 'missing')"

# Directories Synapse writes to, created owned by Synapse's uid with these modes.
DIRECTORIES = {SECRETS_DIR: 0o700, MEDIA_STORE_DIR: 0o750, SQLITE_DIR: 0o750, APPSERVICES_DIR: 0o700}
# Directories holding only files the charm renders: a file there that it no longer renders is removed.
OWNED_DIRECTORIES = (APPSERVICES_DIR,)
# Files the charm renders only in some setups, removed when it no longer renders them.
OPTIONAL_FILES = (WORKER_CONFIG_PATH, WORKER_REPLICATION_SECRET_PATH)
# How Pebble runs each role's process (a standby unit runs none).
COMMANDS: dict[Role, str] = {
    "main": f"python -m synapse.app.homeserver --config-path {CONFIG_PATH}",
    "worker": f"python -m synapse.app.generic_worker --config-path {CONFIG_PATH} --config-path {WORKER_CONFIG_PATH}",
}


@dataclasses.dataclass(frozen=True)
class WorkloadFile:
    """A file the charm owns in the container."""

    content: str
    permissions: int = 0o644


def _yaml_scalar(value: object, style: str | None = None) -> str:
    """One scalar as PyYAML (the parser Synapse uses) writes it, on one line."""
    dumped = yaml.safe_dump(value, default_style=style, width=2**31, allow_unicode=False)
    return dumped.removesuffix("\n...\n").rstrip("\n")


def _yaml_value(value: object) -> str:
    """Serialise a value as a one-line YAML flow node that parses back to exactly `value`.

    Strings are always double-quoted with every non-printable or non-ASCII character escaped,
    so no input (quotes, newlines, tags, `{{ }}`, Unicode line separators) can change the
    structure of the document around it, wherever in the template the node stands.
    """
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_yaml_value(key)}: {_yaml_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml_value(item) for item in value) + "]"
    if isinstance(value, str):
        return _yaml_scalar(value, '"')
    return _yaml_scalar(value)


@functools.cache
def _environment() -> jinja2.Environment:
    """The Jinja environment: strict undefined, no autoescape (YAML, not HTML), a yaml filter."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 (YAML output; values go through the yaml filter)
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["yaml"] = _yaml_value
    return env


def render_homeserver_config(state: CharmState) -> str:
    """homeserver.yaml for `state`."""
    config = state.config
    return (
        _environment()
        .get_template("homeserver.yaml.j2")
        .render(
            config=config,
            # nginx (src/workload/nginx.py) is in front of every Synapse process and replaces
            # X-Forwarded-For with the client address it saw, so Synapse believes it.
            x_forwarded=True,
            workers=state.workers if state.workers is not None and state.workers.active else None,
            replication_port=REPLICATION_PORT,
            serve_server_wellknown=state.serve_server_wellknown,
            database_args=state.database_args(),
            email=state.email_config(),
            saml2=state.saml2_config(),
            database_allow_unsafe_locale=bool(state.database and state.database.allow_unsafe_locale),
            media_storage=state.media_storage.synapse_provider_config() if state.media_storage else None,
            synapse_port=SYNAPSE_PORT,
            metrics_port=METRICS_PORT,
            trusted_key_servers=[{"server_name": name} for name in config.trusted_key_servers],
            app_service_config_files=[appservice.path for appservice in state.appservices],
            paths={
                "sqlite": str(SQLITE_PATH),
                "log_config": str(LOG_CONFIG_PATH),
                "media_store": str(MEDIA_STORE_DIR),
                "signing_key": str(SIGNING_KEY_PATH),
                "registration_secret": str(REGISTRATION_SECRET_PATH),
                "macaroon_secret": str(MACAROON_SECRET_PATH),
                "form_secret": str(FORM_SECRET_PATH),
                "turn_shared_secret": str(TURN_SECRET_PATH),
                "worker_replication_secret": str(WORKER_REPLICATION_SECRET_PATH),
            },
        )
    )


def render_log_config(state: CharmState) -> str:
    """Synapse's Python logging config for `state`."""
    return _environment().get_template("log.config.j2").render(log_level=state.config.log_level)


def render_worker_config(state: CharmState, worker_name: str) -> str:
    """worker.yaml of the generic worker `worker_name`."""
    return (
        _environment()
        .get_template("worker.yaml.j2")
        .render(
            worker_name=worker_name,
            x_forwarded=True,  # behind nginx, as the main's listener
            synapse_port=SYNAPSE_PORT,
            replication_port=REPLICATION_PORT,
            metrics_port=METRICS_PORT,
            log_config=str(LOG_CONFIG_PATH),
        )
    )


def _worker_files(state: CharmState, secrets: ServerSecrets) -> dict[PurePosixPath, WorkloadFile]:
    """The replication secret (every process, once workers run) and worker.yaml (a worker unit)."""
    workers = state.workers
    if workers is None or not workers.active or secrets.worker_replication_secret is None:
        return {}
    files = {WORKER_REPLICATION_SECRET_PATH: WorkloadFile(secrets.worker_replication_secret, 0o600)}
    if workers.topology.role == "worker":
        files[WORKER_CONFIG_PATH] = WorkloadFile(render_worker_config(state, workers.topology.this_worker))
    return files


def render_files(state: CharmState, secrets: ServerSecrets) -> dict[PurePosixPath, WorkloadFile]:
    """Every file Synapse reads, keyed by its path in the container."""
    files = {
        # 0600: it may hold the database and SMTP passwords.
        CONFIG_PATH: WorkloadFile(render_homeserver_config(state), 0o600),
        LOG_CONFIG_PATH: WorkloadFile(render_log_config(state)),
        SIGNING_KEY_PATH: WorkloadFile(secrets.signing_key + "\n", 0o600),
        REGISTRATION_SECRET_PATH: WorkloadFile(secrets.registration_shared_secret, 0o600),
        MACAROON_SECRET_PATH: WorkloadFile(secrets.macaroon_secret_key, 0o600),
        FORM_SECRET_PATH: WorkloadFile(secrets.form_secret, 0o600),
    }
    if state.turn_shared_secret is not None:
        files[TURN_SECRET_PATH] = WorkloadFile(state.turn_shared_secret, 0o600)
    if state.database is not None and state.database.tls_ca:
        files[DATABASE_CA_PATH] = WorkloadFile(state.database.tls_ca, 0o600)
    if state.saml is not None and not state.saml.metadata_url:
        from workload.saml import idp_metadata_xml  # noqa: PLC0415 (only with a saml relation)

        files[SAML_IDP_METADATA_PATH] = WorkloadFile(idp_metadata_xml(state.saml))
    for appservice in state.appservices:  # 0600: they hold the appservices' tokens
        files[PurePosixPath(appservice.path)] = WorkloadFile(appservice.content, 0o600)
    return files | _worker_files(state, secrets)


def pebble_layer(role: Role = "main") -> ops.pebble.LayerDict:
    """The Pebble layer running Synapse's main process or a generic worker from the image, as a non-root user.

    Both serve clients on SYNAPSE_PORT, so the service and its checks are the same.
    """
    return {
        "summary": "Synapse homeserver",
        "description": "Matrix Synapse, configured by the Synapse charm",
        "services": {
            SERVICE_NAME: {
                "override": "replace",
                "summary": "Synapse homeserver",
                "command": COMMANDS["worker" if role == "worker" else "main"],
                "startup": "enabled",
                "user-id": SYNAPSE_UID,
                "group-id": SYNAPSE_GID,
                "working-dir": str(DATA_DIR),
                "environment": {"PYTHONUNBUFFERED": "1"},
            }
        },
        "checks": {
            CHECK_ALIVE: {
                "override": "replace",
                "level": "alive",
                "period": "30s",
                "threshold": 5,
                "tcp": {"port": SYNAPSE_PORT},
            },
            CHECK_READY: {
                "override": "replace",
                "level": "ready",
                "period": "10s",
                "threshold": 3,
                "http": {"url": f"http://localhost:{SYNAPSE_PORT}/health"},
            },
        },
    }


class Workload:
    """Synapse's container, as the charm drives it."""

    def __init__(self, container: ops.Container):
        self.container = container
        # homeserver.yaml as found in the container, read once per hook (None: not read yet).
        self._installed: tuple[dict[str, typing.Any] | None] | None = None
        # Pebble's plan, fetched once per hook and again after a layer is added.
        self._plan: ops.pebble.Plan | None = None

    def plan(self) -> ops.pebble.Plan:
        """The container's Pebble plan (fetched at most once between layer changes)."""
        if self._plan is None:
            self._plan = self.container.get_plan()
        return self._plan

    def _add_layer(self, layer: ops.pebble.LayerDict) -> None:
        """Combine `layer` into the charm's layer."""
        self._plan = None
        self.container.add_layer(CONTAINER_NAME, layer, combine=True)

    def _read(self, path: PurePosixPath) -> str | None:
        """Current content of a file in the container, None if absent."""
        try:
            return self.container.pull(path, encoding="utf-8").read()
        except (ops.pebble.PathError, FileNotFoundError):
            return None

    def installed_config(self) -> dict[str, typing.Any] | None:
        """The homeserver.yaml in place (None if Synapse was never configured here)."""
        if self._installed is None:
            self._installed = (self._load_installed_config(),)
        return self._installed[0]

    def _load_installed_config(self) -> dict[str, typing.Any] | None:
        """Read and parse the homeserver.yaml in the container."""
        content = self._read(CONFIG_PATH)
        if content is None:
            return None
        try:
            loaded = yaml.safe_load(content)
        except yaml.YAMLError:
            return None
        return loaded if isinstance(loaded, dict) else None

    def installed_server_name(self) -> str | None:
        """The server_name of the homeserver.yaml in place, if Synapse was ever configured here."""
        name = (self.installed_config() or {}).get("server_name")
        try:
            return validate_server_name(name) if isinstance(name, str) else None
        except ValueError:
            return None

    def installed_engine(self) -> str | None:
        """The database engine of the homeserver.yaml in place: 'sqlite3', 'psycopg2' or None."""
        database = (self.installed_config() or {}).get("database")
        name = database.get("name") if isinstance(database, dict) else None
        return str(name) if name else None

    def has_python_module(self, name: str) -> bool:
        """Whether the image's Python can import module `name` (looked up, not imported)."""
        try:
            stdout, _ = self.container.exec(["python", "-c", _FIND_MODULE, name], timeout=60).wait_output()
        except (ops.pebble.ExecError, ops.pebble.APIError, ops.pebble.TimeoutError, ops.pebble.ConnectionError):
            return False
        return str(stdout).strip() == "found"

    def has_sqlite_data(self) -> bool:
        """Whether Synapse has created its SQLite database here."""
        return bool(self.container.exists(SQLITE_PATH))

    def has_data(self) -> bool:
        """Whether the server holds data: a SQLite database here, or a PostgreSQL one in use."""
        return self.has_sqlite_data() or self.installed_engine() == "psycopg2"

    def push(self, path: PurePosixPath, file: WorkloadFile) -> None:
        """Push one file, owned by Synapse."""
        if path == CONFIG_PATH:
            self._installed = None
        self.container.push(
            path,
            file.content,
            encoding="utf-8",
            make_dirs=True,
            permissions=file.permissions,
            user_id=SYNAPSE_UID,
            group_id=SYNAPSE_GID,
        )

    def remove(self, path: PurePosixPath) -> None:
        """Remove a file if it exists."""
        if self.container.exists(path):
            self.container.remove_path(path)

    def _ensure_directories(self) -> None:
        """Create the directories Synapse writes to, owned by Synapse."""
        for path, mode in DIRECTORIES.items():
            if not self.container.exists(path):
                self.container.make_dir(
                    path, make_parents=True, permissions=mode, user_id=SYNAPSE_UID, group_id=SYNAPSE_GID
                )

    def sync_files(self, files: dict[PurePosixPath, WorkloadFile]) -> list[PurePosixPath]:
        """Push the files whose content differs from the container's; return their paths."""
        self._ensure_directories()
        changed = []
        for path, file in files.items():
            if self._read(path) == file.content:
                continue
            self.push(path, file)
            changed.append(path)
        return changed

    def remove_stale(self, files: dict[PurePosixPath, WorkloadFile]) -> list[PurePosixPath]:
        """Remove the files in the charm's own directories that are not in `files`; return their paths."""
        removed = []
        for directory in OWNED_DIRECTORIES:
            if not self.container.exists(directory):
                continue
            for info in self.container.list_files(directory):
                path = PurePosixPath(info.path)
                if info.type == ops.pebble.FileType.FILE and path not in files:
                    self.container.remove_path(path)
                    removed.append(path)
        for path in OPTIONAL_FILES:
            if path not in files and self.container.exists(path):
                self.container.remove_path(path)
                removed.append(path)
        return removed

    def _layer_changed(self, layer: ops.pebble.LayerDict) -> bool:
        """Whether the plan differs from `layer` for Synapse's service or checks."""
        return layer_differs(self.plan(), layer)

    def is_running(self) -> bool:
        """Whether Pebble reports Synapse's service as running."""
        try:
            return self.container.get_service(SERVICE_NAME).is_running()
        except ops.ModelError:
            return False

    def is_configured(self) -> bool:
        """Whether the charm has configured Synapse in this container before."""
        return bool(self.container.exists(CONFIG_PATH))

    def is_worker_configured(self) -> bool:
        """Whether this container holds a worker's config (the unit last ran a generic worker)."""
        return bool(self.container.exists(WORKER_CONFIG_PATH))

    def keep_running(self, role: Role = "main") -> None:
        """Keep Synapse's `role` process running on the files already in place, pushing nothing.

        Used while the charm is blocked: a restarted pod gets Synapse back on its last good config.
        """
        if self.is_configured():
            self.apply({}, role)

    def apply(self, files: dict[PurePosixPath, WorkloadFile], role: Role = "main") -> None:
        """Bring the container to `files` plus the layer of `role`, restarting Synapse only if needed."""
        changed = self.sync_files(files) + self.remove_stale(files) if files else []
        layer = pebble_layer(role)
        layer_changed = self._layer_changed(layer)
        if layer_changed:
            self._add_layer(layer)
        if not self.is_running():
            logger.info("starting Synapse")
            self.container.replan()
        elif layer_changed:
            logger.info("Synapse's Pebble layer changed: replanning")
            self.container.replan()
        elif changed:
            logger.info("restarting Synapse: %s changed", ", ".join(map(str, changed)))
            self.container.restart(SERVICE_NAME)

    def add_log_targets(self, log_targets: dict[str, typing.Any]) -> None:
        """Add or change Pebble log targets; Pebble applies them at once, so nothing is replanned or restarted."""
        logger.info("updating Pebble log forwarding: %s", ", ".join(sorted(log_targets)))
        self._add_layer({"log-targets": log_targets})

    def stop(self) -> None:
        """Stop Synapse if it is running."""
        if self.is_running():
            self.container.stop(SERVICE_NAME)
