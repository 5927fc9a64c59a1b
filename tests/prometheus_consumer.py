"""What a prometheus_scrape consumer (prometheus-k8s) builds from our relation data.

The consumer reads our app databag (`scrape_jobs`, `scrape_metadata`, `alert_rules`) and each
unit's databag (`prometheus_scrape_unit_address`, `..._name`, `..._path`). A `*:<port>` target
becomes one target per unit that published an address, each labelled with the Juju topology
(juju_model, juju_model_uuid, juju_application, juju_charm and juju_unit). Unit and workload
tests share this so both check the same reading of the wire format.
"""

import json
import typing
from collections.abc import Mapping


def expand_scrape_jobs(
    app_data: Mapping[str, str], unit_data: Mapping[str, Mapping[str, str]]
) -> list[dict[str, typing.Any]]:
    """Scrape configs as the consumer would generate them from our databags."""
    metadata = json.loads(app_data["scrape_metadata"])
    topology = {
        "juju_model": metadata["model"],
        "juju_model_uuid": metadata["model_uuid"],
        "juju_application": metadata["application"],
        "juju_charm": metadata["charm_name"],
    }
    hosts = {
        data["prometheus_scrape_unit_name"]: (
            data["prometheus_scrape_unit_address"],
            data.get("prometheus_scrape_unit_path", ""),
        )
        for data in unit_data.values()
        if data.get("prometheus_scrape_unit_name") and data.get("prometheus_scrape_unit_address")
    }
    jobs = []
    for job in json.loads(app_data["scrape_jobs"]):
        static_configs = []
        for static_config in job.get("static_configs", []):
            for target in static_config["targets"]:
                host, _, port = target.rpartition(":")
                if host != "*":
                    static_configs.append(
                        {"targets": [target], "labels": {**topology, **static_config.get("labels", {})}}
                    )
                    continue
                for unit_name, (address, _path) in sorted(hosts.items()):
                    labels = {**topology, "juju_unit": unit_name, **static_config.get("labels", {})}
                    static_configs.append({"targets": [f"{address}:{port}"], "labels": labels})
        name = f"juju_{metadata['model']}_{metadata['model_uuid'][:8]}_{metadata['application']}_{job['job_name']}"
        jobs.append({**job, "job_name": name, "static_configs": static_configs})
    return jobs
