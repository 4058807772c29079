"""Alarms that publish to the alert topic, and the dashboard."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from archiver.observability import METRICS_NAMESPACE, SERVICE, MetricName

from .config import ArchiverConfig
from .policies import ScheduledPolicy

# Powertools Metrics adds this default dimension to every metric it emits.
METRIC_DIMENSIONS = {"service": SERVICE}

# A nightly job that succeeded within this many hours is on time; 26 leaves two hours of slack.
SUCCESS_WINDOW_HOURS = 26
FIVE_MINUTES = Duration.minutes(5)


def archiver_metric(name: str, table: str, statistic: str = "Sum", period: Duration = FIVE_MINUTES,
                    label: str | None = None) -> cloudwatch.Metric:
    """A metric the core emits through Powertools (embedded metric format) for the runs of one live table."""
    return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=name,
                             dimensions_map={**METRIC_DIMENSIONS, "table": table},
                             statistic=statistic, period=period, label=label)


class Monitoring(Construct):
    """What tells a person that the nightly job needs them."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: ArchiverConfig,
        policies: Sequence[ScheduledPolicy],
        topic: sns.ITopic,
        archive_function: lambda_.IFunction,
        queues: Mapping[str, sqs.IQueue],
        watched_functions: Mapping[str, lambda_.IFunction],
    ) -> None:
        super().__init__(scope, id)
        self._action = actions.SnsAction(topic)
        self.alarms: list[cloudwatch.Alarm] = []

        self._alarm("ArchiveErrors", archive_function.metric_errors(period=FIVE_MINUTES),
                    "The archive function failed (the run is marked failed and has alerted with its job id).")
        self._alarm("ArchiveThrottles", archive_function.metric_throttles(period=FIVE_MINUTES),
                    "The archive function was throttled: more copies than its reserved concurrency were started.")
        for name, queue in queues.items():
            self._alarm(f"{name}Messages",
                        queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES,
                                                                           statistic="Maximum"),
                        f"{name}: an invocation of the archive function was given up; the message holds the event.")
        for name, function in watched_functions.items():
            self._alarm(f"{name}Errors", function.metric_errors(period=FIVE_MINUTES),
                        f"The {name} function failed.")
        self.tables = [policy.live_table for policy in policies]
        today = dt.date.today()
        for policy in policies:
            table = policy.live_table
            self._alarm(f"StuckRun-{table}", archiver_metric(MetricName.STUCK_RUNS, table),
                        f"A run of {table} has made no progress for stuck_after_minutes; the nightly trigger did "
                        "not start another.")
            self._alarm(f"HopLimitReached-{table}", archiver_metric(MetricName.HOP_LIMIT_REACHED, table),
                        f"A run of {table} reached max_hops self-invocations and was stopped.")
            # Dry runs count nothing as archived: a table in its trial phase would alarm every night.
            # A dry_run_until still ahead leaves the alarm out until a deploy after that date.
            if config.schedule_enabled and policy.mode == "archive" and not policy.in_trial(today):
                # Missing data breaches: a night that never ran (skipped, disabled trigger, dead chain) emits nothing.
                self._alarm(f"NoSuccessfulRun-{table}",
                            archiver_metric(MetricName.SUCCESSFUL_RUNS, table, period=Duration.hours(1)),
                            f"No archiving run of {table} succeeded in the last {SUCCESS_WINDOW_HOURS} hours.",
                            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                            evaluation_periods=SUCCESS_WINDOW_HOURS,
                            datapoints_to_alarm=SUCCESS_WINDOW_HOURS,
                            treat_missing_data=cloudwatch.TreatMissingData.BREACHING)

        self.dashboard = self._dashboard(config, archive_function)

    def _alarm(self, id: str, metric: cloudwatch.IMetric, description: str, **options: Any) -> None:
        """An alarm on ``metric >= 1`` (unless ``options`` say otherwise) that publishes to the topic."""
        settings: dict[str, Any] = {
            "threshold": 1,
            "evaluation_periods": 1,
            "comparison_operator": cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            "treat_missing_data": cloudwatch.TreatMissingData.NOT_BREACHING,
            **options,
        }
        alarm = cloudwatch.Alarm(self, id, metric=metric, alarm_description=description, **settings)
        alarm.add_alarm_action(self._action)
        self.alarms.append(alarm)

    def _per_table(self, name: str, statistic: str, period: Duration, what: str = "") -> list[cloudwatch.IMetric]:
        """One line per table (labelled with the table, and ``what`` when a graph mixes metrics)."""
        return [archiver_metric(name, table, statistic, period, f"{table} {what}".strip()) for table in self.tables]

    def _dashboard(self, config: ArchiverConfig, archive_function: lambda_.IFunction) -> cloudwatch.Dashboard:
        day, hour = Duration.days(1), Duration.hours(1)
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{config.stack_name}-archiver",
                                         default_interval=Duration.days(14))
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Records archived per day", width=12, view=cloudwatch.GraphWidgetView.BAR,
                left=self._per_table(MetricName.RECORDS_ARCHIVED, "Sum", day, "archived")
                + self._per_table(MetricName.RECORDS_ELIGIBLE, "Sum", day, "eligible"),
            ),
            cloudwatch.GraphWidget(
                title="Failures per day", width=12, view=cloudwatch.GraphWidgetView.BAR,
                left=[*self._per_table(MetricName.RUN_FAILURES, "Sum", day, "failed runs"),
                      archive_function.metric_errors(period=day, label="function errors"),
                      *self._per_table(MetricName.STUCK_RUNS, "Sum", day, "stuck runs"),
                      *self._per_table(MetricName.HOP_LIMIT_REACHED, "Sum", day, "hop limit")],
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Run duration (ms)", width=8,
                left=self._per_table(MetricName.RUN_DURATION_MS, "Maximum", day, "longest run"),
            ),
            cloudwatch.GraphWidget(
                title="Batch duration (ms)", width=8,
                left=[metric for stat in ("Average", "p90", "Maximum")
                      for metric in self._per_table(MetricName.BATCH_DURATION_MS, stat, hour, stat)],
            ),
            cloudwatch.GraphWidget(
                title="Batches per day", width=8,
                left=self._per_table(MetricName.BATCHES, "Sum", day, "batches"),
            ),
        )
        dashboard.add_widgets(cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24))
        return dashboard
