"""The charm's scrape job, alert rules and dashboard, against Debian's real Prometheus and a real Synapse.

The charm runs in ops.testing with the metrics-endpoint and grafana-dashboard relations; the
harness runs its Synapse. Prometheus (started here on 127.0.0.1) scrapes with the job the
charm published, its `*` target expanded to the unit address as prometheus-k8s does. Then:
the target is up; `promtool check rules` accepts the published rules and `promtool test rules`
shows every alert firing on a synthetic series and silent on a benign one (and on another
application's series); every dashboard query is valid PromQL there; and the core panels return
series from the running Synapse.
"""

import base64
import json
import lzma
import shutil
import socket
import subprocess
import time
import typing
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ops import testing

from constants import GRAFANA_DASHBOARD_ENDPOINT, METRICS_ENDPOINT
from tests.prometheus_consumer import expand_scrape_jobs
from tests.workload import harness

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
RATE_INTERVAL = "30s"  # what Grafana's $__rate_interval becomes for these queries
CORE_PANELS = ("Request rate by servlet", "Latency p95 by servlet", "Transactions by kind", "CPU", "Memory")
SCRAPE_TIMEOUT = 60.0


def free_port() -> int:
    """A loopback TCP port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((harness.HOST, 0))
        return int(sock.getsockname()[1])


class Prometheus:
    """A real Prometheus on 127.0.0.1 with a given config, and its HTTP API."""

    def __init__(self, workdir: Path, config: dict[str, typing.Any]):
        self.port = free_port()
        self.workdir = workdir
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        argv = [
            PROMETHEUS,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address={harness.HOST}:{self.port}",
        ]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def api(self, path: str, **params: str) -> dict[str, typing.Any]:
        """GET /api/v1/<path>; the decoded answer, whatever the status (errors come back as JSON)."""
        url = f"http://{harness.HOST}:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return typing.cast(dict[str, typing.Any], json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            return typing.cast(dict[str, typing.Any], json.loads(exc.read()))

    def query(self, expr: str) -> dict[str, typing.Any]:
        """An instant query."""
        return self.api("query", query=expr)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the API answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://{harness.HOST}:{self.port}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:  # refused while starting, 503 until the TSDB is open
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus did not answer: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Stop Prometheus."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def dashboard_queries(dashboard: dict[str, typing.Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expression) of every target of every panel, nested ones included."""
    stack = list(dashboard["panels"])
    while stack:
        panel = stack.pop(0)
        stack.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"].replace("$__rate_interval", RATE_INTERVAL)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, synapse_venv: Path) -> Iterator[harness.CharmDriver]:
    """A deployed unit related to Prometheus and Grafana, with its real Synapse, address 127.0.0.1."""
    base = tmp_path_factory.mktemp("observability")
    driver = harness.CharmDriver(
        base / "data", {"server_name": "metrics.test"}, venv=synapse_venv, log_path=base / "synapse.log"
    )
    metrics = testing.Relation(METRICS_ENDPOINT, remote_app_name="prometheus", remote_units_data={0: {}})
    dashboards = testing.Relation(GRAFANA_DASHBOARD_ENDPOINT, remote_app_name="grafana", remote_units_data={0: {}})
    network = testing.Network(
        METRICS_ENDPOINT,
        bind_addresses=[testing.BindAddress([testing.Address(harness.HOST)])],
        ingress_addresses=[harness.HOST],
    )
    driver.state = testing.State(
        **{
            **{field: getattr(driver.state, field) for field in ("leader", "config", "containers", "secrets")},
            "relations": {*driver.state.relations, metrics, dashboards},
            "networks": {network},
        }
    )
    try:
        driver.deploy()  # every hook publishes: the relations are there from install on
        yield driver
    finally:
        driver.stop()


def relation_data(driver: harness.CharmDriver, endpoint: str) -> tuple[dict[str, str], dict[str, str]]:
    """Our (app, unit) databags on the relation on `endpoint`."""
    (relation,) = [r for r in driver.state.relations if r.endpoint == endpoint]
    return dict(relation.local_app_data), dict(relation.local_unit_data)


