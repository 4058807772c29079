"""The status API: its routes, who may call them, throttling, access logs; and the status function's rights."""

from __future__ import annotations

from infra.constants import API_PATHS, API_ROUTES

from .synthesis import Synth


def routes(synth: Synth) -> set[tuple[str, str]]:
    """(method, path) of every API Gateway method, the path rebuilt from the resource tree."""
    resources = synth.of_type("AWS::ApiGateway::Resource")

    def path(resource_id: str) -> str:
        props = resources[resource_id]["Properties"]
        parent = props["ParentId"]
        prefix = path(parent["Ref"]) + "/" if "Ref" in parent else ""
        return prefix + props["PathPart"]

    def method_path(resource: dict) -> str:
        return path(resource["Ref"]) if "Ref" in resource else ""  # the root: Fn::GetAtt RootResourceId

    return {(m["Properties"]["HttpMethod"], method_path(m["Properties"]["ResourceId"]))
            for m in synth.of_type("AWS::ApiGateway::Method").values()}


def test_serves_exactly_the_status_routes(any_synth: Synth) -> None:
    assert routes(any_synth) == set(API_ROUTES) | {("ANY", path) for path in API_PATHS}


def test_other_methods_on_a_route_reach_the_function_for_its_405(new_db: Synth) -> None:
    """Without ANY, API Gateway would answer a wrong method itself (403), without the Allow header."""
    anys = {path for method, path in routes(new_db) if method == "ANY"}
    assert anys == {path for _, path in API_ROUTES}


def test_every_method_requires_iam_authorisation(new_db: Synth) -> None:
    methods = new_db.of_type("AWS::ApiGateway::Method").values()
    assert methods and all(m["Properties"]["AuthorizationType"] == "AWS_IAM" for m in methods)


def test_api_key_mode_requires_the_key_on_every_method_and_a_usage_plan(existing_db: Synth) -> None:
    for method in existing_db.of_type("AWS::ApiGateway::Method").values():
        assert method["Properties"]["ApiKeyRequired"] is True
    (plan,) = existing_db.of_type("AWS::ApiGateway::UsagePlan").values()
    assert plan["Properties"]["Throttle"] == {"BurstLimit": 10, "RateLimit": 5}
    assert len(existing_db.of_type("AWS::ApiGateway::ApiKey")) == 1
    assert len(existing_db.of_type("AWS::ApiGateway::UsagePlanKey")) == 1


def test_methods_proxy_to_the_status_function(new_db: Synth) -> None:
    for method in new_db.of_type("AWS::ApiGateway::Method").values():
        integration = method["Properties"]["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert "StatusApiFunction" in str(integration["Uri"])


def test_stage_is_throttled_traced_and_access_logged(new_db: Synth) -> None:
    (stage,) = new_db.of_type("AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == "v1"
    assert props["TracingEnabled"] is True
    (settings,) = props["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == 5 and settings["ThrottlingBurstLimit"] == 10
    arn_parts = props["AccessLogSetting"]["DestinationArn"]["Fn::Join"][1]
    assert ":log-group:" in arn_parts
    assert new_db.resources[arn_parts[-1]["Ref"]]["Type"] == "AWS::Logs::LogGroup"


def test_status_function_may_start_the_archive_function_and_read_the_secret_only(new_db: Synth) -> None:
    role = next(k for k in new_db.of_type("AWS::IAM::Role") if k.startswith("StatusApiFunctionServiceRole"))
    (policy,) = [p["Properties"]["PolicyDocument"] for p in new_db.of_type("AWS::IAM::Policy").values()
                 if p["Properties"]["Roles"] == [{"Ref": role}]]
    granted = {}
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            granted[action] = new_db.stack.resolve(statement["Resource"])
    # No X-Ray grants: without an X-Ray endpoint the VPC functions are not traced.
    assert set(granted) == {"lambda:InvokeFunction", "secretsmanager:GetSecretValue",
                            "secretsmanager:DescribeSecret"}
    assert granted["lambda:InvokeFunction"]["Fn::Join"][1][-1] == ":function:archiver-archive"
    assert granted["secretsmanager:GetSecretValue"] == {"Ref": next(iter(
        new_db.of_type("AWS::SecretsManager::SecretTargetAttachment")))}
