"""The AWS side of the core: secrets, RDS IAM tokens, the Lambda self-invoker and the SNS sink.

boto3 clients are created lazily and cached, so a warm Lambda reuses them.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import boto3

from .sinks import SnsSink


@cache
def client(service: str) -> Any:
    return boto3.client(service)


def fetch_secret(arn: str) -> str:
    """Secret value, cached between invocations by Powertools' parameters utility."""
    from aws_lambda_powertools.utilities import parameters

    return str(parameters.get_secret(arn, max_age=300))


def fetch_iam_token(host: str, port: int, user: str) -> str:
    return str(client("rds").generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user))


class LambdaInvoker:
    """Asynchronous invocation (InvocationType=Event) of a function, here the archive function itself."""

    def invoke_async(self, function: str, payload: dict[str, Any]) -> None:
        client("lambda").invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(payload).encode())


def sns_sink(topic_arn: str) -> SnsSink:
    return SnsSink(client("sns"), topic_arn)
