"""The triggers: each policy's nightly run and purge, the summary reports, and what happens when one cannot deliver."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from aws_cdk import App, CfnElement, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Annotations, Match, Template

from infra.config import ArchiverConfig
from infra.policies import ScheduledPolicy
from infra.schedule import Schedules, nonexistent_dates

from .synthesis import Synth

CONTEXT_TIME = "<aws.scheduler.scheduled-time>"


def schedules(synth: Synth) -> dict[str, dict[str, Any]]:
    """Every schedule's properties, by description."""
    return {s["Properties"]["Description"]: s["Properties"] for s in synth.of_type("AWS::Scheduler::Schedule").values()}


def nightly(synth: Synth, table: str | None = None) -> dict[str, Any]:
    (found,) = [props for description, props in schedules(synth).items()
                if description.startswith("Nightly archiving run of " + (table or ""))]
    return found


def event(props: dict[str, Any]) -> dict[str, Any]:
    return json.loads(props["Target"]["Input"])


def test_single_policy_runs_daily_at_two_in_the_configured_zone(new_db: Synth) -> None:
    props = nightly(new_db)
    assert props["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert props["ScheduleExpressionTimezone"] == "Indian/Mauritius"
    assert props["State"] == "ENABLED"
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}


def test_single_policy_event_names_no_table_as_today(new_db: Synth) -> None:
    props = nightly(new_db)
    assert props["Target"]["Arn"] == {"Fn::GetAtt": [new_db.stack.resolve(
        new_db.stack.get_logical_id(_archive_cfn(new_db))), "Arn"]}
    assert event(props) == {"source": "archiver.schedule", "trigger": "schedule", "scheduled_time": CONTEXT_TIME}


def test_single_policy_has_no_purge_schedule(new_db: Synth) -> None:
    assert not [d for d in schedules(new_db) if d.startswith("Weekly purge")]


def test_one_nightly_schedule_per_policy_at_its_time_and_zone(two_tables: Synth) -> None:
    customer, calls = nightly(two_tables, "nic_cc_customer"), nightly(two_tables, "nic_cc_call_log")
    assert (customer["ScheduleExpression"], customer["ScheduleExpressionTimezone"]) == (
        "cron(0 2 * * ? *)", "Indian/Mauritius")
    assert (calls["ScheduleExpression"], calls["ScheduleExpressionTimezone"]) == (
        "cron(30 2 * * ? *)", "Indian/Mauritius")
    assert len([d for d in schedules(two_tables) if d.startswith("Nightly")]) == 2


def test_each_nightly_event_names_its_table(two_tables: Synth) -> None:
    for table in ("nic_cc_customer", "nic_cc_call_log"):
        assert event(nightly(two_tables, table)) == {
            "source": "archiver.schedule", "trigger": "schedule", "scheduled_time": CONTEXT_TIME, "table": table}


def test_times_and_zones_follow_each_policy(inline_policies: Synth) -> None:
    customer = nightly(inline_policies, "nic_cc_customer")
    assert (customer["ScheduleExpression"], customer["ScheduleExpressionTimezone"]) == (
        "cron(15 1 * * ? *)", "Europe/Paris")
    calls = nightly(inline_policies, "nic_cc_call_log")
    assert (calls["ScheduleExpression"], calls["ScheduleExpressionTimezone"]) == (
        "cron(30 2 * * ? *)", "Indian/Mauritius")


def test_dry_run_mode_reaches_the_event(inline_policies: Synth) -> None:
    assert event(nightly(inline_policies, "nic_cc_customer"))["dry_run"] is True
    # dry_run_until is the core's to apply (in the policy's zone, on the night itself): not in the event.
    assert "dry_run" not in event(nightly(inline_policies, "nic_cc_call_log"))


def test_mode_off_has_no_scheduled_runs(inline_policies: Synth) -> None:
    assert not [d for d in schedules(inline_policies) if "nic_cc_follow_up" in d]


def test_a_purge_schedule_per_policy_that_sets_purge_after_days(two_tables: Synth) -> None:
    purges = {d: p for d, p in schedules(two_tables).items() if d.startswith("Weekly purge")}
    (props,) = purges.values()
    assert (props["ScheduleExpression"], props["ScheduleExpressionTimezone"]) == (
        "cron(0 3 ? * SUN *)", "Indian/Mauritius")
    assert event(props) == {"action": "purge", "table": "nic_cc_call_log", "scheduled_time": CONTEXT_TIME}


