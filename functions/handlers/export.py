"""Export function: the export -> verify -> purge chain on the purge schedule, in hops; and
erasure requests (``{"action": "erase", "key": ..., "by": ...}``), whose callers need
lambda:InvokeFunction on this function.
Parses the event and the environment, calls the core's chain, shapes the answer. Needs pyarrow,
which only this function's asset carries."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from archiver import alerts, aws
from archiver.cold_chain import ChainDeps, erase_request, export_hop
from archiver.cold_storage import open_storage
from archiver.config import load_policy, load_settings
from archiver.connection import open_database
from archiver.erasure import ERASURE_KEY_ENV, key_from_secret
from archiver.observability import logger

_deps: ChainDeps | None = None


class ExportEnv(BaseModel):
    """The export function's own variables (the policy's come through load_policy)."""

    dest: str = Field(pattern=r"^s3://[a-z0-9.-]{3,63}(/.*)?$")
    rows_per_file: int = Field(100_000, ge=1, le=10_000_000)


def build_deps(context: LambdaContext) -> ChainDeps:
    env = dict(os.environ)
    policy, settings = load_policy(env), load_settings(env)
    mine = ExportEnv(dest=env.get("ARCHIVER_EXPORT_DEST", ""),
                     rows_per_file=env.get("ARCHIVER_EXPORT_ROWS_PER_FILE") or 100_000)
    db = open_database(env, settings, policy.timezone, aws.fetch_secret, aws.fetch_iam_token)
    sink: alerts.AlertSink = aws.sns_sink(settings.alert_topic_arn) if settings.alert_topic_arn else alerts.LogSink()
    return ChainDeps(db=db, policy=policy, storage=open_storage(mine.dest), sink=sink, invoker=aws.LambdaInvoker(),
                     function=context.invoked_function_arn, older_than_days=policy.purge_after_days,
                     rows_per_file=mine.rows_per_file, max_hops=settings.max_hops,
                     erasure_key=key_from_secret(env.get(ERASURE_KEY_ENV), aws.fetch_secret))


def use_deps(deps: ChainDeps | None) -> None:
    global _deps
    _deps = deps


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _deps
    if _deps is None:
        _deps = build_deps(context)
    event = event if isinstance(event, dict) else {}
    if event.get("action") == "erase":
        return erase_request(event, _deps)
    return export_hop(event, _deps,
                      lambda: context.get_remaining_time_in_millis() / 1000)
