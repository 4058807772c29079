"""Erasure on AWS (issue 22, point 5): POST /erasures with IAM authorisation and a managed policy of its
own, the status function allowed to invoke the export function and nothing more, and the HMAC key's
secret, kept, read by those two functions only."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.constants import ERASURE_KEY_ENV

from .synthesis import EXISTING_DATABASE, Synth, synthesize
from .test_iam import identity_statements
from .test_status_api import routes


@pytest.fixture(scope="module")
def erasing(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize({"export_enabled": True}, tmp_path_factory.mktemp("erasing"))


@pytest.fixture(scope="module")
def erasing_with_api_key(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize({**EXISTING_DATABASE, "export_enabled": True}, tmp_path_factory.mktemp("erasing-key"))


def erasure_methods(synth: Synth) -> dict[str, dict[str, Any]]:
    (resource_id,) = [k for k, r in synth.of_type("AWS::ApiGateway::Resource").items()
                      if r["Properties"]["PathPart"] == "erasures"]
    return {m["Properties"]["HttpMethod"]: m["Properties"] for m in synth.of_type("AWS::ApiGateway::Method").values()
            if m["Properties"]["ResourceId"] == {"Ref": resource_id}}


def managed_policy(synth: Synth, name: str) -> dict[str, Any]:
    (policy,) = [p for k, p in synth.of_type("AWS::IAM::ManagedPolicy").items() if name in k]
    return policy["Properties"]


@pytest.mark.parametrize("config", ["erasing", "erasing_with_api_key"])
def test_the_erasure_route_always_needs_iam_whatever_the_other_routes_need(config: str,
                                                                           request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(config)
    methods = erasure_methods(synth)
    assert set(methods) == {"POST", "ANY"}
    for props in methods.values():
        assert props["AuthorizationType"] == "AWS_IAM" and props.get("ApiKeyRequired") in (None, False)


def test_the_erasure_operator_policy_grants_exactly_post_erasures(erasing: Synth) -> None:
    (statement,) = managed_policy(erasing, "ErasureOperator")["PolicyDocument"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke" and statement["Effect"] == "Allow"
    arn = json.dumps(statement["Resource"])
    assert arn.endswith('"/v1/POST/erasures"]]}') and "*" not in arn


def test_the_status_operator_policy_does_not_reach_the_erasure_route(erasing: Synth) -> None:
    (statement,) = managed_policy(erasing, "StatusOperator")["PolicyDocument"]["Statement"]
    resources = json.dumps(statement["Resource"])
    assert "/v1/GET/runs" in resources and "/v1/POST/runs" in resources and "erasures" not in resources
    assert "/v1/*/" not in resources  # no method wildcard that would take in POST /erasures


def test_the_status_function_may_invoke_the_archive_and_export_functions_only(erasing: Synth) -> None:
    (status_role,) = [k for k in erasing.of_type("AWS::IAM::Role") if k.startswith("StatusApiFunction")]
    invokes = [s for key, s in identity_statements(erasing) if "lambda:InvokeFunction" in json.dumps(s["Action"])
               and status_role in json.dumps(erasing.resources[key]["Properties"].get("Roles", []))]
    targets = sorted(json.dumps(s["Resource"]) for s in invokes)
    assert len(targets) == 2 and any("function:archiver-export" in t for t in targets)
    assert all("*" not in t for t in targets)


def test_the_key_is_a_kept_secret_only_the_status_and_export_functions_read(erasing: Synth) -> None:
    ((secret_id, secret),) = [(k, s) for k, s in erasing.of_type("AWS::SecretsManager::Secret").items()
                              if k.startswith("Erasure")]
    assert secret["DeletionPolicy"] == "Retain" and secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32
    readers = {key for key, s in identity_statements(erasing) if "secretsmanager:GetSecretValue"
               in json.dumps(s["Action"]) and secret_id in json.dumps(s["Resource"])}
    roles = {json.dumps(erasing.resources[k]["Properties"]["Roles"]) for k in readers}
    assert len(roles) == 2 and all("StatusApiFunction" in r or "ColdArchiveFunction" in r for r in roles)
    functions = erasing.of_type("AWS::Lambda::Function")
    for prefix in ("StatusApiFunction", "ColdArchiveFunction"):
        (function,) = [f for k, f in functions.items() if k.startswith(prefix)]
        assert function["Properties"]["Environment"]["Variables"][ERASURE_KEY_ENV] == {"Ref": secret_id}


def test_without_export_there_is_no_erasure_route_policy_or_key(new_db: Synth) -> None:
    assert ("POST", "erasures") not in routes(new_db)
    assert not [k for k in new_db.of_type("AWS::IAM::ManagedPolicy") if "ErasureOperator" in k]
    assert not [k for k in new_db.of_type("AWS::SecretsManager::Secret") if k.startswith("Erasure")]


@pytest.mark.parametrize("config", ["erasing", "erasing_with_api_key"])
def test_cdk_nag_finds_nothing_unacknowledged_with_erasure(config: str, request: pytest.FixtureRequest) -> None:
    from cdk_nag import AwsSolutionsChecks

    synth: Synth = request.getfixturevalue(config)
    report = AwsSolutionsChecks().validate_scope(synth.app)
    assert [f"{v.rule_name} at {[r.construct_path for r in v.violating_resources]}" for v in report.violations] == []