def test_weekly_and_monthly_reports_in_the_first_policys_zone(inline_policies: Synth) -> None:
    found = schedules(inline_policies)
    weekly, monthly = found["The weekly summary of every table, through the alert topic"], \
        found["The monthly summary of every table, through the alert topic"]
    assert (weekly["ScheduleExpression"], weekly["ScheduleExpressionTimezone"]) == (
        "cron(0 8 ? * MON *)", "Europe/Paris")
    assert (monthly["ScheduleExpression"], monthly["ScheduleExpressionTimezone"]) == (
        "cron(0 8 1 * ? *)", "Europe/Paris")
    assert event(weekly) == {"action": "report", "period": "weekly", "scheduled_time": CONTEXT_TIME}
    assert event(monthly) == {"action": "report", "period": "monthly", "scheduled_time": CONTEXT_TIME}


def test_every_schedule_invokes_the_archive_function_retries_then_dead_letters(two_tables: Synth) -> None:
    found = schedules(two_tables)
    assert len(found) == 5  # two nightly runs, one purge, two reports
    arn = {"Fn::GetAtt": [two_tables.stack.resolve(two_tables.stack.get_logical_id(_archive_cfn(two_tables))),
                          "Arn"]}
    queues = set()
    for props in found.values():
        target = props["Target"]
        assert target["Arn"] == arn
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600}
        queues.add(target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0])
    (queue_id,) = queues
    assert two_tables.resources[queue_id]["Type"] == "AWS::SQS::Queue"


def test_can_be_switched_off(existing_db: Synth) -> None:
    assert {props["State"] for props in schedules(existing_db).values()} == {"DISABLED"}


def test_spring_forward_gap_is_found_where_clocks_jump() -> None:
    gaps = nonexistent_dates("Europe/London", dt.time(1, 30), dt.date(2026, 1, 1), years=2)
    assert gaps == [dt.date(2026, 3, 29), dt.date(2027, 3, 28)]
    assert nonexistent_dates("America/New_York", dt.time(2, 0), dt.date(2026, 1, 1), years=1) == [
        dt.date(2026, 3, 8)]


def test_no_gap_in_mauritius_or_outside_the_jump() -> None:
    assert nonexistent_dates("Indian/Mauritius", dt.time(2, 0), dt.date(2026, 1, 1)) == []
    assert nonexistent_dates("Europe/London", dt.time(2, 0), dt.date(2026, 1, 1)) == []


def test_a_gap_only_counts_on_the_days_the_schedule_runs() -> None:
    # Europe/London springs forward on Sundays: a Monday-only time never meets the gap.
    assert nonexistent_dates("Europe/London", dt.time(1, 30), dt.date(2026, 1, 1), years=2,
                             on=lambda d: d.weekday() == 0) == []


def _stack_with_schedules(*policies: ScheduledPolicy, **config: str) -> Stack:
    stack = Stack(App(), "ScheduleOnly")
    function = lambda_.Function(stack, "Fn", runtime=lambda_.Runtime.PYTHON_3_12, handler="index.handler",
                                code=lambda_.Code.from_inline("def handler(event, context): pass"))
    Schedules(stack, "Schedule", config=ArchiverConfig.model_validate(config), policies=policies, function=function)
    return stack


def test_synth_warns_for_each_schedule_whose_time_falls_in_a_gap() -> None:
    stack = _stack_with_schedules(
        ScheduledPolicy(live_table="a", timezone="Europe/London", schedule_time="01:30"),
        ScheduledPolicy(live_table="b", timezone="Europe/London", schedule_time="01:00"),
        ScheduledPolicy(live_table="c", timezone="Indian/Mauritius", schedule_time="02:00"))
    annotations = Annotations.from_stack(stack)
    annotations.has_warning("/ScheduleOnly/Schedule/Archive-a", Match.string_like_regexp(
        "01:30 does not exist in Europe/London"))
    annotations.has_warning("/ScheduleOnly/Schedule/Archive-b", Match.string_like_regexp(
        "01:00 does not exist in Europe/London"))
    annotations.has_no_warning("/ScheduleOnly/Schedule/Archive-c", Match.any_value())


def test_synth_is_quiet_when_the_times_always_exist() -> None:
    stack = _stack_with_schedules(ScheduledPolicy(timezone="Indian/Mauritius", schedule_time="02:00",
                                                  purge_after_days=730))
    Annotations.from_stack(stack).has_no_warning("*", Match.string_like_regexp("does not exist"))


def test_reports_can_be_left_out() -> None:
    stack = _stack_with_schedules(ScheduledPolicy(), summary_reports="false")
    Template.from_stack(stack).resource_count_is("AWS::Scheduler::Schedule", 1)


def _archive_cfn(synth: Synth) -> CfnElement:
    child = synth.stack.node.find_child("Archive").node.find_child("Function").node.default_child
    assert isinstance(child, CfnElement)
    return child
