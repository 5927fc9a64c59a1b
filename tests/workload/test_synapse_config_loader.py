"""Synapse's own config loader accepts every homeserver.yaml the charm renders as Active.

The catalogue (tests/rendered_configs/) is rendered afresh here: every registered scenario
(asserted Active as it renders), plus the files of every hostile hypothesis-drawn config the
charm accepts. All of them are loaded with `HomeServerConfig.load_config` in one process of
the Synapse venv, as Synapse's uid with /data bound to an empty directory: each scenario's
files are written there, loaded, and removed. Synapse itself is never started.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from constants import CONFIG_PATH, DATA_DIR, SERVICE_NAME, SYNAPSE_GID, SYNAPSE_UID, WORKER_CONFIG_PATH
from tests import rendered_configs, strategies
from tests.workload import harness
from workload.service import pebble_layer

# Hostile configs drawn (the same ones on every run); the accepted ones are loaded.
HOSTILE_CONFIGS = 300

LOADER = f"""
import json, os, shutil, sys
from synapse.config._base import ConfigError
from synapse.config.homeserver import HomeServerConfig

data = {str(DATA_DIR)!r}
results = {{}}
for scenario in json.load(sys.stdin):
    for name in os.listdir(data):
        path = os.path.join(data, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    for relative, (content, mode) in scenario["files"].items():
        path = os.path.join(data, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as file:
            file.write(content)
        os.chmod(path, mode)
    # a worker unit's process reads homeserver.yaml, then its worker.yaml (as its Pebble command says)
    argv = ["--config-path", {str(CONFIG_PATH)!r}]
    if {WORKER_CONFIG_PATH.name!r} in scenario["files"]:
        argv += ["--config-path", {str(WORKER_CONFIG_PATH)!r}]
    try:
        config = HomeServerConfig.load_config("synapse", argv)
        instance = config.worker.instance_name
        results[scenario["name"]] = {{"server_name": config.server.server_name, "instance": instance}}
    except (ConfigError, ValueError, TypeError, KeyError) as exc:
        results[scenario["name"]] = {{"error": f"{{type(exc).__name__}}: {{exc}}"}}
print(json.dumps(results))
"""


def load_all(rendered: list[rendered_configs.Rendered], venv: Path, data_dir: Path) -> dict[str, dict[str, str]]:
    """Load every scenario's homeserver.yaml with Synapse's loader; name -> server_name or error."""
    service = pebble_layer()["services"][SERVICE_NAME]
    spec = harness.ServiceSpec(
        command=(),
        environment=dict(service.get("environment", {})),
        user_id=SYNAPSE_UID,
        group_id=SYNAPSE_GID,
        working_dir="/",
    )
    data_dir.mkdir()
    os.chown(data_dir, SYNAPSE_UID, SYNAPSE_GID)
    argv = harness.workload_argv(spec, data_dir, venv, ["python", "-c", LOADER])
    payload = json.dumps([{"name": item.name, "files": item.files} for item in rendered])
    done = subprocess.run(argv, input=payload, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, synapse_venv: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """Every rendered scenario: name -> (its homeserver.yaml, what the loader said)."""
    base = tmp_path_factory.mktemp("catalogue")
    rendered = rendered_configs.render(base / "scenarios")
    rendered += rendered_configs.render_accepted(strategies.sample(strategies.hostile_config(), HOSTILE_CONFIGS))
    results = load_all(rendered, synapse_venv, base / "data")
    return {item.name: (item.homeserver_yaml, results.get(item.name, {"error": "not loaded"})) for item in rendered}


def test_synapse_loads_every_active_scenario(loaded: dict[str, tuple[str, dict[str, str]]]) -> None:
    scenarios = rendered_configs.scenarios()
    refused = {name: result["error"] for name, (_, result) in loaded.items() if "error" in result}

    assert not refused, json.dumps(refused, indent=1)
    assert set(scenarios) <= set(loaded)


def test_a_worker_unit_is_loaded_as_its_worker(loaded: dict[str, tuple[str, dict[str, str]]]) -> None:
    assert loaded["workers-generic-worker-of-three-units"][1].get("instance") == "synapse-1"
    assert loaded["workers-main-of-three-units"][1].get("instance") == "master"


def test_enough_hostile_configs_are_accepted_to_matter(loaded: dict[str, tuple[str, dict[str, str]]]) -> None:
    accepted = [name for name in loaded if name.startswith("accepted-")]

    assert len(accepted) >= 20, accepted


def test_the_loader_refuses_what_synapse_refuses(tmp_path: Path, synapse_venv: Path) -> None:
    """The check can fail: a homeserver.yaml with a scoped IPv6 server name is refused by the same loader."""
    (good,) = rendered_configs.render(tmp_path / "scenarios", ["config-defaults"])
    bad_files = dict(good.files)
    content, mode = bad_files["homeserver.yaml"]
    scoped = content.replace('server_name: "example.com"', 'server_name: "[fe80::1%eth0]"')
    bad_files["homeserver.yaml"] = (scoped, mode)
    assert bad_files["homeserver.yaml"] != good.files["homeserver.yaml"]

    results = load_all([good, rendered_configs.Rendered("scoped", bad_files)], synapse_venv, tmp_path / "data")

    assert results["config-defaults"] == {"server_name": "example.com", "instance": "master"}
    assert "IPv6" in results["scoped"]["error"]
