"""Configuration: CDK context parsed into one model, every bad value refused at synth with its key named."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from archiver.config import load_settings
from infra.config import ArchiverConfig, ConfigError, config_from_context
from infra.stack import cdk_json_context

from .synthesis import DB_SECRET_ARN, EXISTING_DATABASE

ROOT = Path(__file__).resolve().parents[2]


def test_committed_cdk_json_is_the_documented_default() -> None:
    config = config_from_context(cdk_json_context())
    assert config == ArchiverConfig()
    assert (config.timezone, config.schedule_time, config.database, config.api_auth) == (
        "Indian/Mauritius", "02:00", "new", "iam")


def test_cli_strings_are_converted() -> None:
    config = config_from_context({**EXISTING_DATABASE, "retention_days": "90", "schedule_enabled": "true",
                                  "db_iam_auth": "false"})
    assert config.retention_days == 90 and config.schedule_enabled is True
    assert config.db_availability_zones == ["eu-west-1a", "eu-west-1b"]
    assert config.batch_size == 500


def test_cdk_internal_context_keys_are_ignored() -> None:
    config = config_from_context({"@aws-cdk/core:newStyleStackSynthesis": True, "aws:cdk:bundling-stacks": [],
                                  "availability-zones:account=1:region=x": ["a"],
                                  "acknowledged-issue-numbers": [32775], "cli-telemetry": False})
    assert config == ArchiverConfig()


def test_an_empty_value_unsets_an_optional_key() -> None:
    assert config_from_context({"alert_email": ""}).alert_email is None


def test_policy_environment_only_names_what_is_set() -> None:
    config = config_from_context({"related_mode": "skip", "live_table": "orders"})
    assert config.policy_environment() == {"ARCHIVER_TIMEZONE": "Indian/Mauritius", "ARCHIVER_RETENTION_DAYS": "60",
                                           "ARCHIVER_RELATED_MODE": "skip", "ARCHIVER_LIVE_TABLE": "orders"}
    assert config.settings_environment() == {"ARCHIVER_MAX_HOPS": "200"}


def test_batch_pacing_from_context_reaches_the_functions() -> None:
    env = config_from_context({"target_batch_ms": "0", "batch_pause_ms": "50",
                               "max_replica_lag": "2.5"}).settings_environment()
    assert env["ARCHIVER_TARGET_BATCH_MS"] == "0" and env["ARCHIVER_BATCH_PAUSE_MS"] == "50"
    assert load_settings(env).max_replica_lag == 2.5  # the core reads what the stack hands it


@pytest.mark.parametrize(("context", "key"), [
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"batch_pause_ms": "-5"}, "batch_pause_ms"),
    ({"max_replica_lag": "-1"}, "max_replica_lag"),
    ({"target_batch_ms": "a lot"}, "target_batch_ms"),
    ({"timezone": "../etc/passwd"}, "timezone"),
    ({"schedule_time": "2am"}, "schedule_time"),
    ({"schedule_time": "24:00"}, "schedule_time"),
    ({"schedule_enabled": "maybe"}, "schedule_enabled"),
    ({"retention_days": "-1"}, "retention_days"),
    ({"retention_days": "0"}, "retention_days"),
    ({"retention_days": "sixty"}, "retention_days"),
    ({"batch_size": "0"}, "batch_size"),
    ({"batch_size": "1000000000"}, "batch_size"),
    ({"related_mode": "all"}, "related_mode"),
    ({"live_table": "customers; drop table x"}, "live_table"),
    ({"archive_timeout_minutes": "16"}, "archive_timeout_minutes"),
    ({"max_hops": "0"}, "max_hops"),
    ({"api_auth": "cognito"}, "api_auth"),
    ({"alert_email": "ops at example"}, "alert_email"),
    ({"slack_webhook_secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:slack"},
     "slack_webhook_secret_arn"),
    ({"slack_webhook_secret_arn": "https://hooks.slack.com/" + "services/T0/B0/x"},  # a URL, not an ARN
     "slack_webhook_secret_arn"),
    ({"log_retention_days": "10"}, "log_retention_days"),
    ({"archive_function_name": "archiver archive"}, "archive_function_name"),
    ({"db_min_capacity": "8", "db_max_capacity": "4"}, "db_min_capacity"),
    ({"db_host": "db.example.com"}, "db_host only apply to database=existing"),
    ({"create_vpc_endpoints": "false"}, "create_vpc_endpoints"),
    ({"db_port": "6543"}, "db_port only applies to database=existing"),
    ({"database": "mysql"}, "database"),
    ({"database": "existing"}, "database=existing needs db_vpc_id"),
    ({**EXISTING_DATABASE, "db_secret_arn": ""}, "db_secret_arn (or db_iam_auth=true)"),
    ({**EXISTING_DATABASE, "db_secret_arn": "", "db_iam_auth": "true"}, "db_user, db_resource_id"),
    ({**EXISTING_DATABASE, "db_iam_auth": "true", "db_user": "archiver", "db_resource_id": "cluster-ABC"},
     "not both"),
    ({**EXISTING_DATABASE, "db_subnet_ids": "subnet-0aaaaaaaaaaaaaaa1"}, "db_subnet_ids"),
    ({**EXISTING_DATABASE, "db_subnet_ids": "subnet-1,oops"}, "db_subnet_ids"),
    ({**EXISTING_DATABASE, "db_availability_zones": "eu-west-1a,moon"}, "db_availability_zones"),
    ({**EXISTING_DATABASE, "db_security_group_id": "default"}, "db_security_group_id"),
    ({"timzone": "Europe/Paris"}, "unknown key(s) timzone"),
])
def test_bad_values_are_refused_naming_the_key(context: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        config_from_context(context)


def test_existing_database_with_iam_auth_needs_no_secret() -> None:
    config = config_from_context({**EXISTING_DATABASE, "db_secret_arn": "", "db_iam_auth": "true",
                                  "db_user": "archiver", "db_resource_id": "cluster-ABCDEFGHIJKL"})
    assert config.db_secret_arn is None and config.db_iam_auth


def test_synth_stops_with_the_message_and_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "app.py", "-c", "timezone=Mars/Olympus_Mons", "-c", "retention_days=-5"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "CDK_OUTDIR": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "timezone: 'Mars/Olympus_Mons' is not an IANA time zone" in result.stderr
    assert "retention_days: Input should be greater than or equal to 1 (got '-5')" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_key_is_documented() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    missing = [name for name in ArchiverConfig.model_fields if f"`{name}`" not in guide]
    assert missing == []


def test_no_account_ids_or_addresses_are_committed() -> None:
    context = cdk_json_context()
    assert not any(re.search(r"\d{12}|@|hooks\.slack\.com", str(v)) for k, v in context.items()
                   if not k.startswith("@")), "cdk.json must not hold accounts, e-mails or webhooks"
    assert DB_SECRET_ARN not in (ROOT / "cdk.json").read_text()
