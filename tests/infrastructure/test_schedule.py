"""The nightly trigger: when, in which zone, with what event, and what happens when it cannot deliver."""

from __future__ import annotations

import datetime as dt
import json

from aws_cdk import App, CfnElement, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Annotations, Match

from infra.config import ArchiverConfig
from infra.schedule import NightlySchedule, nonexistent_dates

from .synthesis import Synth


def _schedule(synth: Synth) -> dict:
    (schedule,) = synth.of_type("AWS::Scheduler::Schedule").values()
    return schedule["Properties"]


def test_runs_daily_at_two_in_the_configured_zone(new_db: Synth) -> None:
    props = _schedule(new_db)
    assert props["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert props["ScheduleExpressionTimezone"] == "Indian/Mauritius"
    assert props["State"] == "ENABLED"
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}


def test_invokes_the_archive_function_with_the_schedule_event(new_db: Synth) -> None:
    target = _schedule(new_db)["Target"]
    assert target["Arn"] == {"Fn::GetAtt": [new_db.stack.resolve(
        new_db.stack.get_logical_id(_archive_cfn(new_db))), "Arn"]}
    assert json.loads(target["Input"]) == {
        "source": "archiver.schedule",
        "trigger": "schedule",
        "scheduled_time": "<aws.scheduler.scheduled-time>",
    }


def test_retries_then_dead_letters(new_db: Synth) -> None:
    target = _schedule(new_db)["Target"]
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600}
    queue_id = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
    assert new_db.resources[queue_id]["Type"] == "AWS::SQS::Queue"


def test_can_be_switched_off(existing_db: Synth) -> None:
    assert _schedule(existing_db)["State"] == "DISABLED"


def test_spring_forward_gap_is_found_where_clocks_jump() -> None:
    gaps = nonexistent_dates("Europe/London", dt.time(1, 30), dt.date(2026, 1, 1), years=2)
    assert gaps == [dt.date(2026, 3, 29), dt.date(2027, 3, 28)]
    assert nonexistent_dates("America/New_York", dt.time(2, 0), dt.date(2026, 1, 1), years=1) == [
        dt.date(2026, 3, 8)]


def test_no_gap_in_mauritius_or_outside_the_jump() -> None:
    assert nonexistent_dates("Indian/Mauritius", dt.time(2, 0), dt.date(2026, 1, 1)) == []
    assert nonexistent_dates("Europe/London", dt.time(2, 0), dt.date(2026, 1, 1)) == []


def _stack_with_schedule(**config: str) -> Stack:
    stack = Stack(App(), "ScheduleOnly")
    function = lambda_.Function(stack, "Fn", runtime=lambda_.Runtime.PYTHON_3_12, handler="index.handler",
                                code=lambda_.Code.from_inline("def handler(event, context): pass"))
    NightlySchedule(stack, "Schedule", config=ArchiverConfig.model_validate(config), function=function)
    return stack


def test_synth_warns_when_the_time_falls_in_a_gap() -> None:
    stack = _stack_with_schedule(timezone="Europe/London", schedule_time="01:30")
    Annotations.from_stack(stack).has_warning(
        "/ScheduleOnly/Schedule", Match.string_like_regexp("01:30 does not exist in Europe/London"))


def test_synth_is_quiet_when_the_time_always_exists() -> None:
    stack = _stack_with_schedule(timezone="Indian/Mauritius", schedule_time="02:00")
    Annotations.from_stack(stack).has_no_warning("*", Match.string_like_regexp("does not exist"))


def _archive_cfn(synth: Synth) -> CfnElement:
    child = synth.stack.node.find_child("Archive").node.find_child("Function").node.default_child
    assert isinstance(child, CfnElement)
    return child
