"""The archive function's events per table (schedule, purge, report) and the report's alert as
e-mail and Slack render it: counts and dates only."""

from __future__ import annotations

import json

import pytest

from archiver import alerts, slack
from archiver.events import (
    InvalidEventError,
    PurgeEvent,
    ReportEvent,
    ScheduleEvent,
    StartEvent,
    parse_archive_event,
    start_event,
)


def test_schedule_event_carries_its_table_and_dry_run_flag():
    event = parse_archive_event({"source": "archiver.schedule", "trigger": "schedule", "table": "nic_cc_call_log",
                                 "scheduled_time": "2026-12-04T02:30:00+04:00", "dry_run": True})
    assert isinstance(event, ScheduleEvent)
    assert (event.table, event.dry_run, event.scheduled_time.isoformat()) == (
        "nic_cc_call_log", True, "2026-12-04T02:30:00+04:00")


def test_todays_schedule_event_without_a_table_still_parses():
    event = parse_archive_event({"source": "aws.events", "detail-type": "Scheduled Event",
                                 "time": "2026-12-04T22:00:00Z"})
    assert isinstance(event, ScheduleEvent) and event.table is None and event.dry_run is False


def test_purge_report_and_start_events_parse_with_their_table_or_period():
    purge = parse_archive_event({"action": "purge", "table": "nic_cc_call_log", "scheduled_time": "2026-12-06T03:00Z"})
    assert isinstance(purge, PurgeEvent) and purge.table == "nic_cc_call_log"
    report = parse_archive_event({"action": "report", "period": "monthly", "scheduled_time": "2026-12-01T08:00Z"})
    assert isinstance(report, ReportEvent) and report.period == "monthly"
    start = parse_archive_event(start_event("5f0e4c1e-1111-4000-8000-000000000000", "nic_cc_customer"))
    assert isinstance(start, StartEvent) and start.table == "nic_cc_customer"
    assert "table" not in start_event("5f0e4c1e-1111-4000-8000-000000000000")


def test_a_start_event_of_an_earlier_version_is_still_accepted_without_its_unused_fields():
    # dry_run and batch_size live in the run log; an invocation queued across a deploy still carries them.
    event = parse_archive_event({"action": "start", "job_id": "5f0e4c1e-1111-4000-8000-000000000000",
                                 "dry_run": True, "batch_size": 50, "table": "nic_cc_customer"})
    assert isinstance(event, StartEvent) and set(StartEvent.model_fields) == {"action", "job_id", "table"}
    assert event.table == "nic_cc_customer"


def test_a_start_event_with_a_field_nobody_sends_is_refused():
    with pytest.raises(InvalidEventError, match="bad archive event"):
        parse_archive_event({"action": "start", "job_id": "j", "priority": 1})


@pytest.mark.parametrize("event", [{"action": "report", "period": "daily"}, {"action": "purge", "days": 3},
                                   {"trigger": "schedule", "dry_run": "maybe"}])
def test_malformed_purge_report_or_schedule_events_are_refused(event):
    with pytest.raises(InvalidEventError, match="bad archive event"):
        parse_archive_event(event)


REPORT = {
    "period": "weekly", "from": "2026-11-23", "to": "2026-11-29", "days": 7, "timezone": "Indian/Mauritius",
    "tables": [
        {"table": "nic_cc_customer", "archive_table": "nic_cc_customer_backup", "mode": "archive", "runs": 7,
         "archived": 1200, "failures": 0, "partial": 1, "avg_duration_ms": 1100, "previous_archived": 900,
         "previous_avg_duration_ms": 1000, "trend_percent": 10,
         "per_day": [{"day": "2026-11-29", "runs": 1, "archived": 200, "avg_duration_ms": 1100, "failures": 0,
                      "partial": 1}],
         "live": {"table": "public.nic_cc_customer", "exists": True, "rows": 5000, "exact": True},
         "archive": {"table": "public.nic_cc_customer_backup", "exists": True, "rows": 2_000_000, "exact": False}},
        {"table": "nic_cc_call_log", "archive_table": "nic_cc_call_log_backup", "mode": "dry_run", "runs": 0,
         "archived": 0, "failures": 0, "partial": 0, "avg_duration_ms": None, "previous_archived": 0,
         "previous_avg_duration_ms": None, "trend_percent": None, "per_day": [],
         "live": {"table": "public.nic_cc_call_log", "exists": True, "rows": 10, "exact": True},
         "archive": {"table": "public.nic_cc_call_log_backup", "exists": False, "rows": None, "exact": False}},
    ],
}


def test_report_alert_sums_every_table_and_lists_each_with_its_trend_and_sizes():
    alert = alerts.for_report(REPORT)
    assert alert.kind == "report" and alert.subject.startswith("[archiver] REPORT: weekly summary 2026-11-23..")
    assert "1200 rows archived from 2 tables, 1 failed or partial runs" in alert.summary
    body = alert.body
    assert "nic_cc_customer: archived 1200 in 7 runs (previous period 900), 0 failed, 1 partial" in body
    assert "average run 1100 ms (previous period 1000 ms, +10%)" in body
    assert "archive 2000000 (estimate) rows" in body and "archive (missing) rows" in body
    assert alerts.Alert.from_dict(json.loads(json.dumps(alert.as_dict()))) == alert


def test_slack_renders_a_report_as_preformatted_sections_within_slacks_limits():
    message = slack.format_message(alerts.for_report(REPORT))
    text = json.dumps(message)
    assert ":bar_chart:" in text and "nic_cc_call_log" in text and "*Job*" not in text
    sections = [b for b in message["blocks"] if b.get("text", {}).get("text", "").startswith("```")]
    assert sections and all(len(b["text"]["text"]) <= slack.SECTION_LIMIT for b in sections)
    many = alerts.Alert("report", None, None, "big", details=tuple(f"line {i} " + "x" * 100 for i in range(2000)))
    blocks = slack.format_message(many)["blocks"]
    assert len(blocks) <= 50 and all(len(b.get("text", {}).get("text", "")) <= slack.SECTION_LIMIT for b in blocks)
