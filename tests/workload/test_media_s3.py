"""The media relation with a real Synapse: uploads land in the bucket (moto on 127.0.0.1) and come back.

The test venv has synapse-s3-storage-provider (harness.SYNAPSE_S3_STORAGE_PROVIDER), as an
image built with it would; the charm finds it in the container and configures it.
"""

import dataclasses
import os
import urllib.request

from ops import testing

from constants import MEDIA_ENDPOINT, MEDIA_STORE_DIR
from tests.workload import harness
from tests.workload.conftest import DriverFactory
from tests.workload.s3 import MotoServer, moto_server  # noqa: F401 (fixture)
from tests.workload.test_backup import download, upload

SERVER_NAME = "media.test"
BUCKET = "synapse-media-test"
PASSWORD = "a long enough password"


def bucket_keys(s3: MotoServer) -> list[str]:
    """Every key in the bucket (moto answers anonymous requests)."""
    with urllib.request.urlopen(f"{s3.endpoint}/{BUCKET}?list-type=2", timeout=10) as response:  # noqa: S310
        body = response.read().decode()
    return [part.split("</Key>")[0] for part in body.split("<Key>")[1:]]


def test_uploads_land_in_the_bucket_and_download_back(make_driver: DriverFactory, moto_server: MotoServer) -> None:  # noqa: F811
    request = urllib.request.Request(f"{moto_server.endpoint}/{BUCKET}", method="PUT")  # noqa: S310
    urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 (s3-integrator does not create buckets)
    driver = make_driver({"server_name": SERVER_NAME})
    relation = testing.Relation(MEDIA_ENDPOINT, remote_app_data=moto_server.relation_data(BUCKET))
    driver.state = dataclasses.replace(driver.state, relations=frozenset({*driver.state.relations, relation}))
    driver.deploy()
    assert driver.state.unit_status.name == "active", driver.state.unit_status
    driver.run_action("register-user", {"username": "carol", "password": PASSWORD})
    token = harness.token_for(f"@carol:{SERVER_NAME}", PASSWORD)
    content = os.urandom(300_000)
    mxc = upload(token, content, "photo.bin")
    media_id = mxc.rsplit("/", 1)[1]
    keys = bucket_keys(moto_server)
    assert any(key.startswith("synapse/local_content/") and key.endswith(media_id[4:]) for key in keys), keys
    # Gone from the local media store, it is fetched back from the bucket.
    local = driver.data_dir / MEDIA_STORE_DIR.relative_to("/data") / "local_content"
    (stored,) = [path for path in local.rglob("*") if path.is_file() and path.name == media_id[4:]]
    stored.unlink()
    assert download(token, mxc) == content
