"""The export function end to end through its Lambda handler, built from its environment as in AWS:
the purge schedule's event starts export -> verify -> purge against S3 (moto) and the real
PostgreSQL, in hops; an S3 error leaves every row in place and alerts through SNS."""

from __future__ import annotations

import json
from collections.abc import Callable

import boto3
import pytest

from archiver.cold_chain import ChainDeps
from handlers import export as export_function
from tests.helpers import count
from tests.integration.test_archive_function import TickingContext
from tests.integration.test_export import RecordingInvoker, archive_sums, archived

pytest.importorskip("pyarrow")

BUCKET = "cold-archive"
# What infra/schedule.py's weekly purge sends (the scheduler fills in the time).
PURGE_EVENT = {"action": "purge", "table": "nic_cc_customer", "scheduled_time": "2026-12-06T03:00:00+04:00"}


@pytest.fixture
def function_env(env, aws_mock, monkeypatch):
    """The export function's environment (as infra/cold_archive.py sets it), an alert topic whose
    messages land in a queue, and the bucket."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="archiver-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    values = {**env, "ARCHIVER_EXPORT_DEST": f"s3://{BUCKET}/exports", "ARCHIVER_EXPORT_ROWS_PER_FILE": "4",
              "ARCHIVER_PURGE_AFTER_DAYS": "730", "ARCHIVER_ALERT_TOPIC_ARN": topic}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    yield queue


def alerts_in(queue: str) -> list[dict]:
    messages = boto3.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(json.loads(m["Body"])["MessageAttributes"]["alert"]["Value"]) for m in messages]


def deployed() -> tuple[RecordingInvoker, Callable[[], ChainDeps]]:
    """The handler's dependencies as its first invocation builds them (the environment, the cached
    boto3 clients under moto); only the self-invocation is recorded instead of sent."""
    deps = export_function.build_deps()
    deps.invoker = invoker = RecordingInvoker()
    return invoker, lambda: deps


def hop_context() -> TickingContext:
    """A hop's budget: three files' worth of time checks before the export hands over (60 s reserve)."""
    return TickingContext(budget_ms=63_500, tick_ms=1000)


def test_the_purge_event_exports_verifies_then_purges_in_hops(db, policy, settings, function_env):
    before = archived(db, policy, settings)
    invoker, deps = deployed()
    out = export_function.handler(PURGE_EVENT, hop_context(), deps=deps)
    hops = 1
    while out["status"] == "continue":
        assert archive_sums(db) == before  # nothing purged before the export is verified
        out = export_function.handler(invoker.events[-1], hop_context(), deps=deps)
        hops += 1
    assert out["status"] == "succeeded" and out["purged"] == len(before) and hops >= 2
    assert {e["action"] for e in invoker.events} == {"continue"}
    assert [e["hop"] for e in invoker.events] == list(range(2, hops + 1))
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    files = [k for k in keys if k.endswith(".parquet")]
    manifest = json.loads(boto3.client("s3").get_object(
        Bucket=BUCKET, Key=f"exports/{out['export']['manifest']}")["Body"].read())
    assert len(files) == out["export"]["files"] == len(manifest["files"]) and manifest["rows"] == len(before)
    assert all(k.startswith("exports/nic_cc_customer_backup/") for k in keys)
    assert count(db, "nic_cc_customer_backup") == 0 and not alerts_in(function_env)
    run = db.row("SELECT state, trigger, options FROM nic_cc_archive_log WHERE kind = 'export'")
    assert run["state"] == "succeeded" and run["trigger"] == "schedule" and run["options"]["verified"] is True


def test_an_s3_write_error_leaves_every_row_and_alerts(db, policy, settings, function_env, monkeypatch):
    before = archived(db, policy, settings)
    monkeypatch.setenv("ARCHIVER_EXPORT_DEST", "s3://no-such-bucket/exports")
    _, deps = deployed()
    out = export_function.handler(PURGE_EVENT, hop_context(), deps=deps)
    assert out["status"] == "failed" and "NoSuchBucket" in out["export"]["problems"][0]
    assert archive_sums(db) == before
    (alert,) = alerts_in(function_env)
    assert alert["kind"] == "failure" and "nothing purged" in alert["summary"]
    assert "@" not in json.dumps(alert)  # ids and counts, no customer data


def test_a_purge_event_for_another_table_or_a_bad_continuation_is_rejected(db, policy, settings, function_env):
    archived(db, policy, settings, n=2)
    _, deps = deployed()
    for event in ({**PURGE_EVENT, "table": "nic_cc_call_log"}, {"action": "continue", "hop": 2},
                  {"action": "continue", "job_id": "x", "hop": 0}, {"action": "explode"}):
        assert export_function.handler(event, hop_context(), deps=deps)["status"] == "rejected"
    assert count(db, "nic_cc_customer_backup") == 2 and count(db, "nic_cc_archive_log", "kind = 'export'") == 0


def test_the_erasure_key_is_fetched_at_the_first_erasure_not_at_a_cold_start(db, policy, settings, function_env,
                                                                              monkeypatch):
    """moto's Secrets Manager: the secret does not exist yet when the function starts (a fetch there would
    fail); created afterwards, the first erasure reads it, and later ones reuse the key."""
    secrets = boto3.client("secretsmanager")
    monkeypatch.setenv("ARCHIVER_ERASURE_KEY_SECRET_ARN", "archiver-erasure-key")
    deps = export_function.build_deps()  # an export hop never needs it
    secrets.create_secret(Name="archiver-erasure-key", SecretString="k" * 64)
    first = deps.erasure_key()
    assert first is not None and deps.erasure_key() is first
    assert first == export_function.key_loader("archiver-erasure-key", export_function.aws.fetch_secret)()


