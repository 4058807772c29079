"""Erasure on AWS: ``POST /erasures`` on the status API, with its own IAM permission, and the HMAC key
of the erasure records.

The route always needs IAM (SigV4) authorisation, whatever ``api_auth`` says for the other routes,
and only principals given the ``ErasureOperator`` managed policy may call it. The status function
records the request and hands the work to the export function (it alone carries pyarrow to rewrite
exported files): invoking that function is the only thing this adds to its rights. Both functions
read the key's secret, which the stack creates and keeps (RETAIN): without it, the erasure records
could no longer be recognised, and an erased person would come back with a restore.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, RemovalPolicy, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from handlers.env import StatusEnv

from .archive_function import function_arn
from .constants import API_STAGE, ERASURE_KEY_ENV, ERASURE_PATH
from .status_api import StatusApi


class ErasureAccess(Construct):
    """The erasure route, its managed policy, the key's secret and the functions' rights to them."""

    def __init__(self, scope: Construct, id: str, *, status: StatusApi, export_function: lambda_.Function,
                 export_function_name: str) -> None:
        super().__init__(scope, id)
        self.key = secretsmanager.Secret(
            self, "Key", description="pg-archiver: HMAC key of the erasure records (never rotate; docs/security.md)",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=64, exclude_punctuation=True),
            removal_policy=RemovalPolicy.RETAIN)
        Validations.of(self.key).acknowledge(Acknowledgment(id="AwsSolutions-SMG4", reason=(
            "The key names erased records by their HMAC; the erased keys are gone, so the records cannot be "
            "re-keyed. A rotated key would let erased people back in with a restore (a record's key_id refuses "
            "that loudly instead).")))
        for function in (status.function, export_function):
            self.key.grant_read(function)
            function.add_environment(ERASURE_KEY_ENV, self.key.secret_arn)

        status.function.add_environment(StatusEnv.variable("export_function_name"), export_function_name)
        status.function.add_to_role_policy(iam.PolicyStatement(
            sid="EraseThroughTheExportFunction", actions=["lambda:InvokeFunction"],
            resources=[function_arn(self, export_function_name)]))

        integration = apigw.LambdaIntegration(status.function, allow_test_invoke=False)
        resource = status.api.root.add_resource(ERASURE_PATH)
        iam_only = {"authorization_type": apigw.AuthorizationType.IAM, "api_key_required": False}
        self.method = resource.add_method("POST", integration, **iam_only)  # type: ignore[arg-type]
        resource.add_method("ANY", integration, **iam_only)  # type: ignore[arg-type]  # 405 with Allow, as elsewhere

        self.operator_policy = iam.ManagedPolicy(
            self, "ErasureOperator",
            description="pg-archiver: erase one person's record everywhere (POST /erasures on the status API)",
            statements=[iam.PolicyStatement(
                sid="Erase", actions=["execute-api:Invoke"],
                resources=[status.api.arn_for_execute_api("POST", f"/{ERASURE_PATH}", API_STAGE)])])
