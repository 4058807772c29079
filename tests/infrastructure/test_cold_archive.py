"""The cold tier on AWS (export_enabled): bucket, Glue table for Athena, the export function and its rights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from infra.constants import PYARROW

from .synthesis import Synth, synthesize
from .test_compliance import LINT_REGIONS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize({"export_enabled": True, "export_object_lock_days": 365,
                       "export_archive_class_after_days": 120}, tmp_path_factory.mktemp("cold"))


def test_the_bucket_is_encrypted_versioned_private_and_moves_to_an_archive_class(cold: Synth) -> None:
    cold.template.has_resource_properties("AWS::S3::Bucket", {
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
        "VersioningConfiguration": {"Status": "Enabled"},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "ObjectLockEnabled": True,
        "ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {
            "Mode": "GOVERNANCE", "Days": 365}}},
        "LifecycleConfiguration": {"Rules": [Match.object_like({
            "Prefix": "exports/", "Status": "Enabled",
            "Transitions": [{"StorageClass": "GLACIER_IR", "TransitionInDays": 120}]})]},
    })


def test_the_bucket_refuses_anything_but_tls(cold: Synth) -> None:
    (policy,) = cold.of_type("AWS::S3::BucketPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements)


def test_the_glue_table_projects_month_partitions_over_the_export_prefix(cold: Synth) -> None:
    (table,) = cold.of_type("AWS::Glue::Table").values()
    spec = table["Properties"]["TableInput"]
    params = spec["Parameters"]
    assert params["projection.enabled"] == "true" and params["projection.month.type"] == "date"
    assert params["projection.month.format"] == "yyyy-MM" and params["projection.month.interval.unit"] == "MONTHS"
    assert "exports/nic_cc_customer_backup/data/month=${month}/" in json.dumps(params["storage.location.template"])
    assert [k["Name"] for k in spec["PartitionKeys"]] == ["month"]
    columns = {c["Name"]: c["Type"] for c in spec["StorageDescriptor"]["Columns"]}
    assert columns["amount_due"] == "decimal(12,2)" and columns["archived_at"] == "timestamp"
    assert "ParquetHiveSerDe" in spec["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]


def export_function(synth: Synth) -> tuple[str, dict]:
    (found,) = [(k, v) for k, v in synth.of_type("AWS::Lambda::Function").items()
                if v["Properties"]["Handler"] == "handlers.export.handler"]
    return found


def test_the_export_function_runs_on_x86_64_with_the_destination(cold: Synth) -> None:
    _, fn = export_function(cold)
    props = fn["Properties"]
    assert props["Architectures"] == ["x86_64"] and props["Timeout"] == 900
    assert props["ReservedConcurrentExecutions"] == 1
    assert "ARCHIVER_EXPORT_DEST" in props["Environment"]["Variables"]


def test_the_export_function_may_touch_only_its_prefix_of_its_bucket(cold: Synth) -> None:
    key, fn = export_function(cold)
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    s3_statements = [s for p in cold.of_type("AWS::IAM::Policy").values()
                     if {"Ref": role} in p["Properties"]["Roles"]
                     for s in p["Properties"]["PolicyDocument"]["Statement"]
                     if any(a.startswith("s3:") for a in ([s["Action"]] if isinstance(s["Action"], str)
                                                          else s["Action"]))]
    assert s3_statements
    for s in s3_statements:
        text = json.dumps(s["Resource"])
        assert "ColdArchiveBucket" in text and "*" not in text.replace("/exports/*", "")
        if "s3:ListBucket" in s["Action"]:
            assert s["Condition"] == {"StringLike": {"s3:prefix": ["exports/*"]}}
    other_functions = [k for k, v in cold.of_type("AWS::Lambda::Function").items() if k != key]
    assert other_functions
    for p in cold.of_type("AWS::IAM::Policy").values():
        if {"Ref": role} not in p["Properties"]["Roles"]:
            assert "ColdArchiveBucket" not in json.dumps(p["Properties"]["PolicyDocument"])


def test_the_chain_runs_on_the_purge_schedule(cold: Synth) -> None:
    cold.template.has_resource_properties("AWS::Scheduler::Schedule", {
        "ScheduleExpression": "cron(0 3 ? * SUN *)", "ScheduleExpressionTimezone": "Indian/Mauritius"})


def test_export_is_off_unless_asked_and_cdk_nag_and_cfn_lint_pass_with_it(cold: Synth, new_db: Synth) -> None:
    from cdk_nag import AwsSolutionsChecks
    from cfnlint.api import lint
    from cfnlint.config import ManualArgs

    assert not new_db.of_type("AWS::S3::Bucket") and not new_db.of_type("AWS::Glue::Table")
    report = AwsSolutionsChecks().validate_scope(cold.app)
    assert [v.rule_name for v in report.violations] == []
    matches = lint(cold.template_path.read_text(), config=ManualArgs(regions=LINT_REGIONS))
    assert [m.rule.id for m in matches if m.rule.id.startswith("E")] == []


def test_the_export_asset_pins_the_same_pyarrow_as_the_dev_requirements() -> None:
    assert PYARROW in (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert "pyarrow" not in (ROOT / "requirements.txt").read_text()


@pytest.mark.slow
@pytest.mark.network
def test_the_export_asset_holds_pyarrow_for_x86_64_under_lambdas_limit(tmp_path: Path) -> None:
    synth = synthesize({"export_enabled": True}, tmp_path, bundling=True)
    manifest = json.loads((tmp_path / f"{synth.stack.artifact_id}.assets.json").read_text())
    dirs = [tmp_path / f["source"]["path"] for f in manifest["files"].values()
            if (tmp_path / f["source"]["path"] / "handlers").is_dir()]
    (export_dir,) = [d for d in dirs if (d / "pyarrow").is_dir()]
    (archive_dir,) = [d for d in dirs if d != export_dir]
    assert not (archive_dir / "pyarrow").exists()  # the archive function's asset stays as it was
    assert list(export_dir.glob("pyarrow/_parquet.cpython-312-x86_64-linux-gnu.so"))
    assert not list(export_dir.glob("pyarrow/libarrow_flight*")) and not (export_dir / "pyarrow" / "include").exists()
    size = sum(p.stat().st_size for p in export_dir.rglob("*") if p.is_file())
    assert size < 250 * 2**20


def test_erasure_is_a_permission_of_its_own(cold: Synth) -> None:
    (policy,) = [p for p in cold.of_type("AWS::IAM::ManagedPolicy").values()
                 if "Erase" in p["Properties"].get("Description", "")]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "lambda:InvokeFunction"
    assert "function:archiver-export" in json.dumps(statement["Resource"])


# -- with cold storage on, each policy's purge schedule runs the chain ---------------------------------
@pytest.fixture(scope="module")
def cold_two_tables(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The example policy file (the call log purges after 730 days) with cold storage on."""
    return synthesize({"policy_file": "examples/policies.toml", "export_enabled": True},
                      tmp_path_factory.mktemp("cold-two-tables"))


