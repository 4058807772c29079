"""The core's CloudWatch metrics carry the live table, so alarms and the dashboard are per table."""

from __future__ import annotations

from aws_lambda_powertools import Metrics

from archiver.observability import PowertoolsMetrics


def _emitted(metrics: Metrics) -> dict:
    blob = metrics.serialize_metric_set()
    metrics.clear_metrics()
    return blob


def test_every_metric_of_a_run_carries_the_table_dimension() -> None:
    metrics = Metrics(namespace="Archiver", service="archiver")
    recorder = PowertoolsMetrics(metrics, table="nic_cc_call_log")
    recorder.batch(4.5, 100)
    recorder.run(archived=100, eligible=100, batches=1, duration_ms=9.0, failed=False, succeeded=True)
    recorder.count("StuckRuns")
    blob = _emitted(metrics)
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    assert [sorted(d) for d in directive["Dimensions"]] == [["service", "table"]]
    assert (blob["service"], blob["table"]) == ("archiver", "nic_cc_call_log")
    assert {m["Name"] for m in directive["Metrics"]} == {
        "BatchDurationMs", "RecordsArchived", "RecordsEligible", "Batches", "RunDurationMs", "RunFailures",
        "SuccessfulRuns", "StuckRuns"}


def test_the_dimension_comes_back_after_each_flush_and_follows_the_table() -> None:
    metrics = Metrics(namespace="Archiver", service="archiver")
    recorder = PowertoolsMetrics(metrics, table="nic_cc_customer")
    recorder.count("HopLimitReached")
    assert _emitted(metrics)["table"] == "nic_cc_customer"
    recorder.table = "nic_cc_call_log"
    recorder.count("HopLimitReached")
    assert _emitted(metrics)["table"] == "nic_cc_call_log"


def test_without_a_table_only_the_service_dimension() -> None:
    metrics = Metrics(namespace="Archiver", service="archiver")
    PowertoolsMetrics(metrics).count("StuckRuns")
    assert _emitted(metrics)["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
