"""Alarms that publish to the alert topic, and the dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from .config import ArchiverConfig
from .constants import METRIC_DIMENSIONS, METRICS_NAMESPACE, MetricName

# A nightly job that succeeded within this many hours is on time; 26 leaves two hours of slack.
SUCCESS_WINDOW_HOURS = 26
FIVE_MINUTES = Duration.minutes(5)


def archiver_metric(name: str, statistic: str = "Sum", period: Duration = FIVE_MINUTES,
                    label: str | None = None) -> cloudwatch.Metric:
    """A metric the core emits through Powertools (embedded metric format)."""
    return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=name, dimensions_map=METRIC_DIMENSIONS,
                             statistic=statistic, period=period, label=label)


class Monitoring(Construct):
    """What tells a person that the nightly job needs them."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: ArchiverConfig,
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
        self._alarm("StuckRun", archiver_metric(MetricName.STUCK_RUNS),
                    "A run has made no progress for stuck_after_minutes; the nightly trigger did not start another.")
        self._alarm("HopLimitReached", archiver_metric(MetricName.HOP_LIMIT_REACHED),
                    "A run reached max_hops self-invocations and was stopped.")
        if config.schedule_enabled:
            # Missing data breaches: a night that never ran (skipped, disabled trigger, dead chain) emits nothing.
            self._alarm("NoSuccessfulRun", archiver_metric(MetricName.SUCCESSFUL_RUNS, period=Duration.hours(1)),
                        f"No archiving run succeeded in the last {SUCCESS_WINDOW_HOURS} hours.",
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

    def _dashboard(self, config: ArchiverConfig, archive_function: lambda_.IFunction) -> cloudwatch.Dashboard:
        day = Duration.days(1)
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{config.stack_name}-archiver",
                                         default_interval=Duration.days(14))
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Records archived per day", width=12, view=cloudwatch.GraphWidgetView.BAR,
                left=[archiver_metric(MetricName.RECORDS_ARCHIVED, period=day, label="archived"),
                      archiver_metric(MetricName.RECORDS_ELIGIBLE, period=day, label="eligible")],
            ),
            cloudwatch.GraphWidget(
                title="Failures per day", width=12, view=cloudwatch.GraphWidgetView.BAR,
                left=[archiver_metric(MetricName.RUN_FAILURES, period=day, label="failed runs"),
                      archive_function.metric_errors(period=day, label="function errors"),
                      archiver_metric(MetricName.STUCK_RUNS, period=day, label="stuck runs"),
                      archiver_metric(MetricName.HOP_LIMIT_REACHED, period=day, label="hop limit")],
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Run duration (ms)", width=8,
                left=[archiver_metric(MetricName.RUN_DURATION_MS, "Maximum", day, "longest run")],
            ),
            cloudwatch.GraphWidget(
                title="Batch duration (ms)", width=8,
                left=[archiver_metric(MetricName.BATCH_DURATION_MS, stat, Duration.hours(1), stat)
                      for stat in ("Average", "p90", "Maximum")],
            ),
            cloudwatch.GraphWidget(
                title="Batches per day", width=8,
                left=[archiver_metric(MetricName.BATCHES, period=day, label="batches")],
            ),
        )
        dashboard.add_widgets(cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24))
        return dashboard
