"""`promtool test rules` cases for every alert in src/prometheus_alert_rules/.

Each alert gets two tests: a synthetic series that must make it fire (with the exact labels
the alert carries), and a benign series, plus the firing series of another application in
the same Prometheus, that must leave it silent (the rules are scoped to our topology).
Series use promtool's expanding notation at a 1m interval: `a+bxN` is a, a+b, ... (N+1 samples).
"""

import typing

INTERVAL = "1m"
UNIT = "synapse/0"


class Case(typing.NamedTuple):
    """One alert: the series that fire it, those that do not, when to evaluate, and the alert's own labels."""

    alert: str
    firing: list[tuple[str, dict[str, str], str]]  # (metric, extra labels, values)
    benign: list[tuple[str, dict[str, str], str]]
    eval_time: str
    labels: dict[str, str]  # labels of the firing alert besides the rule's (severity, topology, ...)
    rule_labels: dict[str, str]


def _series(metric: str, labels: dict[str, str]) -> str:
    """A series selector in promtool's input notation."""
    body = ", ".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"{metric}{{{body}}}"


def cases(scrape: dict[str, str], by_unit: dict[str, str]) -> list[Case]:
    """Every alert's case; `scrape` are a scraped series' labels, `by_unit` those left after `sum by` our labels."""
    warning, critical = {"severity": "warning"}, {"severity": "critical"}
    return [
        Case("SynapseTargetDown", [("up", {}, "0x10")], [("up", {}, "1x10")], "10m", scrape, critical),
        Case(
            "SynapseRestarting",
            [("process_start_time_seconds", {}, "1000+60x40")],
            [("process_start_time_seconds", {}, "1000x40")],
            "30m",
            scrape,
            warning,
        ),
        Case(
            "SynapseHighServerErrorRate",
            [
                ("synapse_http_server_responses_total", {"code": "500", "method": "GET"}, "0+10x30"),
                ("synapse_http_server_responses_total", {"code": "200", "method": "GET"}, "0+10x30"),
            ],
            [
                ("synapse_http_server_responses_total", {"code": "500", "method": "GET"}, "0+0x30"),
                ("synapse_http_server_responses_total", {"code": "200", "method": "GET"}, "0+10x30"),
            ],
            "20m",
            by_unit,
            warning,
        ),
        Case(
            "SynapseSlowClientRequests",
            [
                (
                    "synapse_http_server_response_time_seconds_bucket",
                    {"servlet": "RoomSendEventRestServlet", "le": le},
                    v,
                )
                for le, v in (("1.0", "0x40"), ("10.0", "0+10x40"), ("+Inf", "0+10x40"))
            ],
            [
                ("synapse_http_server_response_time_seconds_bucket", {"servlet": servlet, "le": le}, v)
                for servlet, low in (("RoomSendEventRestServlet", "0+10x40"), ("SyncRestServlet", "0x40"))
                for le, v in (("1.0", low), ("10.0", "0+10x40"), ("+Inf", "0+10x40"))
            ],
            "25m",
            {**by_unit, "servlet": "RoomSendEventRestServlet"},
            warning,
        ),
        Case(
            "SynapseEventProcessingBehind",
            [
                ("synapse_event_persisted_position", {}, "5000x30"),
                ("synapse_event_processing_positions", {"name": "federation_sender"}, "1000x30"),
            ],
            [
                ("synapse_event_persisted_position", {}, "5000x30"),
                ("synapse_event_processing_positions", {"name": "federation_sender"}, "4990x30"),
            ],
            "20m",
            {**scrape, "name": "federation_sender"},
            warning,
        ),
        Case(
            "SynapseFederationQueueGrowing",
            [("synapse_federation_transaction_queue_pending_pdus", {}, "0+50x60")],
            [("synapse_federation_transaction_queue_pending_pdus", {}, "1000x60")],
            "55m",
            scrape,
            warning,
        ),
        Case(
            "SynapseDatabaseSlowTransactions",
            [
                ("synapse_storage_transaction_time_sum_total", {"desc": "persist_events"}, "0+60x30"),
                ("synapse_storage_transaction_time_count_total", {"desc": "persist_events"}, "0+60x30"),
            ],
            [
                ("synapse_storage_transaction_time_sum_total", {"desc": "persist_events"}, "0+6x30"),
                ("synapse_storage_transaction_time_count_total", {"desc": "persist_events"}, "0+60x30"),
            ],
            "20m",
            by_unit,
            warning,
        ),
        Case(
            "SynapseDatabasePoolSaturated",
            [
                ("synapse_storage_schedule_time_bucket", {"le": le}, v)
                for le, v in (("0.1", "0x30"), ("1.0", "0+60x30"), ("+Inf", "0+60x30"))
            ],
            [("synapse_storage_schedule_time_bucket", {"le": le}, "0+60x30") for le in ("0.1", "1.0", "+Inf")],
            "20m",
            by_unit,
            warning,
        ),
        Case(
            "SynapseReactorLag",
            [
                ("python_twisted_reactor_tick_time_bucket", {"le": le}, v)
                for le, v in (("0.1", "0x30"), ("1.0", "0+60x30"), ("+Inf", "0+60x30"))
            ],
            [("python_twisted_reactor_tick_time_bucket", {"le": le}, "0+60x30") for le in ("0.1", "1.0", "+Inf")],
            "20m",
            by_unit,
            warning,
        ),
        Case(
            "SynapseHighMemory",
            [("process_resident_memory_bytes", {}, "5000000000x30")],
            [("process_resident_memory_bytes", {}, "1000000000x30")],
            "20m",
            scrape,
            {**warning, "threshold": "4GiB"},
        ),
        Case(
            "SynapseBackgroundUpdatesAborted",
            [("synapse_background_update_status", {"database_name": "master"}, "-1x10")],
            [("synapse_background_update_status", {"database_name": "master"}, "3x10")],
            "10m",
            {**scrape, "database_name": "master"},
            critical,
        ),
        Case(
            "SynapseBackgroundUpdatesStuck",
            [("synapse_background_update_status", {"database_name": "master"}, "2x1500")],
            [("synapse_background_update_status", {"database_name": "master"}, "2x600 3x900")],
            "25h",
            {**scrape, "database_name": "master"},
            warning,
        ),
    ]


