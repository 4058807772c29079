"""Alerts and monitoring: the encrypted topic, who hears it, the alarms and the dashboard."""

from __future__ import annotations

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


def test_cloudwatch_may_use_the_key_to_publish_alarms(new_db: Synth) -> None:
    (key,) = new_db.of_type("AWS::KMS::Key").values()
    principals = [s["Principal"] for s in key["Properties"]["KeyPolicy"]["Statement"]]
    assert {"Service": "cloudwatch.amazonaws.com"} in principals


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


def test_alarms_cover_errors_throttles_dead_letters_stuck_runs_and_hop_limit(new_db: Synth) -> None:
    names = {key.removeprefix("Monitoring").rstrip("0123456789ABCDEF") for key in alarms(new_db)}
    assert names == {"ArchiveErrors", "ArchiveThrottles", "FailedInvocationsMessages",
                     "ScheduleDeadLettersMessages", "StatusErrors", "StuckRun", "HopLimitReached",
                     "NoSuccessfulRun"}
    assert alarm(new_db, "ArchiveErrors")["MetricName"] == "Errors"
    assert alarm(new_db, "ArchiveThrottles")["MetricName"] == "Throttles"
    for prefix, metric in (("StuckRun", "StuckRuns"), ("HopLimitReached", "HopLimitReached")):
        props = alarm(new_db, prefix)
        assert (props["Namespace"], props["MetricName"]) == ("Archiver", metric)
        assert props["Dimensions"] == [{"Name": "service", "Value": "archiver"}]
        assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)


def test_a_night_without_a_successful_run_alarms(new_db: Synth) -> None:
    props = alarm(new_db, "NoSuccessfulRun")
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == ("Archiver", "SuccessfulRuns", "Sum")
    assert props["Period"] * props["EvaluationPeriods"] == 26 * 3600
    assert props["DatapointsToAlarm"] == props["EvaluationPeriods"]
    assert (props["ComparisonOperator"], props["Threshold"]) == ("LessThanThreshold", 1)
    # A skipped night emits no data at all: missing data must count as a failure.
    assert props["TreatMissingData"] == "breaching"


def test_with_the_schedule_off_there_is_no_nightly_alarm_but_slack_is_watched(existing_db: Synth) -> None:
    names = set(alarms(existing_db))
    assert not any(name.startswith("MonitoringNoSuccessfulRun") for name in names)
    assert any(name.startswith("MonitoringSlackErrors") for name in names)


def test_dashboard_shows_archived_per_day_durations_and_failures(new_db: Synth) -> None:
    (dashboard,) = new_db.of_type("AWS::CloudWatch::Dashboard").values()
    body = json.loads("".join(p if isinstance(p, str) else "0" for p in
                              new_db.stack.resolve(dashboard["Properties"]["DashboardBody"])["Fn::Join"][1]))
    titles = {w["properties"].get("title") for w in body["widgets"]}
    assert {"Records archived per day", "Run duration (ms)", "Batch duration (ms)", "Failures per day"} <= titles
    archived = next(w["properties"] for w in body["widgets"]
                    if w["properties"].get("title") == "Records archived per day")
    assert archived["metrics"][0][:4] == ["Archiver", "RecordsArchived", "service", "archiver"]
    assert archived["metrics"][0][-1]["period"] == 86400
