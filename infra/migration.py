"""The schema migration, run on every deploy that changes the code or the policy, so a fresh stack works at once."""

from __future__ import annotations

import hashlib
import json

from aws_cdk import Acknowledgment, CustomResource, Duration, RemovalPolicy, Token, Validations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct, IDependable

from .config import ArchiverConfig
from .constants import HANDLER_MIGRATE
from .function import Placement, acknowledge_version_invoke, archiver_function


class SchemaMigration(Construct):
    """A custom resource whose handler calls the core's migrate on create and update."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: ArchiverConfig,
        code: lambda_.Code,
        code_hash: str,
        placement: Placement,
        environment: dict[str, str],
        database_ready: IDependable,
    ) -> None:
        super().__init__(scope, id)
        self.function = archiver_function(
            self, "Function",
            config=config, code=code, handler=HANDLER_MIGRATE,
            description="Migrates the archiver schema on deploy",
            environment=environment,
            timeout=Duration.minutes(5),
            placement=placement,
        )
        # The framework function stays outside the VPC: it answers CloudFormation on a pre-signed S3 URL.
        provider = cr.Provider(
            self, "Provider",
            on_event_handler=self.function,
            log_group=logs.LogGroup(self, "ProviderLogs", retention=config.log_retention,
                                    removal_policy=RemovalPolicy.DESTROY),
        )
        # A new value of either property is an update, and an update re-runs the migration.
        # Tokens (ARNs known only at deploy) are left out: their placeholders are not stable.
        settings = {name: value for name, value in environment.items() if not Token.is_unresolved(value)}
        fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
        self.resource = CustomResource(
            self, "Schema",
            service_token=provider.service_token,
            resource_type="Custom::ArchiverSchema",
            properties={"CodeHash": code_hash, "Settings": fingerprint},
        )
        # The database, its security-group rules and the endpoints must exist before the first migration.
        self.resource.node.add_dependency(database_ready)
        acknowledge_version_invoke(provider, self.function, (
            "The custom-resource framework may invoke the migration function and its versions; nothing else."))
        Validations.of(provider).acknowledge(
            Acknowledgment(id="AwsSolutions-L1", reason=(
                "The custom-resource framework function's Node.js runtime is chosen and kept current by "
                "aws-cdk-lib's Provider construct, not by this stack.")),
        )
