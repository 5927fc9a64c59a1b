"""The charm's YAML files agree with the code: names, versions, options and actions."""

from pathlib import Path

import yaml

from backup_actions import BackupActions
from constants import (
    BACKUP_ENDPOINT,
    CONTAINER_NAME,
    DATA_DIR,
    DATABASE_ENDPOINT,
    INGRESS_ENDPOINT,
    LEGACY_DB_ENDPOINT,
    MEDIA_ENDPOINT,
    NGINX_ROUTE_ENDPOINT,
    PEER_RELATION,
    SAML_ENDPOINT,
    SMTP_ENDPOINT,
    SYNAPSE_VERSION,
    WELL_KNOWN_ACTION,
)
from main_unit import PROMOTE_ACTION
from state import CharmConfig
from user_actions import UserActions

ROOT = Path(__file__).resolve().parents[2]
METADATA = yaml.safe_load((ROOT / "metadata.yaml").read_text())
CONFIG = yaml.safe_load((ROOT / "config.yaml").read_text())["options"]
ACTIONS = yaml.safe_load((ROOT / "actions.yaml").read_text())


def test_image_is_the_synapse_version_the_tests_install() -> None:
    resource = METADATA["containers"][CONTAINER_NAME]["resource"]
    assert METADATA["resources"][resource]["upstream-source"] == f"ghcr.io/element-hq/synapse:v{SYNAPSE_VERSION}"


def test_storage_is_mounted_where_the_charm_writes() -> None:
    (mount,) = METADATA["containers"][CONTAINER_NAME]["mounts"]
    assert mount["location"] == str(DATA_DIR)
    assert METADATA["storage"][mount["storage"]]["location"] == str(DATA_DIR)


def test_endpoints_match_the_constants() -> None:
    assert set(METADATA["peers"]) == {PEER_RELATION}
    assert METADATA["requires"][DATABASE_ENDPOINT] == {
        "interface": "postgresql_client",
        "limit": 1,
        "optional": True,
    }
    assert METADATA["requires"][LEGACY_DB_ENDPOINT] == {"interface": "pgsql", "limit": 1, "optional": True}
    assert METADATA["requires"][SMTP_ENDPOINT] == {"interface": "smtp", "limit": 1, "optional": True}
    assert METADATA["requires"][SAML_ENDPOINT] == {"interface": "saml", "limit": 1, "optional": True}
    assert METADATA["requires"][INGRESS_ENDPOINT] == {"interface": "ingress", "limit": 1, "optional": True}
    assert METADATA["requires"][NGINX_ROUTE_ENDPOINT] == {"interface": "nginx-route", "limit": 1, "optional": True}
    for endpoint in (BACKUP_ENDPOINT, MEDIA_ENDPOINT):
        assert METADATA["requires"][endpoint] == {"interface": "s3", "limit": 1, "optional": True}


def test_every_config_option_is_parsed_and_every_field_is_an_option() -> None:
    assert set(CONFIG) == set(CharmConfig.model_fields)


def test_config_defaults_parse_to_the_model_defaults() -> None:
    defaults = {name: option["default"] for name, option in CONFIG.items() if "default" in option}
    parsed = CharmConfig.from_juju({**defaults, "server_name": "chat.example.com"}, "synapse")
    for name, field in CharmConfig.model_fields.items():
        if name in ("server_name", "public_baseurl", "notif_from"):
            continue
        assert getattr(parsed, name) == field.default, name
    assert parsed.public_baseurl == "https://chat.example.com/"
    assert parsed.notif_from == "%(app)s <noreply@chat.example.com>"


def test_every_action_has_a_handler() -> None:
    assert set(ACTIONS) == {*UserActions.HANDLERS, *BackupActions.HANDLERS, PROMOTE_ACTION, WELL_KNOWN_ACTION}
    for method in UserActions.HANDLERS.values():
        assert callable(getattr(UserActions, method)), method
    for method in BackupActions.HANDLERS.values():
        assert callable(getattr(BackupActions, method)), method
