"""The archive function: works batch after batch, then invokes itself to continue (one "hop" each time)."""

from __future__ import annotations

from aws_cdk import Acknowledgment, ArnFormat, Duration, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from .config import ArchiverConfig
from .constants import HANDLER_ARCHIVE
from .function import Placement, archiver_function


def function_arn(scope: Construct, function_name: str) -> str:
    """ARN of a function from its name, so a policy can name it before (or without) referencing it."""
    return Stack.of(scope).format_arn(service="lambda", resource="function", resource_name=function_name,
                                      arn_format=ArnFormat.COLON_RESOURCE_NAME)


def failure_queue(scope: Construct, id: str) -> sqs.Queue:
    """An encrypted, TLS-only dead-letter queue holding what could not be delivered, for 14 days."""
    queue = sqs.Queue(scope, id, encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
                      retention_period=Duration.days(14))
    Validations.of(queue).acknowledge(Acknowledgment(id="AwsSolutions-SQS3", reason=(
        "This queue is the dead-letter destination of failed invocations; nothing consumes it, and "
        "its alarm reports every message.")))
    return queue


class ArchiveFunction(Construct):
    """The nightly job's function, its self-invoke permission and its failed-invocation queue."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: ArchiverConfig,
        code: lambda_.Code,
        placement: Placement,
        environment: dict[str, str],
    ) -> None:
        super().__init__(scope, id)
        # Invocations that fail after their retries, or expire in the queue, land here (and alarm).
        self.failed_invocations = failure_queue(self, "FailedInvocations")
        self.function = archiver_function(
            self, "Function",
            config=config, code=code, handler=HANDLER_ARCHIVE,
            description="Archives old rows batch by batch, continuing itself asynchronously",
            # Fixed name: the self-invoke policy is built from it, so the role does not depend on the function.
            function_name=config.archive_function_name,
            environment=environment,
            timeout=Duration.minutes(config.archive_timeout_minutes),
            memory_size=config.archive_memory_mb,
            placement=placement,
            # One chain of hops plus the overlap of a hand-over; never a fleet of copies.
            reserved_concurrent_executions=config.archive_reserved_concurrency,
            # Lambda would cut the chain after ~16 hops; the core's hop limit, lease and run state replace it.
            recursive_loop=lambda_.RecursiveLoop.ALLOW,
            retry_attempts=config.async_retry_attempts,
            max_event_age=Duration.minutes(config.async_max_event_age_minutes),
            on_failure=destinations.SqsDestination(self.failed_invocations),
        )
        self.function.add_to_role_policy(iam.PolicyStatement(
            sid="InvokeItselfToContinue",
            actions=["lambda:InvokeFunction"],
            resources=[function_arn(self, config.archive_function_name)],
        ))
