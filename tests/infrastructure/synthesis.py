"""Synthesising the stack for tests, and the configurations the tests use."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import App
from aws_cdk.assertions import Template

from infra.stack import ArchiverStack, build_app

# Template tests do not need the real asset: CDK skips bundling for the stacks listed here (none).
SKIP_BUNDLING: dict[str, Any] = {"aws:cdk:bundling-stacks": []}
# A synth refuses to go on without a CA bundle; the tests ship a throwaway one (a certificate, no key)
# instead of Amazon's, which is downloaded by the deployer and never committed.
FIXTURE_CA = "tests/infrastructure/fixtures/test-ca.pem"
EXAMPLE_POLICIES = "examples/policies.toml"

SLACK_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:archiver/slack-XyZ123"
DB_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:archiver/db-AbCdEf"
DB_SECURITY_GROUP = "sg-0123456789abcdef0"
SECRETS_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SUBNETS = ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"]

ROOT = Path(__file__).resolve().parents[2]

# The other deployment shape: an existing database, every option the default leaves off turned on.
EXISTING_DATABASE: dict[str, Any] = {
    "database": "existing",
    "db_vpc_id": "vpc-0123456789abcdef0",
    "db_availability_zones": "eu-west-1a,eu-west-1b",  # as a -c flag would give it
    "db_subnet_ids": ",".join(SUBNETS),
    "db_security_group_id": DB_SECURITY_GROUP,
    "db_secret_arn": DB_SECRET_ARN,
    "db_host": "orders.cluster-abc.eu-west-1.rds.amazonaws.com",
    "db_name": "orders",
    "api_auth": "api_key",
    "alert_email": "ops@example.com",
    "slack_webhook_secret_arn": SLACK_SECRET_ARN,
    "secrets_kms_key_arn": SECRETS_KEY_ARN,
    "schedule_enabled": "false",
    "related_mode": "move",
    "batch_size": "500",
}


# Three policies inline (cdk.json's `policies`): zones and modes differ, the third is off.
INLINE_POLICIES: list[dict[str, Any]] = [
    {"live_table": "nic_cc_customer", "schedule_time": "01:15", "timezone": "Europe/Paris", "mode": "dry_run",
     "retention_days": 45, "retention_by_lob": {"Life": 90}, "related_mode": "move",
     "rules": {"no_active_aod": True}, "batch_size": 500},
    {"live_table": "nic_cc_call_log", "age_column": "called_at", "schedule_time": "02:30",
     "dry_run_until": "2027-01-31", "run_until": "06:00", "purge_after_days": 730},
    {"live_table": "nic_cc_follow_up", "age_column": "due_date", "mode": "off"},
]


@dataclass(frozen=True)
class Synth:
    app: App
    stack: ArchiverStack
    template: Template
    template_path: Path

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template.to_json()["Resources"]

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == resource_type}


def synthesize(context: dict[str, Any], outdir: Path, *, bundling: bool = False, nag: bool = False) -> Synth:
    app, stack = build_app({"db_ca_bundle": FIXTURE_CA, **context, **({} if bundling else SKIP_BUNDLING)},
                           outdir=str(outdir), nag=nag)
    artifact = app.synth().get_stack_artifact(stack.artifact_id)
    return Synth(app=app, stack=stack, template=Template.from_json(artifact.template),
                 template_path=Path(artifact.template_full_path))


def run_app(outdir: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`make synth` (python app.py) with context flags, bundling skipped (cdk-nag runs)."""
    return subprocess.run([sys.executable, "app.py", "-c", "aws:cdk:bundling-stacks=[]", *flags], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "CDK_OUTDIR": str(outdir)})
