"""The job-status API: a REST API Gateway in front of the status function."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, CfnOutput, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from archiver.config import settings_variable
from handlers.env import StatusEnv

from .archive_function import function_arn
from .config import ArchiverConfig
from .constants import API_PATHS, API_ROUTES, API_STAGE, HANDLER_STATUS
from .function import Placement, archiver_function


class StatusApi(Construct):
    """Start runs, follow them, read statistics; IAM (SigV4) authorisation unless api_auth=api_key."""

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
        access_logs = logs.LogGroup(self, "AccessLogs", retention=config.log_retention,
                                    removal_policy=RemovalPolicy.DESTROY)
        iam_auth = config.api_auth == "iam"
        self.api = apigw.RestApi(
            self, "Api",
            rest_api_name=f"{config.stack_name}-status",
            description="Archiver job status",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # The account-wide CloudWatch role is not this stack's to own (see the APIG6 acknowledgment).
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name=API_STAGE,
                throttling_rate_limit=config.api_rate_limit,
                throttling_burst_limit=config.api_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=True),
                tracing_enabled=True,
                metrics_enabled=True,
            ),
            default_method_options=apigw.MethodOptions(
                authorization_type=apigw.AuthorizationType.IAM if iam_auth else apigw.AuthorizationType.NONE,
                api_key_required=not iam_auth,
            ),
        )
        # Built from the id and the fixed stage name: `api.url` would make the function depend on its own API.
        self.base_url = f"https://{self.api.rest_api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}/{API_STAGE}"

        self.function = archiver_function(
            self, "Function",
            config=config, code=code, handler=HANDLER_STATUS,
            description="Archiver job-status API",
            environment={**environment, settings_variable("status_base_url"): self.base_url,
                         StatusEnv.variable("archive_function_name"): config.archive_function_name},
            timeout=Duration.seconds(29),
            placement=placement,
        )
        # Starting a run is the only thing it may do besides reading the database.
        self.function.add_to_role_policy(iam.PolicyStatement(
            sid="StartArchiveRuns",
            actions=["lambda:InvokeFunction"],
            resources=[function_arn(self, config.archive_function_name)],
        ))

        validator = self.api.add_request_validator("Validator", validate_request_parameters=True,
                                                   validate_request_body=True)
        integration = apigw.LambdaIntegration(self.function, allow_test_invoke=False)
        for method, path in API_ROUTES:
            self.api.root.resource_for_path(path).add_method(method, integration, request_validator=validator)
        # Any other method on a route's path reaches the function too, which answers 405 with Allow
        # (API Gateway alone would answer 403 "Missing Authentication Token").
        for path in API_PATHS:
            self.api.root.resource_for_path(path).add_method("ANY", integration)

        if iam_auth:
            self._add_operator_policy()
        else:
            self._add_api_key(config)
        self._acknowledge(iam_auth)

    def _add_operator_policy(self) -> None:
        """execute-api:Invoke on these routes, by name: POST /erasures is not among them (its own policy)."""
        arns = [self.api.arn_for_execute_api(method, "/" + path.replace("{job_id}", "*"), API_STAGE)
                for method, path in API_ROUTES]
        self.operator_policy = iam.ManagedPolicy(
            self, "StatusOperator",
            description="pg-archiver: read the status API, start and cancel runs (not erasure)",
            statements=[iam.PolicyStatement(sid="StatusRoutes", actions=["execute-api:Invoke"], resources=arns)])
        stack = Stack.of(self)
        api_id = stack.resolve(stack.get_logical_id(self.api.node.default_child))  # type: ignore[arg-type]
        Validations.of(self.operator_policy).acknowledge(*(Acknowledgment(
            id=f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:"
               f"<{api_id}>/{API_STAGE}/{method}/{path.replace('{job_id}', '*')}]",
            reason="A route with a run's id in its path: any run may be read or cancelled, and run ids are "
                   "created at run time.") for method, path in API_ROUTES if "{job_id}" in path))

    def _add_api_key(self, config: ArchiverConfig) -> None:
        plan = self.api.add_usage_plan(
            "UsagePlan",
            throttle=apigw.ThrottleSettings(rate_limit=config.api_rate_limit, burst_limit=config.api_burst_limit),
            api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
        )
        key = self.api.add_api_key("ApiKey", description="Archiver status API key")
        plan.add_api_key(key)
        CfnOutput(self, "ApiKeyId", value=key.key_id,
                  description="aws apigateway get-api-key --include-value --api-key <id> shows the key")

    def _acknowledge(self, iam_auth: bool) -> None:
        acknowledgments = [
            Acknowledgment(id="AwsSolutions-COG4", reason=(
                "Callers are operators and AWS principals, authorised by IAM (SigV4) or an API key; "
                "there is no end-user pool to put a Cognito authoriser in front of.")),
            Acknowledgment(id="AwsSolutions-APIG3", reason=(
                "Every method needs IAM authorisation or an API key and the stage is throttled; a WAF web "
                "ACL would add cost without protecting anything those do not.")),
            Acknowledgment(id="AwsSolutions-APIG6", reason=(
                "Access logs are on. Execution logs need the account-wide API Gateway CloudWatch role, "
                "which one stack must not take over for the whole account.")),
        ]
        if not iam_auth:
            acknowledgments.append(Acknowledgment(id="AwsSolutions-APIG4", reason=(
                "api_auth=api_key was chosen: every method requires the API key of a throttled usage plan.")))
        Validations.of(self.api).acknowledge(*acknowledgments)
