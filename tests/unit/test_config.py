"""Configuration is parsed once at the edge, and bad values are refused with a clear message."""

from __future__ import annotations

import json

import pytest

from archiver.config import load_policy, load_settings
from archiver.exceptions import ConfigError


def test_defaults_are_the_seeds_values():
    p = load_policy({})
    assert (p.live_table, p.archive_table, p.log_table) == ("nic_cc_customer", "nic_cc_customer_backup",
                                                            "nic_cc_archive_log")
    assert (p.age_column, p.retention_days, p.batch_size) == ("created_at", 60, 5000)
    assert (p.archived_by, p.archive_reason, p.related_mode) == ("system", "60_day_rule", "skip")
    assert p.retention_by_lob == {} and p.rules.enabled == () and p.purge_after_days is None  # no scheduled purge


def test_environment_overrides_the_policy_file_which_overrides_defaults(tmp_path):
    f = tmp_path / "policy.toml"
    f.write_text('retention_days = 90\nbatch_size = 500\nrelated_mode = "move"\n'
                 '[retention_by_lob]\nLife = 90\nMotor = 60\n[rules]\nno_active_aod = true\n')
    p = load_policy({"ARCHIVER_POLICY_FILE": str(f), "ARCHIVER_BATCH_SIZE": "250"})
    assert (p.retention_days, p.batch_size, p.related_mode) == (90, 250, "move")
    assert p.retention_by_lob == {"Life": 90, "Motor": 60}
    assert p.rules.enabled == ("no_active_aod",)


def test_json_policy_file_under_a_policy_key(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"policy": {"live_table": "customers", "archive_table": "customers_old"}}))
    assert load_policy({}, path=f).live_table == "customers"


def test_env_lists_for_lob_rules_and_related_tables():
    p = load_policy({"ARCHIVER_RETENTION_BY_LOB": "Life=90, Motor=60", "ARCHIVER_RULES": "all",
                     "ARCHIVER_RELATED_TABLES": "notes:customer_id,tags"})
    assert p.retention_by_lob == {"Life": 90, "Motor": 60}
    assert len(p.rules.enabled) == 4
    assert [(r.table, r.column) for r in p.related_tables] == [("notes", "customer_id"), ("tags", "customer_id")]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ARCHIVER_RETENTION_DAYS": "0"}, "retention_days"),
        ({"ARCHIVER_RETENTION_DAYS": "-5"}, "retention_days"),
        ({"ARCHIVER_RETENTION_DAYS": "9999999"}, "retention_days"),
        ({"ARCHIVER_RETENTION_DAYS": "abc"}, "retention_days"),
        ({"ARCHIVER_BATCH_SIZE": "0"}, "batch_size"),
        ({"ARCHIVER_BATCH_SIZE": "-1"}, "batch_size"),
        ({"ARCHIVER_BATCH_SIZE": "1000000000"}, "batch_size"),
        ({"ARCHIVER_RELATED_MODE": "delete"}, "related_mode"),
        ({"ARCHIVER_TIMEZONE": "Mars/Olympus"}, "time zone"),
        ({"ARCHIVER_RETENTION_BY_LOB": "Life=0"}, "Life"),
        ({"ARCHIVER_RETENTION_BY_LOB": "Life"}, "NAME=DAYS"),
        ({"ARCHIVER_RULES": "no_pets"}, "unknown rule"),
        ({"ARCHIVER_ARCHIVE_TABLE": "nic_cc_customer"}, "different"),
        ({"ARCHIVER_AGE_COLUMN": "created_at; --"}, "age_column"),
        ({"ARCHIVER_RELATED_TABLES": "bad-name:id"}, "related"),
    ],
)
def test_bad_policy_values_are_refused_with_a_message_naming_the_field(env, message):
    with pytest.raises(ConfigError, match=message):
        load_policy(env)


def test_unreadable_or_malformed_policy_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy({}, path=tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("retention_days = [")
    with pytest.raises(ConfigError, match="not valid"):
        load_policy({}, path=bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("retention_dayz = 3")
    with pytest.raises(ConfigError, match="retention_dayz"):
        load_policy({}, path=unknown)


@pytest.mark.parametrize(("env", "message"), [({"ARCHIVER_LEASE_SECONDS": "1"}, "lease_seconds"),
                                              ({"ARCHIVER_MAX_HOPS": "0"}, "max_hops"),
                                              ({"ARCHIVER_HOP_SECONDS": "901"}, "hop_seconds"),
                                              ({"ARCHIVER_PREPARED_STATEMENTS": "maybe"}, "prepared_statements")])
def test_bad_settings_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_prepared_statements_are_on_unless_switched_off():
    assert load_settings({}).prepared_statements is True
    assert load_settings({"ARCHIVER_PREPARED_STATEMENTS": "false"}).prepared_statements is False


def test_policy_key_names_the_live_table():
    assert load_policy({"ARCHIVER_SCHEMA": "cc"}).key == "cc.nic_cc_customer"
