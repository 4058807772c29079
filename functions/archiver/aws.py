"""The AWS side of the core: secrets, RDS IAM tokens, the Lambda self-invoker and the SNS sink.

boto3 clients are created lazily and cached, so a warm Lambda reuses them.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from .sinks import SnsSink

# botocore's defaults (60 s connect, 60 s read, legacy retries) would let one stalled call eat the
# hop's reserve: the hand-over Invoke runs with ARCHIVER_RESERVE_MS (10 s) left. Every call these
# clients make (async Invoke, Publish, GetSecretValue) answers in milliseconds, so the worst case,
# 2 attempts x (1 s connect + 3 s read) plus standard mode's jittered back-off (< 1 s), stays
# inside that reserve.
CONNECT_TIMEOUT_S = 1
READ_TIMEOUT_S = 3
MAX_ATTEMPTS = 2
CLIENT_CONFIG = Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                       retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS})


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=CLIENT_CONFIG)


def fetch_secret(arn: str) -> str:
    """Secret value, cached between invocations by Powertools' parameters utility."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    # The utility's default provider would build its own client with botocore's defaults.
    if "secrets" not in DEFAULT_PROVIDERS:
        DEFAULT_PROVIDERS["secrets"] = parameters.SecretsProvider(boto3_client=client("secretsmanager"))
    return str(parameters.get_secret(arn, max_age=300))


def fetch_iam_token(host: str, port: int, user: str) -> str:
    return str(client("rds").generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user))


class LambdaInvoker:
    """Asynchronous invocation (InvocationType=Event) of a function, here the archive function itself."""

    def invoke_async(self, function: str, payload: dict[str, Any]) -> None:
        client("lambda").invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(payload).encode())


def sns_sink(topic_arn: str) -> SnsSink:
    return SnsSink(client("sns"), topic_arn)
