"""The settings every archiver function shares: runtime, architecture, tracing, logs, base environment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Acknowledgment, Annotations, Aws, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct, IConstruct

from archiver.observability import METRICS_NAMESPACE, SERVICE

from .config import ArchiverConfig
from .constants import ARCHITECTURE, RUNTIME

FUNCTION_ACKNOWLEDGMENTS = (
    Acknowledgment(
        id="AwsSolutions-IAM5[Resource::*]",
        reason="Only X-Ray's PutTraceSegments/PutTelemetryRecords (active tracing) use '*': they accept no "
               "resource ARN. tests/infrastructure/test_iam.py fails on any other action granted on '*'."),
    Acknowledgment(
        id="AwsSolutions-L1",
        reason="The functions run CPython 3.12 because the asset's compiled wheels (pydantic-core) are built "
               "for it; infra/constants.py moves the runtime and the wheels together."),
)


@dataclass(frozen=True)
class Placement:
    """Where a function that talks to the database runs: private subnets, the functions' security group."""

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_group: ec2.ISecurityGroup


# Lambda's names for the levels of config.log_level (Python's WARNING is Lambda's WARN).
APPLICATION_LOG_LEVEL = {"DEBUG": lambda_.ApplicationLogLevel.DEBUG, "INFO": lambda_.ApplicationLogLevel.INFO,
                         "WARNING": lambda_.ApplicationLogLevel.WARN, "ERROR": lambda_.ApplicationLogLevel.ERROR}
SYSTEM_LOG_LEVEL = {"DEBUG": lambda_.SystemLogLevel.DEBUG, "INFO": lambda_.SystemLogLevel.INFO,
                    "WARN": lambda_.SystemLogLevel.WARN}
TRACING_OFF_NOTE_ID = "archiver:vpc-tracing-off"


def base_environment(config: ArchiverConfig) -> dict[str, str]:
    return {
        "POWERTOOLS_SERVICE_NAME": SERVICE,
        "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        "LOG_LEVEL": config.log_level,
    }


def traced(config: ArchiverConfig, placement: Placement | None) -> bool:
    """Active tracing only where the segments can reach X-Ray: outside the VPC, or a VPC with a way out."""
    return placement is None or config.vpc_tracing


def archiver_function(
    scope: Construct,
    id: str,
    *,
    config: ArchiverConfig,
    code: lambda_.Code,
    handler: str,
    description: str,
    environment: dict[str, str],
    timeout: Duration,
    placement: Placement | None = None,
    memory_size: int = 256,
    **kwargs: Any,
) -> lambda_.Function:
    """A Python function on the shared asset, with its own log group; in the VPC when ``placement`` is given."""
    log_group = logs.LogGroup(
        scope, f"{id}Logs",
        retention=config.log_retention,
        # Logs are operational only (no customer data), so they go with the stack.
        removal_policy=RemovalPolicy.DESTROY,
    )
    network: dict[str, Any] = {}
    if placement is not None:
        network = {"vpc": placement.vpc, "vpc_subnets": placement.subnets,
                   "security_groups": [placement.security_group]}
    tracing = traced(config, placement)
    # Without a route to X-Ray the SDK's segments would be dropped: no tracing, and Powertools' Tracer off.
    tracer_env = {} if tracing else {"POWERTOOLS_TRACE_DISABLED": "true"}
    function = lambda_.Function(
        scope, id,
        code=code,
        handler=handler,
        runtime=RUNTIME,
        architecture=kwargs.pop("architecture", ARCHITECTURE),  # the export function's asset is x86_64
        description=description,
        environment={**base_environment(config), **tracer_env, **environment},
        timeout=timeout,
        memory_size=memory_size,
        tracing=lambda_.Tracing.ACTIVE if tracing else lambda_.Tracing.DISABLED,
        # JSON lines (Powertools writes them too), filtered by level in Lambda before they are stored.
        logging_format=lambda_.LoggingFormat.JSON,
        application_log_level_v2=APPLICATION_LOG_LEVEL[config.log_level],
        system_log_level_v2=SYSTEM_LOG_LEVEL[config.system_log_level],
        log_group=log_group,
        **network,
        **kwargs,
    )
    if not tracing:
        Annotations.of(function).add_info(
            f"[{TRACING_OFF_NOTE_ID}] tracing is off for this VPC function: its VPC has no route to X-Ray "
            "(set xray_endpoint=true to add an X-Ray interface endpoint and trace it)")
    Validations.of(function).acknowledge(*FUNCTION_ACKNOWLEDGMENTS)
    return function


def acknowledge_version_invoke(on: IConstruct, function: lambda_.IFunction, reason: str) -> None:
    """Accept ``lambda:InvokeFunction`` on ``<function>:*`` (its versions), which CDK grants with the function."""
    stack = Stack.of(function)
    logical_id = stack.resolve(stack.get_logical_id(function.node.default_child))  # type: ignore[arg-type]
    Validations.of(on).acknowledge(
        Acknowledgment(id=f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]", reason=reason))


def imported_secret(scope: Construct, id: str, arn: str) -> secretsmanager.ISecret:
    """A secret the deployer created (database credentials, Slack webhook)."""
    return secretsmanager.Secret.from_secret_complete_arn(scope, id, arn)


def grant_imported_secret_read(secret: secretsmanager.ISecret, grantee: iam.IGrantable,
                               config: ArchiverConfig) -> None:
    """Read an imported secret; under secrets_kms_key_arn, also decrypt with that key, through Secrets Manager only."""
    secret.grant_read(grantee)
    if config.secrets_kms_key_arn:
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=["kms:Decrypt"],
            resources=[config.secrets_kms_key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{Aws.REGION}.amazonaws.com"}},
        ))
