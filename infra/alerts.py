"""Alerts: an encrypted SNS topic, its e-mail subscription and the Slack function."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, Duration, RemovalPolicy, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from handlers.env import SlackEnv

from .config import ArchiverConfig
from .constants import HANDLER_SLACK
from .function import archiver_function, grant_imported_secret_read, imported_secret


class Alerts(Construct):
    """Where every alarm and every alert the code raises ends up."""

    def __init__(self, scope: Construct, id: str, *, config: ArchiverConfig, code: lambda_.Code) -> None:
        super().__init__(scope, id)
        # Only messages in flight are encrypted with it, so it can go with the stack.
        self.key = kms.Key(self, "Key", enable_key_rotation=True, description="Encrypts the archiver alert topic",
                           removal_policy=RemovalPolicy.DESTROY, pending_window=Duration.days(7))
        # CloudWatch alarms publish to the topic as the CloudWatch service, which needs the key; only
        # for this account's alarms (no confused deputy: another account's alarm cannot use it).
        self.key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            resources=["*"],
            conditions={
                "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                "ArnLike": {"aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"},
            },
        ))
        self.topic = sns.Topic(self, "Topic", display_name="Archiver alerts", master_key=self.key,
                               enforce_ssl=True)

        if config.alert_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alert_email))

        self.slack_function: lambda_.Function | None = None
        if config.slack_webhook_secret_arn:
            webhook = imported_secret(self, "SlackWebhook", config.slack_webhook_secret_arn)
            # Outside the VPC: it needs the internet (Slack) and no database.
            self.slack_function = archiver_function(
                self, "SlackFunction",
                config=config, code=code, handler=HANDLER_SLACK,
                description="Posts archiver alerts to Slack",
                environment={SlackEnv.variable("webhook_secret_arn"): config.slack_webhook_secret_arn},
                timeout=Duration.seconds(30),
            )
            grant_imported_secret_read(webhook, self.slack_function, config)
            self.topic.add_subscription(subscriptions.LambdaSubscription(self.slack_function))

    def grant_publish(self, function: lambda_.IFunction) -> None:
        """Let a function publish to the topic, which includes encrypting with its key."""
        self.topic.grant_publish(function)
        Validations.of(function).acknowledge(Acknowledgment(
            id="AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
            reason="GenerateDataKey* is KMS's action family for data keys; the resource is the topic's own key."))
