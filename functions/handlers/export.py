"""Export function: the export -> verify -> purge chain on the purge schedule (its own, or the
archive function's purge event), in hops; and
erasure requests (``{"action": "erase", "key": ..., "by": ...}``), whose callers need
lambda:InvokeFunction on this function.
Parses the event and the environment, calls the core's chain, shapes the answer. Needs pyarrow,
which only this function's asset carries."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from archiver import alerts, aws, cold_chain
from archiver.cold_chain import ChainDeps
from archiver.cold_storage import open_storage
from archiver.config import DEFAULT_PURGE_AFTER_DAYS, load_policies, load_settings
from archiver.connection import open_database
from archiver.erasure import key_loader
from archiver.observability import logger

from .env import ExportEnv
from .lazy import LazyDeps, Provider


def build_deps() -> ChainDeps:
    env = dict(os.environ)
    policies, settings = load_policies(env), load_settings(env)
    policy = policies.policies[0]  # an event naming no table: the first (the only) policy
    mine = ExportEnv.from_env(env)
    db = open_database(env, settings, policy.timezone, aws.fetch_secret, aws.fetch_iam_token)
    sink: alerts.AlertSink = aws.sns_sink(settings.alert_topic_arn) if settings.alert_topic_arn else alerts.LogSink()
    return ChainDeps(db=db, policy=policy, storage=open_storage(mine.dest), sink=sink, invoker=aws.LambdaInvoker(),
                     function="",  # from the context, per invocation (handle)
                     older_than_days=policy.purge_after_days or DEFAULT_PURGE_AFTER_DAYS,
                     rows_per_file=mine.rows_per_file, max_hops=settings.max_hops,
                     erasure_key=key_loader(mine.erasure_key_secret_arn, aws.fetch_secret),
                     policies=policies)


DEPS = LazyDeps(build_deps)


def handle(event: dict[str, Any], context: LambdaContext, deps: Provider[ChainDeps]) -> dict[str, Any]:
    """One invocation, without the Lambda decorators: an erasure request, or the chain's next hop."""
    chain = replace(deps(), function=context.invoked_function_arn)  # the next hop invokes this function
    return cold_chain.handle(event, chain, lambda: context.get_remaining_time_in_millis() / 1000)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext, deps: Provider[ChainDeps] = DEPS) -> dict[str, Any]:
    return handle(event, context, deps)
