"""The one stack: composes the constructs, wires their permissions, tags everything, acknowledges cdk-nag findings."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import Acknowledgment, App, CfnOutput, Stack, Tags, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from archiver.config import settings_variable

from .alerts import Alerts
from .archive_function import ArchiveFunction
from .code import ca_bundle_problem, code_hash, export_code, lambda_code, runtime_python
from .cold_archive import EXPORT_FUNCTION_NAME, ColdArchive
from .config import ArchiverConfig, ConfigError, config_from_context
from .constants import PYTHON_VERSION
from .database import DatabaseAccess
from .erasure import ErasureAccess
from .migration import SchemaMigration
from .monitoring import Monitoring
from .policies import Deployment, deployment
from .schedule import Schedules
from .status_api import StatusApi

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Findings on every Lambda role of the stack (CDK's helper functions included), and why they are accepted.
STACK_ACKNOWLEDGMENTS = (
    Acknowledgment(
        id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        reason="AWS's managed policy for a function's own log streams; it names no data resource."),
    Acknowledgment(
        id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]",
        reason="AWS's managed policy for the network interfaces of a function in a VPC; EC2 offers no narrower "
               "resource for them."),
)


class ArchiverStack(Stack):
    """Schedule, archive function, status API, alerts, database access, monitoring and migration."""

    def __init__(self, scope: Construct, id: str, *, config: ArchiverConfig, policies: Deployment,
                 root: Path = PROJECT_ROOT, **kwargs: Any) -> None:
        super().__init__(scope, id, description="Archives old PostgreSQL rows every night (pg-archiver)", **kwargs)
        ca_bundle = Path(config.db_ca_bundle)
        source_hash = code_hash(root, ca_bundle)
        code = lambda_code(root, source_hash, ca_bundle)

        alerts = Alerts(self, "Alerts", config=config, code=code)
        database = DatabaseAccess(self, "Database", config=config)
        shared = {**policies.environment, **database.environment}

        status = StatusApi(self, "StatusApi", config=config, code=code, placement=database.placement,
                           environment=shared)
        archive = ArchiveFunction(self, "Archive", config=config, code=code, placement=database.placement,
                                  environment={**shared, settings_variable("alert_topic_arn"): alerts.topic.topic_arn,
                                               settings_variable("status_base_url"): status.base_url})
        migration = SchemaMigration(self, "Migration", config=config, code=code, code_hash=source_hash,
                                    placement=database.placement, environment=shared, database_ready=database)

        exported = []
        if config.export_enabled:
            first = policies.policies[0] if policies.policies else None
            cold = ColdArchive(self, "ColdArchive", config=config, code=export_code(root, source_hash, ca_bundle),
                               placement=database.placement, archive_table=config.archive_table or
                               "nic_cc_customer_backup",
                               environment={**shared, settings_variable("alert_topic_arn"): alerts.topic.topic_arn},
                               own_schedule=first is None or first.mode == "off" or first.purge_after_days is None)
            exported = [cold.function]
            CfnOutput(self, "ExportBucketName", value=cold.bucket.bucket_name)
            erasure = ErasureAccess(self, "Erasure", status=status, export_function=cold.function,
                                    export_function_name=EXPORT_FUNCTION_NAME)
            CfnOutput(self, "ErasureOperatorPolicyArn", value=erasure.operator_policy.managed_policy_arn)
        # With cold storage on, each policy's purge schedule runs the export -> verify -> purge chain.
        schedule = Schedules(self, "Schedule", config=config, policies=policies.policies, function=archive.function,
                             purge_function=exported[0] if exported else None)
        for function in (archive.function, status.function, migration.function, *exported):
            database.grant_connect(function)
        for function in (archive.function, *exported):
            alerts.grant_publish(function)

        watched = {"Status": status.function}
        if alerts.slack_function is not None:
            watched["Slack"] = alerts.slack_function
        self.monitoring = Monitoring(
            self, "Monitoring", config=config, policies=policies.policies, topic=alerts.topic,
            archive_function=archive.function,
            queues={"FailedInvocations": archive.failed_invocations,
                    "ScheduleDeadLetters": schedule.dead_letter_queue},
            watched_functions=watched,
        )

        CfnOutput(self, "ArchiveFunctionName", value=archive.function.function_name)
        CfnOutput(self, "AlertTopicArn", value=alerts.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard.dashboard_name)
        if database.secret is not None:
            CfnOutput(self, "DatabaseSecretArn", value=database.secret.secret_arn)

        Tags.of(self).add("project", "pg-archiver")
        Tags.of(self).add("service", "archiver")
        Validations.of(self).acknowledge(*STACK_ACKNOWLEDGMENTS)


def cdk_json_context(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """cdk.json's context, which the CDK CLI would pass; read here so `python app.py` sees it too."""
    return dict(json.loads((root / "cdk.json").read_text()).get("context", {}))


def build_app(context: Mapping[str, Any] | None = None, outdir: str | None = None,
              nag: bool = True) -> tuple[App, ArchiverStack]:
    """The CDK app. Context: cdk.json, then the CLI's (-c), then ``context``; cdk-nag checks at synth."""
    app = App(outdir=outdir, context=cdk_json_context(), post_cli_context=dict(context or {}))
    config = config_from_context(app.node.get_all_context())
    policies = deployment(config, PROJECT_ROOT)
    # Half-configured is refused here, not found out by a failed migration and a rollback.
    problem = ca_bundle_problem(PROJECT_ROOT, Path(config.db_ca_bundle))
    if problem:
        raise ConfigError(problem)
    if app.node.try_get_context("aws:cdk:bundling-stacks") != [] and runtime_python() is None:
        print(f"warning: no CPython {PYTHON_VERSION} here (python{PYTHON_VERSION} or ARCHIVER_RUNTIME_PYTHON): the"
              " asset ships without bytecode, and each cold start compiles what it imports (about twice as slow;"
              " docs/deploy.md, Cold starts)", file=sys.stderr)
    # Environment-agnostic: synth needs no account, and nothing is looked up.
    stack = ArchiverStack(app, config.stack_name, config=config, policies=policies)
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack
