"""The triggers: EventBridge Scheduler, which runs cron expressions in a local time zone.

Per policy, its nightly run (unless its mode is ``off``) and its weekly purge (when it sets
``purge_after_days``); for the deployment, the weekly and monthly summary reports.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Sequence
from typing import Any

from aws_cdk import Annotations, Aws, Duration, TimeZone
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from constructs import Construct

from .archive_function import failure_queue
from .config import ArchiverConfig
from .constants import SCHEDULE_SOURCE, SCHEDULE_TRIGGER
from .function import acknowledge_version_invoke
from .policies import ScheduledPolicy

DST_WARNING_ID = "archiver:schedule-in-dst-gap"
# The purge runs weekly, when nothing else does: Sunday 03:00, local time of its policy.
PURGE_TIME = dt.time(3, 0)
# Reports reach people at the start of a working day: Monday 08:00 and the 1st of the month, 08:00.
REPORT_TIME = dt.time(8, 0)


def nonexistent_dates(zone: str, at: dt.time, start: dt.date, years: int = 5,
                      on: Callable[[dt.date], bool] | None = None) -> list[dt.date]:
    """Days from ``start`` (those ``on`` accepts) on which the local time ``at`` does not exist."""
    tz = zoneinfo.ZoneInfo(zone)
    gaps = []
    day, end = start, start + dt.timedelta(days=round(365.25 * years))
    while day < end:
        local = dt.datetime.combine(day, at, tzinfo=tz)
        # A time in the gap does not survive a round trip through UTC.
        if (on is None or on(day)) and \
                local.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
            gaps.append(day)
        day += dt.timedelta(days=1)
    return gaps


def archive_event(policy: ScheduledPolicy) -> dict[str, Any]:
    """The nightly event: the contract's schedule event, naming the table unless it is the only policy."""
    event: dict[str, Any] = {
        "source": SCHEDULE_SOURCE,
        "trigger": SCHEDULE_TRIGGER,
        # Delivery is at-least-once: the core starts one run per scheduled time.
        "scheduled_time": scheduler.ContextAttribute.scheduled_time,
    }
    if policy.table is not None:
        event["table"] = policy.table
    if policy.mode == "dry_run":
        event["dry_run"] = True
    return event


class Schedules(Construct):
    """Invokes the archive function for each policy's nightly run and purge, and for the summary reports.
    With cold storage on (``purge_function``: the export function), each purge is the export ->
    verify -> purge chain instead: the export function gets the purge event, and the archive
    function never deletes rows no verified export holds."""

    def __init__(self, scope: Construct, id: str, *, config: ArchiverConfig,
                 policies: Sequence[ScheduledPolicy], function: lambda_.IFunction,
                 purge_function: lambda_.IFunction | None = None) -> None:
        super().__init__(scope, id)
        self._config = config
        self._function = function
        self.dead_letter_queue = failure_queue(self, "DeadLetterQueue")
        self._role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal(
            "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}))
        self.schedules: dict[str, scheduler.Schedule] = {}
        for policy in policies:
            if policy.mode == "off":
                continue
            name = policy.live_table
            self._add(f"Archive-{name}", f"Nightly archiving run of {name}", policy.timezone,
                      dt.time(policy.hour, policy.minute), archive_event(policy))
            if policy.purge_after_days is not None:
                self._add(f"Purge-{name}", f"Weekly purge of {name}'s archive (older than "
                                           f"{policy.purge_after_days} days)",
                          policy.timezone, PURGE_TIME,
                          {"action": "purge", "table": name,
                           "scheduled_time": scheduler.ContextAttribute.scheduled_time},
                          week_day="SUN", function=purge_function)
        if config.summary_reports:
            zone = policies[0].timezone
            for period, days in (("weekly", {"week_day": "MON"}), ("monthly", {"day": "1"})):
                self._add(f"Report-{period}", f"The {period} summary of every table, through the alert topic",
                          zone, REPORT_TIME,
                          {"action": "report", "period": period,
                           "scheduled_time": scheduler.ContextAttribute.scheduled_time}, **days)
        acknowledge_version_invoke(self._role, function, (
            "The scheduler may invoke the archive function and its versions; nothing else."))
        if purge_function is not None:
            acknowledge_version_invoke(self._role, purge_function, (
                "The scheduler may invoke the export function and its versions for the purge chain."))

    def _add(self, id: str, description: str, zone: str, at: dt.time, event: dict[str, Any],
             week_day: str | None = None, day: str | None = None, function: lambda_.IFunction | None = None) -> None:
        target = targets.LambdaInvoke(  # grants the role lambda:InvokeFunction on the function
            function or self._function,
            role=self._role,
            input=scheduler.ScheduleTargetInput.from_object(event),
            retry_attempts=3,
            max_event_age=Duration.hours(1),
            dead_letter_queue=self.dead_letter_queue,
        )
        schedule = scheduler.Schedule(
            self, id,
            description=description,
            schedule=scheduler.ScheduleExpression.cron(
                minute=str(at.minute), hour=str(at.hour), week_day=week_day, day=day, time_zone=TimeZone.of(zone)),
            target=target,
            enabled=self._config.schedule_enabled,
        )
        self.schedules[id] = schedule
        if not self._config.schedule_enabled:
            return
        if week_day is not None:
            weekday = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN").index(week_day)
            gaps = nonexistent_dates(zone, at, dt.date.today(), on=lambda d: d.weekday() == weekday)
        else:
            gaps = nonexistent_dates(zone, at, dt.date.today(), on=None if day is None else lambda d: d.day == int(day))
        if gaps:
            Annotations.of(schedule).add_warning_v2(DST_WARNING_ID, (
                f"{id}: {at:%H:%M} does not exist in {zone} on {', '.join(d.isoformat() for d in gaps)} "
                "(clocks spring forward): EventBridge Scheduler skips those runs and the 'no successful run' "
                "alarm will fire. Pick a time outside the gap to avoid it."))