@pytest.fixture(scope="module")
def rules_file(published: harness.CharmDriver, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The alert rules the charm published, as the rule file the consumer writes."""
    app, _ = relation_data(published, METRICS_ENDPOINT)
    path = tmp_path_factory.mktemp("rules") / "synapse.rules.yaml"
    path.write_text(yaml.safe_dump(json.loads(app["alert_rules"])))
    return path


@pytest.fixture(scope="module")
def prometheus(
    published: harness.CharmDriver, rules_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """Prometheus scraping the charm's published job every second, with its rules loaded."""
    app, unit = relation_data(published, METRICS_ENDPOINT)
    jobs = expand_scrape_jobs(app, {"synapse/0": unit})
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_file)],
        "scrape_configs": jobs,
    }
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), config)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def wait_for_series(prometheus: Prometheus, expr: str, timeout: float = SCRAPE_TIMEOUT) -> list[dict[str, typing.Any]]:
    """The result of `expr` once it is non-empty, sending Synapse a few requests meanwhile."""
    deadline = time.monotonic() + timeout
    result: list[dict[str, typing.Any]] = []
    while time.monotonic() < deadline:
        for path in ("/_matrix/client/versions", "/_matrix/client/v3/login", "/_matrix/client/v3/no-such-thing"):
            harness.http_get(path)
        answer = prometheus.query(expr)
        assert answer["status"] == "success", (expr, answer)
        result = answer["data"]["result"]
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"{expr} returned no series within {timeout}s")


def test_prometheus_scrapes_synapse_with_the_published_job(
    prometheus: Prometheus, published: harness.CharmDriver
) -> None:
    (series,) = wait_for_series(prometheus, "up == 1")
    labels = series["metric"]
    assert labels["instance"] == f"{harness.HOST}:9000"
    assert labels["juju_unit"] == "synapse/0"
    assert labels["juju_application"] == "synapse"
    (target,) = prometheus.api("targets")["data"]["activeTargets"]
    assert target["health"] == "up", target
    assert target["scrapeUrl"] == f"http://{harness.HOST}:9000/_synapse/metrics"


def test_promtool_accepts_the_published_rules(rules_file: Path) -> None:
    result = subprocess.run([PROMTOOL, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "12 rules found" in result.stdout


def test_prometheus_loaded_every_rule(prometheus: Prometheus, rules_file: Path) -> None:
    expected = {rule["alert"] for group in yaml.safe_load(rules_file.read_text())["groups"] for rule in group["rules"]}
    groups = prometheus.api("rules")["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == expected
    assert all(rule["health"] != "err" for rule in loaded.values()), loaded


def test_every_alert_fires_on_a_bad_series_and_not_on_a_benign_one(rules_file: Path, tmp_path: Path) -> None:
    from tests.workload.alert_rule_cases import promtool_tests

    rules = yaml.safe_load(rules_file.read_text())
    # Annotations are templates (checked by `promtool check rules`); promtool compares them
    # verbatim, so the unit tests run on the same rules without them.
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    topology = {
        key: value for key, value in rules["groups"][0]["rules"][0]["labels"].items() if key.startswith("juju_")
    }
    tests, alerts = promtool_tests(topology)
    covered = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert alerts == covered
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_dashboard_query_is_valid_promql(prometheus: Prometheus, published: harness.CharmDriver) -> None:
    app, _ = relation_data(published, GRAFANA_DASHBOARD_ENDPOINT)
    entry = json.loads(app["dashboards"])["templates"]["file:synapse"]
    dashboard = json.loads(lzma.decompress(base64.b64decode(entry["content"])))
    queries = list(dashboard_queries(dashboard))
    assert len(queries) >= 40
    bad = {
        (title, expr): answer for title, expr in queries if (answer := prometheus.query(expr))["status"] != "success"
    }
    assert bad == {}


def test_core_panels_return_series_from_synapse(prometheus: Prometheus, published: harness.CharmDriver) -> None:
    app, _ = relation_data(published, GRAFANA_DASHBOARD_ENDPOINT)
    entry = json.loads(app["dashboards"])["templates"]["file:synapse"]
    dashboard = json.loads(lzma.decompress(base64.b64decode(entry["content"])))
    queries = [(title, expr) for title, expr in dashboard_queries(dashboard) if title in CORE_PANELS]
    assert {title for title, _ in queries} == set(CORE_PANELS)
    wait_for_series(prometheus, "count_over_time(up[1m]) > 3")  # enough samples for rate() over 30s
    for title, expr in queries:
        result = wait_for_series(prometheus, expr, timeout=20)
        assert all(series["metric"].get("juju_unit", "synapse/0") == "synapse/0" for series in result), title
    servlets = {series["metric"].get("servlet") for series in wait_for_series(prometheus, queries[0][1])}
    assert "VersionsRestServlet" in servlets
