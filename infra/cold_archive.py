"""Cold storage on AWS: the export bucket, the Glue table Athena queries, the export function and
its schedule (export -> verify -> purge, in hops like the archive job)."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, Duration, RemovalPolicy, Stack, TimeZone, Validations
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from constructs import Construct

from archiver.config import policy_variable
from handlers.env import ExportEnv

from .archive_function import failure_queue, function_arn
from .config import ArchiverConfig
from .constants import EXPORT_ARCHITECTURE, HANDLER_EXPORT, SCHEDULE_SOURCE
from .function import Placement, acknowledge_version_invoke, archiver_function

EXPORT_FUNCTION_NAME = "archiver-export"
GLUE_DATABASE = "pg_archiver"


class ColdArchive(Construct):
    """Bucket (encrypted, versioned, private, TLS only, lifecycle, optional object lock), Glue table
    with partition projection on ``month``, and the export function with rights on its prefix only."""

    def __init__(self, scope: Construct, id: str, *, config: ArchiverConfig, code: lambda_.Code,
                 placement: Placement, environment: dict[str, str], archive_table: str,
                 own_schedule: bool = True) -> None:
        super().__init__(scope, id)
        prefix = config.export_prefix
        rules = [s3.LifecycleRule(
            id="ExportsToArchiveClass", prefix=f"{prefix}/",
            transitions=[s3.Transition(storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                                       transition_after=Duration.days(config.export_archive_class_after_days))],
            # An erasure rewrites files and deletes their old versions; this catches any it could not.
            noncurrent_version_expiration=Duration.days(30))]
        self.bucket = s3.Bucket(
            self, "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED, versioned=True, enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, lifecycle_rules=rules,
            object_lock_enabled=config.export_object_lock_days is not None,
            object_lock_default_retention=(s3.ObjectLockRetention.governance(
                Duration.days(config.export_object_lock_days)) if config.export_object_lock_days else None),
            removal_policy=RemovalPolicy.RETAIN,
        )
        Validations.of(self.bucket).acknowledge(Acknowledgment(id="AwsSolutions-S1", reason=(
            "Every write to the bucket is the export function's, audited in the run log with its export id; "
            "CloudTrail data events can be enabled for reads where the regulator asks for them.")))
        self.dest = f"s3://{self.bucket.bucket_name}/{prefix}"

        self.database = glue.CfnDatabase(self, "GlueDatabase", catalog_id=Aws.ACCOUNT_ID,
                                         database_input=glue.CfnDatabase.DatabaseInputProperty(name=GLUE_DATABASE))
        location = f"s3://{self.bucket.bucket_name}/{prefix}/{archive_table}/data/"
        self.table = glue.CfnTable(
            self, "GlueTable", catalog_id=Aws.ACCOUNT_ID, database_name=GLUE_DATABASE,
            table_input=glue.CfnTable.TableInputProperty(
                name=archive_table, table_type="EXTERNAL_TABLE",
                parameters={
                    "classification": "parquet", "EXTERNAL": "TRUE", "projection.enabled": "true",
                    "projection.month.type": "date", "projection.month.format": "yyyy-MM",
                    "projection.month.range": "2020-01,NOW", "projection.month.interval": "1",
                    "projection.month.interval.unit": "MONTHS",
                    "storage.location.template": location + "month=${month}/",
                },
                partition_keys=[glue.CfnTable.ColumnProperty(name="month", type="string")],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=location,
                    columns=[glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in config.glue_columns],
                    input_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe")),
            ))
        self.table.node.add_dependency(self.database)

        self.failed_invocations = failure_queue(self, "FailedInvocations")
        self.function = archiver_function(
            self, "Function", config=config, code=code, handler=HANDLER_EXPORT,
            description="Exports old archive rows to S3 as Parquet, verifies them, then purges them",
            function_name=EXPORT_FUNCTION_NAME,
            environment={**environment, ExportEnv.variable("dest"): self.dest,
                         policy_variable("purge_after_days"): str(config.purge_after_days)},
            timeout=Duration.minutes(15), memory_size=config.export_memory_mb, placement=placement,
            architecture=EXPORT_ARCHITECTURE, reserved_concurrent_executions=1,
            recursive_loop=lambda_.RecursiveLoop.ALLOW, retry_attempts=config.async_retry_attempts,
            on_failure=_sqs_destination(self.failed_invocations),
        )
        self.grant_prefix(self.function.role, prefix)  # type: ignore[arg-type]
        self.function.add_to_role_policy(iam.PolicyStatement(
            sid="InvokeItselfToContinue", actions=["lambda:InvokeFunction"],
            resources=[function_arn(self, EXPORT_FUNCTION_NAME)]))

        # Erasure requests go to this function (it alone can rewrite Parquet): attaching this policy is
        # the permission to erase, apart from reading the status API or starting runs.
        self.erase_policy = iam.ManagedPolicy(
            self, "ErasePolicy", description="Erase one person's record everywhere (pg-archiver export function)",
            statements=[iam.PolicyStatement(actions=["lambda:InvokeFunction"],
                                            resources=[function_arn(self, EXPORT_FUNCTION_NAME)])])

        # The default policy's chain, unless its purge schedule runs it already (schedule.py).
        self.schedule: scheduler.Schedule | None = None
        if own_schedule:
            self._schedule(config)

    def _schedule(self, config: ArchiverConfig) -> None:
        role = iam.Role(self, "ScheduleRole", assumed_by=iam.ServicePrincipal(
            "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}))
        self.schedule = scheduler.Schedule(
            self, "Schedule", description="Export, verify, then purge the archive",
            schedule=scheduler.ScheduleExpression.expression(config.export_schedule, TimeZone.of(config.timezone)),
            target=targets.LambdaInvoke(self.function, role=role, retry_attempts=1,
                                        input=scheduler.ScheduleTargetInput.from_object(
                                            {"source": SCHEDULE_SOURCE, "trigger": "export"}),
                                        dead_letter_queue=self.failed_invocations),
            enabled=config.schedule_enabled)
        acknowledge_version_invoke(role, self.function, (
            "The scheduler may invoke the export function and its versions; nothing else."))

    def grant_prefix(self, role: iam.IRole, prefix: str) -> None:
        """Objects under the export prefix only: read, write, delete (and their versions, for erasure)."""
        objects = self.bucket.arn_for_objects(f"{prefix}/*")
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ExportObjects", actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                                          "s3:DeleteObjectVersion", "s3:GetObjectVersion"],
            resources=[objects]))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ListExportPrefix", actions=["s3:ListBucket", "s3:ListBucketVersions"],
            resources=[self.bucket.bucket_arn], conditions={"StringLike": {"s3:prefix": [f"{prefix}/*"]}}))
        stack = Stack.of(self)
        bucket_id = stack.resolve(stack.get_logical_id(self.bucket.node.default_child))  # type: ignore[arg-type]
        Validations.of(role).acknowledge(Acknowledgment(
            id=f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{prefix}/*]", reason=(
                "Objects under the export prefix only: the export writes one file per month and batch, "
                "named by export id, so no fixed list of keys exists.")))


def _sqs_destination(queue: object) -> lambda_.IDestination:
    from aws_cdk import aws_lambda_destinations as destinations

    return destinations.SqsDestination(queue)  # type: ignore[arg-type]