def _arn_of(synth: Synth, path: tuple[str, ...]) -> dict[str, Any]:
    node = synth.stack.node
    for name in path:
        node = node.find_child(name).node
    return {"Fn::GetAtt": [synth.stack.resolve(synth.stack.get_logical_id(node.default_child)), "Arn"]}


def _schedule(synth: Synth, description: str) -> dict[str, Any]:
    (found,) = [s["Properties"] for s in synth.of_type("AWS::Scheduler::Schedule").values()
                if s["Properties"]["Description"].startswith(description)]
    return found


def test_with_cold_storage_on_each_purge_schedule_invokes_the_export_chain(cold_two_tables: Synth) -> None:
    export_arn = _arn_of(cold_two_tables, ("ColdArchive", "Function"))
    purge = _schedule(cold_two_tables, "Weekly purge of nic_cc_call_log")
    assert purge["Target"]["Arn"] == export_arn
    assert json.loads(purge["Target"]["Input"])["action"] == "purge"  # the chain's purge event, naming its table
    assert json.loads(purge["Target"]["Input"])["table"] == "nic_cc_call_log"
    # The nightly runs stay on the archive function; no schedule invokes the archive function's plain purge.
    archive_arn = _arn_of(cold_two_tables, ("Archive", "Function"))
    nightly = _schedule(cold_two_tables, "Nightly archiving run of nic_cc_call_log")
    assert nightly["Target"]["Arn"] == archive_arn
    assert not [s for s in cold_two_tables.of_type("AWS::Scheduler::Schedule").values()
                if s["Properties"]["Target"]["Arn"] == archive_arn
                and json.loads(s["Properties"]["Target"]["Input"]).get("action") == "purge"]


def test_the_scheduler_role_may_invoke_the_export_function_for_the_purge(cold_two_tables: Synth) -> None:
    purge = _schedule(cold_two_tables, "Weekly purge of nic_cc_call_log")
    role = purge["Target"]["RoleArn"]["Fn::GetAtt"][0]
    export_arn = _arn_of(cold_two_tables, ("ColdArchive", "Function"))
    cold_two_tables.template.has_resource_properties("AWS::IAM::Policy", {
        "Roles": [{"Ref": role}],
        "PolicyDocument": {"Statement": Match.array_with([Match.object_like({
            "Action": "lambda:InvokeFunction", "Effect": "Allow",
            "Resource": Match.array_with([export_arn])})])}})


def test_without_cold_storage_the_purge_schedule_stays_on_the_archive_function(two_tables: Synth) -> None:
    purge = _schedule(two_tables, "Weekly purge of nic_cc_call_log")
    assert purge["Target"]["Arn"] == _arn_of(two_tables, ("Archive", "Function"))


def test_the_export_schedule_of_its_own_only_where_no_purge_schedule_runs_the_chain(
        cold: Synth, cold_two_tables: Synth) -> None:
    # The example's first policy (the customers) sets no purge_after_days: its chain keeps the export schedule.
    for synth in (cold, cold_two_tables):
        assert _schedule(synth, "Export, verify, then purge the archive")["Target"]["Arn"] == _arn_of(
            synth, ("ColdArchive", "Function"))


def test_cdk_nag_passes_with_purge_schedules_on_the_export_function(cold_two_tables: Synth) -> None:
    from cdk_nag import AwsSolutionsChecks

    report = AwsSolutionsChecks().validate_scope(cold_two_tables.app)
    assert [v.rule_name for v in report.violations] == []
