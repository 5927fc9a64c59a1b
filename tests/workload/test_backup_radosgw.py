"""One full backup round trip on Ceph's radosgw, an S3 server that checks SigV4 signatures.

Synapse with users, messages and media → create-backup → the container and the Juju
identity are lost → a new unit restores → same identity, logins, messages, media bit for bit.
The many smaller cases run on moto in test_backup.py.
"""

import json

from ops import testing

from constants import BACKUP_ENDPOINT, DATA_DIR, SIGNING_KEY_PATH
from tests.workload.conftest import DriverFactory
from tests.workload.s3 import RadosGateway, radosgw  # noqa: F401 (fixture)
from tests.workload.test_backup import (
    PASSPHRASE,
    SERVER_NAME,
    Server,
    check_restored,
    fill,
    restore_on_a_new_unit,
    server_identity,
    with_backup,
)

BUCKET = "synapse-radosgw-test"


def test_backup_and_restore_on_radosgw(make_driver: DriverFactory, radosgw: RadosGateway) -> None:  # noqa: F811
    passphrase = testing.Secret({"passphrase": PASSPHRASE})
    relation = testing.Relation(BACKUP_ENDPOINT, remote_app_data=radosgw.relation_data(BUCKET))
    driver = make_driver({"server_name": SERVER_NAME, "backup_passphrase": passphrase.id})
    with_backup(driver, relation, passphrase)
    driver.deploy()
    found = Server(driver, radosgw, relation, passphrase)  # type: ignore[arg-type]
    fill(found)
    found.backup_id = driver.run_action("create-backup")["id"]
    found.signing_key = (driver.data_dir / SIGNING_KEY_PATH.relative_to(DATA_DIR)).read_text()
    found.identity = server_identity(driver)
    assert [entry["id"] for entry in json.loads(driver.run_action("list-backups")["backups"])] == [found.backup_id]
    restored = restore_on_a_new_unit(found, make_driver)
    check_restored(found, restored)
    restored.run_action("delete-backup", {"id": found.backup_id})
    assert restored.run_action("list-backups")["count"] == "0"
