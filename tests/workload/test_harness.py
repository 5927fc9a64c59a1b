"""The harness prepares the host on its own: nothing it needs may be left over from an earlier run."""

import os
from pathlib import Path

import pytest

from constants import DATA_DIR
from tests.workload import harness


def _remove_host_mountpoint() -> None:
    """Remove the host's /data, as on a brand-new machine (only an empty, unmounted directory)."""
    mountpoint = Path(str(DATA_DIR))
    if not mountpoint.exists():
        return
    if os.path.ismount(mountpoint) or any(mountpoint.iterdir()):
        pytest.fail(f"{mountpoint} on the host is mounted or not empty; the harness never puts anything there")
    mountpoint.rmdir()


def test_an_exec_before_any_synapse_creates_the_mountpoint(tmp_path: Path, synapse_venv: Path) -> None:
    """An in-container command run before Synapse ever started must work on a machine without /data."""
    _remove_host_mountpoint()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "marker").write_text("from the unit's storage\n")

    stdout, _ = harness.real_exec(data_dir, synapse_venv, ["cat", f"{DATA_DIR}/marker"]).wait_output()

    assert stdout == "from the unit's storage\n"
    assert not any(Path(str(DATA_DIR)).iterdir()), "the bind mount must stay inside the private namespace"
