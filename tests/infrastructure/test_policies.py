"""Several tables in one deployment: the policy document is validated at synth and reaches the functions."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from archiver import config as core_config
from archiver.exceptions import ConfigError as CoreConfigError
from infra.config import ConfigError, config_from_context
from infra.policies import MAX_POLICIES_BYTES, POLICIES_ENV, deployment, from_document

from .synthesis import EXAMPLE_POLICIES, FIXTURE_CA, INLINE_POLICIES, Synth, run_app

ROOT = Path(__file__).resolve().parents[2]
DATABASE_HANDLERS = ("handlers.archive.handler", "handlers.status.handler", "handlers.migrate.handler")


def variables(synth: Synth) -> dict[str, dict[str, Any]]:
    return {f["Properties"]["Handler"]: f["Properties"]["Environment"]["Variables"]
            for f in synth.of_type("AWS::Lambda::Function").values()
            if f["Properties"]["Handler"] in DATABASE_HANDLERS}


def test_every_database_function_gets_the_example_file_as_compact_json(two_tables: Synth) -> None:
    document = tomllib.loads((ROOT / EXAMPLE_POLICIES).read_text())
    document["policies"][1]["dry_run_until"] = document["policies"][1]["dry_run_until"].isoformat()
    found = variables(two_tables)
    assert set(found) == set(DATABASE_HANDLERS)
    for env in found.values():
        assert json.loads(env[POLICIES_ENV]) == document
        assert " " not in env[POLICIES_ENV]  # compact: separators without spaces
        # One document, not two sources: the single-policy variables are not set beside it.
        assert not {"ARCHIVER_TIMEZONE", "ARCHIVER_RETENTION_DAYS", "ARCHIVER_LIVE_TABLE"} & set(env)
        assert env["ARCHIVER_MAX_HOPS"] == "200"  # run settings stay shared variables


def test_every_policy_setting_reaches_the_functions_as_written(inline_policies: Synth) -> None:
    for env in variables(inline_policies).values():
        assert json.loads(env[POLICIES_ENV]) == {"policies": INLINE_POLICIES}


def test_single_table_deployment_keeps_todays_variables(new_db: Synth) -> None:
    for env in variables(new_db).values():
        assert POLICIES_ENV not in env
        assert (env["ARCHIVER_TIMEZONE"], env["ARCHIVER_RETENTION_DAYS"]) == ("Indian/Mauritius", "60")


def _policies(*entries: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"live_table": "nic_cc_customer"}, *entries]


@pytest.mark.parametrize(("entry", "message"), [
    ({"schedule_time": "2am"}, "schedule_time: '2am' is not a 24-hour HH:MM time"),
    ({"schedule_time": "24:00"}, "schedule_time"),
    ({"run_until": "6"}, "run_until: '6' is not a 24-hour HH:MM time"),
    ({"mode": "sometimes"}, "mode"),
    ({"dry_run_until": "next week"}, "dry_run_until"),
    ({"purge_after_days": 0}, "purge_after_days"),
    ({"purge_after_days": "lots"}, "purge_after_days"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone: 'Mars/Olympus_Mons' is not an IANA time zone"),
    ({"retention_days": -1}, "retention_days"),
    ({"batch_size": 0}, "batch_size"),
    ({"related_mode": "all"}, "related_mode"),
    ({"age_column": "called at"}, "age_column"),
    ({"retention": 30}, "retention"),  # a typo of retention_days is refused, not ignored
])
def test_a_bad_key_is_refused_naming_the_policy_and_the_key(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape("policies[1] (nic_cc_call_log)")) as caught:
        from_document({"policies": _policies({"live_table": "nic_cc_call_log", **entry})}, "policies")
    assert message in str(caught.value)


@pytest.mark.parametrize(("document", "message"), [
    ({"policies": []}, "expected a non-empty list of policies"),
    ({"policies": ["nic_cc_customer"]}, "policies[0] must be a table/object"),
    ({"policies": _policies({"live_table": "nic_cc_customer", "retention_days": 90})},
     "one policy per live table; nic_cc_customer has more than one"),
    ({"policies": [{"live_table": "customers; drop table x"}]}, "policies[0] (customers; drop table x)"),
])
def test_a_bad_document_is_refused_clearly(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_document(document, "policies")


def test_a_single_policy_file_is_one_policy() -> None:
    policies, text = from_document({"policy": {"live_table": "orders", "schedule_time": "03:00"}}, "policy_file")
    assert [(p.live_table, p.schedule_time, p.table) for p in policies] == [("orders", "03:00", "orders")]
    assert json.loads(text) == {"policies": [{"live_table": "orders", "schedule_time": "03:00"}]}


def test_a_document_too_large_for_the_environment_is_refused() -> None:
    many = [{"live_table": f"table_{i:03}", "age_column": "created_at_" + "x" * 40} for i in range(60)]
    with pytest.raises(ConfigError, match=f"more than the {MAX_POLICIES_BYTES}"):
        from_document({"policies": many}, "policies")


def test_the_cores_own_validation_is_used_once_it_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def load_policies(env: dict[str, str], path: Path | None = None) -> None:
        seen.append(json.loads(env[POLICIES_ENV]))
        raise CoreConfigError("policies[0] (nic_cc_customer): rules.window_days: too long")

    monkeypatch.setattr(core_config, "load_policies", load_policies, raising=False)
    with pytest.raises(ConfigError, match=re.escape("policies: policies[0] (nic_cc_customer): rules.window_days")):
        from_document({"policies": _policies()}, "policies")
    assert seen == [{"policies": [{"live_table": "nic_cc_customer"}]}]


def test_policy_file_and_inline_policies_are_not_both_given() -> None:
    with pytest.raises(ConfigError, match="give policy_file or policies, not both"):
        config_from_context({"policy_file": EXAMPLE_POLICIES, "policies": INLINE_POLICIES})


def test_single_policy_keys_beside_a_document_are_refused() -> None:
    config = config_from_context({"policy_file": EXAMPLE_POLICIES, "retention_days": "90", "schedule_time": "03:00",
                                  "timezone": "Indian/Mauritius"})  # cdk.json's defaults stay harmless
    with pytest.raises(ConfigError, match=re.escape("retention_days, schedule_time describe the single policy")):
        deployment(config, ROOT)


@pytest.mark.parametrize(("text", "suffix", "message"), [
    ("[[policies]]\nlive_table = ", ".toml", "is not valid TOML"),
    ('{"policies": [', ".json", "is not valid JSON"),
])
def test_an_unreadable_policy_file_is_named(tmp_path: Path, text: str, suffix: str, message: str) -> None:
    path = tmp_path / f"policies{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        deployment(config_from_context({"policy_file": str(path)}), ROOT)
    with pytest.raises(ConfigError, match="cannot read"):
        deployment(config_from_context({"policy_file": str(tmp_path / "missing.toml")}), ROOT)


def test_make_synth_with_the_example_policy_file(tmp_path: Path) -> None:
    result = run_app(tmp_path, "-c", f"policy_file={EXAMPLE_POLICIES}", "-c", f"db_ca_bundle={FIXTURE_CA}")
    assert result.returncode == 0, result.stderr[-2000:]
    template = json.loads((tmp_path / "PgArchiver.template.json").read_text())
    described = sorted(r["Properties"]["Description"] for r in template["Resources"].values()
                       if r["Type"] == "AWS::Scheduler::Schedule")
    assert [d for d in described if d.startswith("Nightly")] == [
        "Nightly archiving run of nic_cc_call_log", "Nightly archiving run of nic_cc_customer"]


def test_synth_stops_on_a_bad_policy_with_one_clear_line(tmp_path: Path) -> None:
    bad = json.dumps([{"live_table": "nic_cc_customer", "mode": "sometimes"}])
    result = run_app(tmp_path, "-c", f"policies={bad}", "-c", f"db_ca_bundle={FIXTURE_CA}")
    assert result.returncode == 2
    assert "policies[0] (nic_cc_customer): mode:" in result.stderr
    assert "Traceback" not in result.stderr
