"""Scenarios with the media relation (synapse-s3-storage-provider) and the backup relation.

The S3 keys carry YAML and Jinja specials on purpose. The image's check for the provider
module is answered by an ops.testing Exec mock; the workload loader test's venv has it, so
Synapse's loader imports it and parses its config.
"""

from ops import testing

from constants import BACKUP_ENDPOINT, MEDIA_ENDPOINT
from tests.rendered_configs import Stage, scenario

S3_ANSWER = {
    "access-key": "AKIA'\"{{ }}: #key",
    "secret-key": "s3cr3t/+'\"\n%(app)s",
    "bucket": "synapse-media",
    "endpoint": "https://s3.eu-west-1.amazonaws.com",
    "region": "eu-west-1",
    "path": "synapse/media",
    "s3-uri-style": "path",
}


def _s3(juju_endpoint: str, **changes: str) -> testing.Relation:
    """An s3 relation as s3-integrator (schema v0) answers it, with `changes` to its keys."""
    return testing.Relation(
        juju_endpoint, interface="s3", remote_app_name="s3-integrator", remote_app_data=S3_ANSWER | changes
    )


@scenario("media-on-s3")
def media(stage: Stage) -> testing.State:
    """Media in a bucket under a path, the image with synapse-s3-storage-provider."""
    container = stage.container(execs={testing.Exec(["python", "-c"], stdout="found\n")})
    return stage.state(relations=[_s3(MEDIA_ENDPOINT)], container=container)


@scenario("media-on-s3-and-backups")
def media_and_backups(stage: Stage) -> testing.State:
    """Media on an endpoint without a path, and the backup relation with a passphrase secret."""
    passphrase = testing.Secret({"passphrase": "a long enough passphrase"})
    container = stage.container(execs={testing.Exec(["python", "-c"], stdout="found\n")})
    relations = [_s3(MEDIA_ENDPOINT, endpoint="http://10.0.0.5:7480", path=""), _s3(BACKUP_ENDPOINT)]
    return stage.state(
        {"backup_passphrase": passphrase.id}, relations=relations, container=container, secrets={passphrase}
    )
