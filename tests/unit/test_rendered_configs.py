"""Every scenario of the rendered-config catalogue ends Active and renders a homeserver.yaml.

The workload suite loads the same catalogue's files with Synapse's own config loader
(tests/workload/test_synapse_config_loader.py).
"""

from pathlib import Path

import yaml

from tests import rendered_configs


def test_every_scenario_ends_active_with_a_homeserver_yaml(tmp_path: Path) -> None:
    rendered = rendered_configs.render(tmp_path)

    engines = set()
    assert len(rendered) == len(rendered_configs.scenarios())
    for item in rendered:
        config = yaml.safe_load(item.homeserver_yaml)
        assert isinstance(config, dict), item.name
        assert config["server_name"], item.name
        engines.add(config["database"]["name"])
    assert engines == {"sqlite3", "psycopg2"}


def test_accepted_hostile_configs_render_once_per_distinct_homeserver_yaml() -> None:
    configs = [{"server_name": "a.example"}, {"server_name": "A.example"}, {"server_name": "bad name"}, {}]

    rendered = rendered_configs.render_accepted(configs)

    assert [item.name for item in rendered] == ["accepted-0", "accepted-3"]
