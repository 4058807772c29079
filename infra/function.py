"""The settings every archiver function shares: runtime, architecture, tracing, logs, base environment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct, IConstruct

from .config import ArchiverConfig
from .constants import ARCHITECTURE, METRICS_NAMESPACE, RUNTIME, SERVICE

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


def base_environment(config: ArchiverConfig) -> dict[str, str]:
    return {
        "POWERTOOLS_SERVICE_NAME": SERVICE,
        "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        "LOG_LEVEL": config.log_level,
    }


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
    function = lambda_.Function(
        scope, id,
        code=code,
        handler=handler,
        runtime=RUNTIME,
        architecture=kwargs.pop("architecture", ARCHITECTURE),  # the export function's asset is x86_64
        description=description,
        environment={**base_environment(config), **environment},
        timeout=timeout,
        memory_size=memory_size,
        tracing=lambda_.Tracing.ACTIVE,
        log_group=log_group,
        **network,
        **kwargs,
    )
    Validations.of(function).acknowledge(*FUNCTION_ACKNOWLEDGMENTS)
    return function


def acknowledge_version_invoke(on: IConstruct, function: lambda_.IFunction, reason: str) -> None:
    """Accept ``lambda:InvokeFunction`` on ``<function>:*`` (its versions), which CDK grants with the function."""
    stack = Stack.of(function)
    logical_id = stack.resolve(stack.get_logical_id(function.node.default_child))  # type: ignore[arg-type]
    Validations.of(on).acknowledge(
        Acknowledgment(id=f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]", reason=reason))
