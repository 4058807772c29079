"""Alerts and monitoring: the encrypted topic, who hears it, the alarms and the dashboard."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from .synthesis import Synth


def topic_id(synth: Synth) -> str:
    (found,) = synth.of_type("AWS::SNS::Topic")
    return found


def alarms(synth: Synth) -> dict[str, dict[str, Any]]:
    return {key: a["Properties"] for key, a in synth.of_type("AWS::CloudWatch::Alarm").items()}


def alarm(synth: Synth, prefix: str) -> dict[str, Any]:
    (found,) = [props for key, props in alarms(synth).items() if key.startswith(f"Monitoring{prefix}")]
    return found


def test_topic_is_encrypted_with_a_rotated_key(any_synth: Synth) -> None:
    props = any_synth.resources[topic_id(any_synth)]["Properties"]
    key_id = props["KmsMasterKeyId"]["Fn::GetAtt"][0]
    assert any_synth.resources[key_id]["Properties"]["EnableKeyRotation"] is True


def test_cloudwatch_may_use_the_key_only_for_this_accounts_alarms(new_db: Synth) -> None:
    (key,) = new_db.of_type("AWS::KMS::Key").values()
    (statement,) = [s for s in key["Properties"]["KeyPolicy"]["Statement"]
                    if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    condition = new_db.stack.resolve(statement["Condition"])
    assert condition["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source_arn = condition["ArnLike"]["aws:SourceArn"]["Fn::Join"][1]
    assert ":cloudwatch:" in source_arn and source_arn[-1] == ":alarm:*"


def test_every_service_grant_of_the_key_names_the_source_account(any_synth: Synth) -> None:
    for key in any_synth.of_type("AWS::KMS::Key").values():
        for statement in key["Properties"]["KeyPolicy"]["Statement"]:
            if "Service" in statement["Principal"]:
                assert "aws:SourceAccount" in statement["Condition"]["StringEquals"], statement


def test_topic_refuses_publishing_without_tls(any_synth: Synth) -> None:
    (policy,) = any_synth.of_type("AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements)


def test_no_subscriptions_unless_configured(new_db: Synth) -> None:
    assert not new_db.of_type("AWS::SNS::Subscription")


def test_email_and_slack_subscriptions_when_configured(existing_db: Synth) -> None:
    subscriptions = {s["Properties"]["Protocol"]: s["Properties"]
                     for s in existing_db.of_type("AWS::SNS::Subscription").values()}
    assert set(subscriptions) == {"email", "lambda"}
    assert subscriptions["email"]["Endpoint"] == "ops@example.com"
    slack = subscriptions["lambda"]["Endpoint"]["Fn::GetAtt"][0]
    assert existing_db.resources[slack]["Properties"]["Handler"] == "handlers.slack.handler"


def test_every_alarm_publishes_to_the_topic(any_synth: Synth) -> None:
    for props in alarms(any_synth).values():
        assert props["AlarmActions"] == [{"Ref": topic_id(any_synth)}]


def per_table(synth: Synth) -> dict[tuple[str, str], dict[str, Any]]:
    """The alarms on the core's metrics, by (metric, table)."""
    found = {}
    for props in alarms(synth).values():
        if props.get("Namespace") == "Archiver":
            dimensions = {d["Name"]: d["Value"] for d in props["Dimensions"]}
            assert set(dimensions) == {"service", "table"} and dimensions["service"] == "archiver"
            found[(props["MetricName"], dimensions["table"])] = props
    return found


def test_alarms_cover_errors_throttles_dead_letters_stuck_runs_and_hop_limit(new_db: Synth) -> None:
    names = {key.removeprefix("Monitoring").rstrip("0123456789ABCDEF") for key, props in alarms(new_db).items()
             if props.get("Namespace") != "Archiver"}
    assert names == {"ArchiveErrors", "ArchiveThrottles", "FailedInvocationsMessages",
                     "ScheduleDeadLettersMessages", "StatusErrors"}
    assert alarm(new_db, "ArchiveErrors")["MetricName"] == "Errors"
    assert alarm(new_db, "ArchiveThrottles")["MetricName"] == "Throttles"
    found = per_table(new_db)
    assert set(found) == {("StuckRuns", "nic_cc_customer"), ("HopLimitReached", "nic_cc_customer"),
                          ("SuccessfulRuns", "nic_cc_customer")}
    for metric in ("StuckRuns", "HopLimitReached"):
        props = found[(metric, "nic_cc_customer")]
        assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)