def promtool_tests(topology: dict[str, str]) -> tuple[list[dict[str, typing.Any]], set[str]]:
    """The `tests:` list of a promtool test file for rules published with `topology`, and the alerts covered."""
    scrape = {**topology, "juju_unit": UNIT, "instance": "synapse-0:9000", "job": "juju_synapse"}
    by_unit = {key: scrape[key] for key in ("juju_model", "juju_model_uuid", "juju_application", "juju_unit")}
    other_app = {**scrape, "juju_application": "element"}
    tests = []
    all_cases = cases(scrape, by_unit)
    for case in all_cases:
        firing = [{"series": _series(m, {**scrape, **extra}), "values": v} for m, extra, v in case.firing]
        benign = [{"series": _series(m, {**scrape, **extra}), "values": v} for m, extra, v in case.benign]
        foreign = [{"series": _series(m, {**other_app, **extra}), "values": v} for m, extra, v in case.firing]
        labels = {**topology, **case.labels, **case.rule_labels}
        tests.append(
            {
                "name": f"{case.alert} fires",
                "interval": INTERVAL,
                "input_series": firing,
                "alert_rule_test": [
                    {"eval_time": case.eval_time, "alertname": case.alert, "exp_alerts": [{"exp_labels": labels}]}
                ],
            }
        )
        tests.append(
            {
                "name": f"{case.alert} stays silent on a benign series and on another application's",
                "interval": INTERVAL,
                "input_series": benign + foreign,
                "alert_rule_test": [{"eval_time": case.eval_time, "alertname": case.alert, "exp_alerts": []}],
            }
        )
    return tests, {case.alert for case in all_cases}
