"""Names, paths and versions shared by the charm and its tests."""

from pathlib import PurePosixPath

# The upstream Synapse release the charm is built and tested for. The OCI image tag in
# metadata.yaml and the matrix-synapse version the workload tests install are this one.
SYNAPSE_VERSION = "1.163.2"

CONTAINER_NAME = "synapse"
SERVICE_NAME = "synapse"
PEER_RELATION = "synapse-peers"

# Pebble checks
CHECK_ALIVE = "synapse-alive"
CHECK_READY = "synapse-ready"

# Synapse runs as this non-root uid/gid, as in the upstream image.
SYNAPSE_UID = 991
SYNAPSE_GID = 991

SYNAPSE_PORT = 8008
METRICS_PORT = 9000
# Replication between the main process and the workers (HTTP, listed in instance_map).
REPLICATION_PORT = 9093

# The nginx sidecar in front of Synapse on every unit: ingress and nginx-route point at it.
NGINX_CONTAINER = "nginx"
NGINX_SERVICE = "nginx"
NGINX_CONFIG_PATH = PurePosixPath("/etc/nginx/nginx.conf")
NGINX_PORT = 8080

# Files and directories inside the workload container. Everything Synapse reads or writes
# is under the `data` storage so that a replaced pod keeps it.
DATA_DIR = PurePosixPath("/data")
CONFIG_PATH = DATA_DIR / "homeserver.yaml"
LOG_CONFIG_PATH = DATA_DIR / "log.config"
SECRETS_DIR = DATA_DIR / "secrets"
SIGNING_KEY_PATH = SECRETS_DIR / "signing.key"
REGISTRATION_SECRET_PATH = SECRETS_DIR / "registration_shared_secret"
MACAROON_SECRET_PATH = SECRETS_DIR / "macaroon_secret_key"
FORM_SECRET_PATH = SECRETS_DIR / "form_secret"
TURN_SECRET_PATH = SECRETS_DIR / "turn_shared_secret"
WORKER_REPLICATION_SECRET_PATH = SECRETS_DIR / "worker_replication_secret"
# A worker unit's own config, read after homeserver.yaml (which every unit shares).
WORKER_CONFIG_PATH = DATA_DIR / "worker.yaml"
MEDIA_STORE_DIR = DATA_DIR / "media_store"
SQLITE_DIR = DATA_DIR / "db"
SQLITE_PATH = SQLITE_DIR / "homeserver.db"

# Juju secret holding the server's identity, and the peer app-data key that references it.
SECRET_LABEL = "synapse-server-secrets"  # noqa: S105 (a label, not a secret)
PEER_SECRET_ID_KEY = "server-secrets-id"  # noqa: S105 (a databag key)

# The charm's own Synapse admin account (one per unit), kept in a unit-owned Juju secret.
ADMIN_SECRET_LABEL = "synapse-admin-credentials"  # noqa: S105 (a label, not a secret)
ADMIN_LOCALPART = "synapse-charm-admin"

# PostgreSQL relations and the peer-data record of the database Synapse runs on.
DATABASE_ENDPOINT = "database"
LEGACY_DB_ENDPOINT = "db"
DATABASE_CA_PATH = SECRETS_DIR / "postgresql-ca.pem"
PORT_CONFIG_PATH = SECRETS_DIR / "homeserver-postgresql.yaml"
PEER_DATABASE_KEY = "database"

# Email (smtp-integrator) and single sign-on (saml-integrator).
SMTP_ENDPOINT = "smtp"
SAML_ENDPOINT = "saml"
# IdP metadata the charm writes when saml-integrator sends certificates and endpoints but no URL.
SAML_IDP_METADATA_PATH = DATA_DIR / "saml-idp-metadata.xml"

# Observability relations (COS): Prometheus scrape job and alert rules, Grafana dashboard, Loki logs.
METRICS_ENDPOINT = "metrics-endpoint"
GRAFANA_DASHBOARD_ENDPOINT = "grafana-dashboard"
LOGGING_ENDPOINT = "logging"
METRICS_PATH = "/_synapse/metrics"

# matrix-auth relation (bridges): appservice registrations Synapse loads, and the peer app-data
# keys referencing the Juju secrets given to bridges.
MATRIX_AUTH_ENDPOINT = "matrix-auth"
APPSERVICES_DIR = DATA_DIR / "appservices"
PEER_MATRIX_AUTH_KEY_ID = "matrix-auth-encryption-key-id"
PEER_MATRIX_AUTH_SHARED_SECRET_ID = "matrix-auth-shared-secret-id"  # noqa: S105 (a databag key)

# The unit that runs Synapse's main process, recorded by the leader in peer app data.
PEER_MAIN_UNIT_KEY = "main-unit"

# Redis (replication between Synapse's main process and workers).
REDIS_ENDPOINT = "redis"
# Each unit's address (its peer binding's ingress address), in its own peer unit databag.
PEER_ADDRESS_KEY = "address"

# Reverse proxies in front of Synapse, and the action giving the .well-known documents.
INGRESS_ENDPOINT = "ingress"
NGINX_ROUTE_ENDPOINT = "nginx-route"
WELL_KNOWN_ACTION = "get-well-known"
# S3 relations (s3-integrator): encrypted backups, and Synapse's media store on S3.
BACKUP_ENDPOINT = "backup"
MEDIA_ENDPOINT = "media"
