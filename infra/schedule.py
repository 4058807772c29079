"""The nightly trigger: EventBridge Scheduler, which runs cron expressions in a local time zone."""

from __future__ import annotations

import datetime as dt
import zoneinfo

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

DST_WARNING_ID = "archiver:schedule-in-dst-gap"


def nonexistent_dates(zone: str, at: dt.time, start: dt.date, years: int = 5) -> list[dt.date]:
    """Days from ``start`` on which the local time ``at`` does not exist (a spring-forward gap)."""
    tz = zoneinfo.ZoneInfo(zone)
    gaps = []
    day, end = start, start + dt.timedelta(days=round(365.25 * years))
    while day < end:
        local = dt.datetime.combine(day, at, tzinfo=tz)
        # A time in the gap does not survive a round trip through UTC.
        if local.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
            gaps.append(day)
        day += dt.timedelta(days=1)
    return gaps


class NightlySchedule(Construct):
    """Invokes the archive function every day at ``schedule_time`` in ``timezone``."""

    def __init__(self, scope: Construct, id: str, *, config: ArchiverConfig, function: lambda_.IFunction) -> None:
        super().__init__(scope, id)
        self.dead_letter_queue = failure_queue(self, "DeadLetterQueue")
        role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal(
            "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}))
        target = targets.LambdaInvoke(
            function,
            role=role,
            input=scheduler.ScheduleTargetInput.from_object({
                "source": SCHEDULE_SOURCE,
                "trigger": SCHEDULE_TRIGGER,
                # Delivery is at-least-once: the core starts one run per scheduled time.
                "scheduled_time": scheduler.ContextAttribute.scheduled_time,
            }),
            retry_attempts=3,
            max_event_age=Duration.hours(1),
            dead_letter_queue=self.dead_letter_queue,
        )
        self.schedule = scheduler.Schedule(
            self, "Schedule",
            description="Nightly archiving run",
            schedule=scheduler.ScheduleExpression.cron(
                minute=str(config.schedule_minute), hour=str(config.schedule_hour),
                time_zone=TimeZone.of(config.timezone)),
            target=target,
            enabled=config.schedule_enabled,
        )
        acknowledge_version_invoke(role, function, (
            "The scheduler may invoke the archive function and its versions; nothing else."))
        gaps = nonexistent_dates(config.timezone, dt.time(config.schedule_hour, config.schedule_minute),
                                 dt.date.today())
        if gaps and config.schedule_enabled:
            Annotations.of(self).add_warning_v2(DST_WARNING_ID, (
                f"{config.schedule_time} does not exist in {config.timezone} on "
                f"{', '.join(d.isoformat() for d in gaps)} (clocks spring forward): EventBridge Scheduler "
                "skips those nights and the 'no successful run' alarm will fire. Pick a schedule_time "
                "outside the gap to avoid it."))