def test_a_night_without_a_successful_run_alarms(new_db: Synth) -> None:
    props = per_table(new_db)[("SuccessfulRuns", "nic_cc_customer")]
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == ("Archiver", "SuccessfulRuns", "Sum")
    assert props["Period"] * props["EvaluationPeriods"] == 26 * 3600
    assert props["DatapointsToAlarm"] == props["EvaluationPeriods"]
    assert (props["ComparisonOperator"], props["Threshold"]) == ("LessThanThreshold", 1)
    # A skipped night emits no data at all: missing data must count as a failure.
    assert props["TreatMissingData"] == "breaching"


def test_every_table_has_its_own_alarms(two_tables: Synth) -> None:
    found = per_table(two_tables)
    for table in ("nic_cc_customer", "nic_cc_call_log"):
        assert ("StuckRuns", table) in found and ("HopLimitReached", table) in found
    # The call log's trial phase (dry_run_until 2027-01-31) archives nothing: no nightly alarm until a
    # deploy after that date.
    trial = dt.date.today() < dt.date(2027, 1, 31)
    expected = {"nic_cc_customer"} | (set() if trial else {"nic_cc_call_log"})
    assert {table for metric, table in found if metric == "SuccessfulRuns"} == expected


def test_dry_run_and_off_policies_get_no_nightly_alarm(inline_policies: Synth) -> None:
    found = per_table(inline_policies)
    assert {table for metric, table in found if metric == "StuckRuns"} == {
        "nic_cc_customer", "nic_cc_call_log", "nic_cc_follow_up"}
    nightly = {table for metric, table in found if metric == "SuccessfulRuns"}
    assert "nic_cc_customer" not in nightly and "nic_cc_follow_up" not in nightly


def test_with_the_schedule_off_there_is_no_nightly_alarm_but_slack_is_watched(existing_db: Synth) -> None:
    assert not [key for key in per_table(existing_db) if key[0] == "SuccessfulRuns"]
    assert any(name.startswith("MonitoringSlackErrors") for name in alarms(existing_db))


def test_dashboard_shows_archived_per_day_durations_and_failures(new_db: Synth) -> None:
    (dashboard,) = new_db.of_type("AWS::CloudWatch::Dashboard").values()
    body = json.loads("".join(p if isinstance(p, str) else "0" for p in
                              new_db.stack.resolve(dashboard["Properties"]["DashboardBody"])["Fn::Join"][1]))
    titles = {w["properties"].get("title") for w in body["widgets"]}
    assert {"Records archived per day", "Run duration (ms)", "Batch duration (ms)", "Failures per day"} <= titles
    archived = next(w["properties"] for w in body["widgets"]
                    if w["properties"].get("title") == "Records archived per day")
    assert archived["metrics"][0][:6] == ["Archiver", "RecordsArchived", "service", "archiver",
                                          "table", "nic_cc_customer"]
    assert archived["metrics"][0][-1]["period"] == 86400


def test_dashboard_draws_a_line_per_table(two_tables: Synth) -> None:
    (dashboard,) = two_tables.of_type("AWS::CloudWatch::Dashboard").values()
    body = json.loads("".join(p if isinstance(p, str) else "0" for p in
                              two_tables.stack.resolve(dashboard["Properties"]["DashboardBody"])["Fn::Join"][1]))
    archived = next(w["properties"] for w in body["widgets"]
                    if w["properties"].get("title") == "Records archived per day")
    lines = {(m[1], m[5]) for m in archived["metrics"]}
    assert lines == {(metric, table) for metric in ("RecordsArchived", "RecordsEligible")
                     for table in ("nic_cc_customer", "nic_cc_call_log")}
