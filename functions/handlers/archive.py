"""Archive function: the nightly schedule, start requests from the status API, and its own
continuations. Parses the event, calls the core's worker, shapes the answer."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from archiver import aws, sinks
from archiver.config import load_policies, load_settings
from archiver.connection import open_database
from archiver.events import InvalidEventError, parse_archive_event
from archiver.observability import POWERTOOLS, PowertoolsMetrics, logger
from archiver.worker import Deps, process

from .lazy import LazyDeps, Provider

tracer = Tracer()
metrics = Metrics(namespace=POWERTOOLS.metrics_namespace)


class ContextBudget:
    """The time this invocation has left, from the Lambda context."""

    def __init__(self, context: LambdaContext) -> None:
        self.context = context

    def remaining_ms(self) -> float:
        return float(self.context.get_remaining_time_in_millis())


def build_deps() -> Deps:
    """Built once per container: the connection and clients are reused while it stays warm."""
    env = dict(os.environ)
    policies, settings = load_policies(env), load_settings(env)
    policy = policies.policies[0]
    db = open_database(env, settings, policy.timezone, aws.fetch_secret, aws.fetch_iam_token)
    sink: sinks.AlertSink = aws.sns_sink(settings.alert_topic_arn) if settings.alert_topic_arn else sinks.LogSink()
    return Deps(db=db, policy=policy, settings=settings, invoker=aws.LambdaInvoker(), alerts=sink,
                metrics=PowertoolsMetrics(metrics, table=policy.live_table), policies=policies)


DEPS = LazyDeps(build_deps)


def handle(event: dict[str, Any], context: LambdaContext, deps: Provider[Deps]) -> dict[str, Any]:
    """One invocation, without the Lambda decorators: parse the event, call the worker."""
    try:
        parsed = parse_archive_event(event)
    except InvalidEventError as exc:
        # Not retried: a malformed event will not get better by being delivered again.
        logger.error("rejected archive event", extra={"error": str(exc)})
        return {"status": "rejected", "error": str(exc)}
    return process(parsed, deps(), ContextBudget(context), context.invoked_function_arn)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext, deps: Provider[Deps] = DEPS) -> dict[str, Any]:
    """The Lambda entry point; the local runner passes its own ``deps`` (keyword: the tracer passes only those)."""
    return handle(event, context, deps)
