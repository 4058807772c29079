"""IAM: every policy names its resources; the few exceptions are listed here with the reason."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .synthesis import Synth

# Actions allowed on Resource "*", and why. Anything else with "*" fails the test.
STAR_RESOURCE_ALLOWED = {
    "xray:PutTraceSegments": "X-Ray accepts no resource ARN; needed for active tracing.",
    "xray:PutTelemetryRecords": "X-Ray accepts no resource ARN; needed for active tracing.",
}
# The only AWS managed policies attached to roles, and why.
MANAGED_POLICIES_ALLOWED = {
    "AWSLambdaBasicExecutionRole": "a function's own log streams",
    "AWSLambdaVPCAccessExecutionRole": "network interfaces of a function in the VPC",
}
# Wildcards inside an action name that are accepted.
ACTION_WILDCARDS_ALLOWED = {"kms:GenerateDataKey*": "KMS's data-key family, on the topic's own key"}


def identity_statements(synth: Synth) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Allow statement of every identity policy (inline on roles or standalone)."""
    for key, resource in synth.resources.items():
        props = resource.get("Properties", {})
        documents = []
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append(props["PolicyDocument"])
        elif resource["Type"] == "AWS::IAM::Role":
            documents += [p["PolicyDocument"] for p in props.get("Policies", [])]
        for document in documents:
            for statement in document["Statement"]:
                if statement["Effect"] == "Allow":
                    yield key, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def literal_tail(value: Any) -> str:
    """The literal text an ARN ends with, whether it is a string, an Fn::Sub or an Fn::Join."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        return literal_tail(value["Fn::Sub"])
    if isinstance(value, dict) and "Fn::Join" in value:
        return literal_tail(value["Fn::Join"][1][-1])
    return ""


def test_no_star_resource_outside_the_allow_list(any_synth: Synth) -> None:
    for key, statement in identity_statements(any_synth):
        if "*" in as_list(statement["Resource"]):
            unexpected = set(as_list(statement["Action"])) - set(STAR_RESOURCE_ALLOWED)
            assert not unexpected, f"{key} grants {sorted(unexpected)} on '*'"


def test_no_action_wildcards_outside_the_allow_list(any_synth: Synth) -> None:
    for key, statement in identity_statements(any_synth):
        for action in as_list(statement["Action"]):
            assert "*" not in action or action in ACTION_WILDCARDS_ALLOWED, f"{key} grants {action}"


def test_version_wildcards_only_for_invoking_a_named_function(any_synth: Synth) -> None:
    # CDK grants `<function arn>:*` (its versions) with lambda:InvokeFunction; nothing else may end in ':*'.
    for key, statement in identity_statements(any_synth):
        if any(literal_tail(resource).endswith(":*") for resource in as_list(statement["Resource"])):
            assert as_list(statement["Action"]) == ["lambda:InvokeFunction"], key


def test_only_the_lambda_execution_managed_policies(any_synth: Synth) -> None:
    for key, role in any_synth.of_type("AWS::IAM::Role").items():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            name = literal_tail(arn).rsplit("/", 1)[-1]
            assert name in MANAGED_POLICIES_ALLOWED, f"{key} attaches {name}"


def test_archive_function_may_invoke_only_itself(new_db: Synth) -> None:
    invokes = [statement for key, statement in identity_statements(new_db)
               if key.startswith("ArchiveFunctionServiceRole") and statement["Action"] == "lambda:InvokeFunction"]
    (statement,) = invokes
    assert statement["Resource"]["Fn::Join"][1][-1] == ":function:archiver-archive"
