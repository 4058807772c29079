"""Several policies in one file: one per live table, one shared run log, validated once, with
errors that name the policy and the key; today's single-policy file keeps working."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from archiver.config import PolicySet, load_policies, load_policy
from archiver.exceptions import ConfigError, UnknownTableError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policies.toml"

TWO = """
[[policies]]
live_table = "nic_cc_customer"

[[policies]]
live_table = "nic_cc_call_log"
age_column = "called_at"
retention_days = 90
schedule_time = "02:30"
mode = "dry_run"
"""


def write(tmp_path: Path, text: str, name: str = "policies.toml") -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


def test_example_file_holds_the_customer_table_and_the_call_log():
    s = load_policies({}, EXAMPLE)
    assert s.tables == ("nic_cc_customer", "nic_cc_call_log")
    customer, calls = s.policies
    assert (customer.age_column, customer.retention_days, customer.schedule_time) == ("created_at", 60, "02:00")
    assert (calls.age_column, calls.retention_days, calls.schedule_time) == ("called_at", 90, "02:30")
    assert calls.dry_run_until == date(2027, 1, 31) and calls.purge_after_days == 730
    assert customer.purge_after_days is None


def test_each_live_table_gets_its_own_archive_and_all_share_one_run_log(tmp_path):
    s = load_policies({}, write(tmp_path, TWO))
    assert [p.archive_table for p in s.policies] == ["nic_cc_customer_backup", "nic_cc_call_log_backup"]
    assert {p.log_table for p in s.policies} == {"nic_cc_archive_log"}
    assert [p.mode for p in s.enabled] == ["archive", "dry_run"]


def test_a_live_table_named_by_environment_gets_its_own_archive_by_default():
    p = load_policy({"ARCHIVER_LIVE_TABLE": "nic_cc_call_log", "ARCHIVER_AGE_COLUMN": "called_at"})
    assert (p.archive_table, p.log_table) == ("nic_cc_call_log_backup", "nic_cc_archive_log")


def test_json_document_and_inline_archiver_policies_read_the_same(tmp_path):
    doc = {"policies": [{"live_table": "a"}, {"live_table": "b", "schedule_time": "03:15"}]}
    from_file = load_policies({}, write(tmp_path, json.dumps(doc), "p.json"))
    inline = load_policies({"ARCHIVER_POLICIES": json.dumps(doc)})
    assert from_file == inline and inline.get("b").schedule_time == "03:15"


def test_a_policy_file_path_wins_over_inline_policies(tmp_path):
    env = {"ARCHIVER_POLICY_FILE": str(write(tmp_path, TWO)), "ARCHIVER_POLICIES": '{"policies": [{}]}'}
    assert load_policies(env).tables == ("nic_cc_customer", "nic_cc_call_log")


def test_round_trip_through_compact_json_keeps_every_policy(tmp_path):
    s = load_policies({}, EXAMPLE)
    assert load_policies({"ARCHIVER_POLICIES": s.to_json()}) == s


def test_single_policy_file_is_one_policy_and_environment_still_overrides_it(tmp_path):
    f = write(tmp_path, '[policy]\nretention_days = 90\nschedule_time = "01:00"\n')
    s = load_policies({"ARCHIVER_RETENTION_DAYS": "30"}, f)
    assert len(s.policies) == 1 and s.get(None).retention_days == 30 and s.get(None).schedule_time == "01:00"


def test_environment_does_not_override_the_policies_of_a_file_of_several(tmp_path):
    s = load_policies({"ARCHIVER_RETENTION_DAYS": "30", "ARCHIVER_LIVE_TABLE": "x"}, write(tmp_path, TWO))
    assert [p.retention_days for p in s.policies] == [60, 90]


def test_get_picks_a_table_by_name_and_refuses_unknown_or_ambiguous_ones(tmp_path):
    s = load_policies({}, write(tmp_path, TWO))
    assert s.get("nic_cc_call_log").age_column == "called_at"
    assert s.get("public.nic_cc_customer").live_table == "nic_cc_customer"
    with pytest.raises(UnknownTableError, match="choose one of: nic_cc_customer, nic_cc_call_log"):
        s.get(None)
    with pytest.raises(UnknownTableError, match="no policy for table 'orders'"):
        s.get("orders")
    with pytest.raises(ConfigError, match="nic_cc_customer, nic_cc_call_log"):
        load_policy({}, write(tmp_path, TWO))


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ('retention_days = 0', r"policies\[1\] \(nic_cc_call_log\): retention_days"),
        ('mode = "sometimes"', r"policies\[1\] \(nic_cc_call_log\): mode"),
        ('schedule_time = "25:00"', r"policies\[1\] \(nic_cc_call_log\): schedule_time: '25:00' is not a 24-hour"),
        ('run_until = "6am"', r"policies\[1\] \(nic_cc_call_log\): run_until"),
        ('dry_run_until = "soon"', r"policies\[1\] \(nic_cc_call_log\): dry_run_until"),
        ('purge_after_days = -1', r"policies\[1\] \(nic_cc_call_log\): purge_after_days"),
        ('retention_dayz = 3', r"policies\[1\] \(nic_cc_call_log\): retention_dayz"),
        ('archive_table = "nic_cc_customer_backup"',
         r"policies\[1\] \(nic_cc_call_log\): archive_table: public.nic_cc_customer_backup is already the "
         r"archive table of policies\[0\] \(nic_cc_customer\)"),
        ('archive_table = "nic_cc_customer"', r"policies\[1\] \(nic_cc_call_log\): archive_table: "
                                              r"public.nic_cc_customer is already the live table"),
        ('log_table = "other_log"', r"policies\[1\] \(nic_cc_call_log\): log_table: every policy shares one run log"),
        ('schema_name = "cc"', r"policies\[1\] \(nic_cc_call_log\): schema_name"),
    ],
)
def test_a_bad_key_is_refused_naming_the_policy_and_the_key(tmp_path, second, message):
    text = f'[[policies]]\nlive_table = "nic_cc_customer"\n\n[[policies]]\nlive_table = "nic_cc_call_log"\n{second}\n'
    with pytest.raises(ConfigError, match=message):
        load_policies({}, write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[policies]]\nlive_table = "a"\n[[policies]]\nlive_table = "a"\n',
         r"policies\[1\] \(a\): live_table: public.a is already the live table of policies\[0\] \(a\)"),
        ('timezone = "UTC"\n[[policies]]\nlive_table = "a"\n', "unexpected top-level key 'timezone'"),
        ('policies = []\n', "non-empty list"),
        ('policies = [1]\n', r"policies\[0\] must be a table"),
    ],
)
def test_a_malformed_document_is_refused_with_a_clear_message(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_policies({}, write(tmp_path, text))


def test_inline_policies_that_are_not_json_are_refused():
    with pytest.raises(ConfigError, match="ARCHIVER_POLICIES is not valid JSON"):
        load_policies({"ARCHIVER_POLICIES": "{policies"})


def test_an_empty_policy_set_is_refused():
    with pytest.raises(ConfigError, match="at least one"):
        PolicySet(())


def test_schedule_times_accept_toml_local_times_and_seconds_of_zero(tmp_path):
    s = load_policies({}, write(tmp_path, '[[policies]]\nschedule_time = 02:15:00\nrun_until = "05:45:00"\n'))
    assert (s.get(None).schedule_time, s.get(None).run_until) == ("02:15", "05:45")


def test_dry_run_until_makes_scheduled_runs_before_that_local_date_dry_runs():
    p = load_policy({"ARCHIVER_DRY_RUN_UNTIL": "2026-12-05", "ARCHIVER_TIMEZONE": "Indian/Mauritius"})
    assert p.scheduled_dry_run(datetime(2026, 12, 4, 19, 59, tzinfo=UTC))  # 23:59 on the 4th, local
    assert not p.scheduled_dry_run(datetime(2026, 12, 4, 20, 0, tzinfo=UTC))  # 00:00 on the 5th, local
    assert load_policy({"ARCHIVER_MODE": "dry_run"}).scheduled_dry_run(datetime(2030, 1, 1, tzinfo=UTC))
    assert not load_policy({}).scheduled_dry_run(datetime(2020, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("start", "until", "local", "outside"),
    [
        ("02:00", "06:00", "05:59", False), ("02:00", "06:00", "06:00", True), ("02:00", "06:00", "23:00", True),
        ("02:00", "06:00", "02:00", False), ("22:00", "06:00", "23:30", False), ("22:00", "06:00", "03:00", False),
        ("22:00", "06:00", "06:30", True), ("22:00", "06:00", "21:59", True),
    ],
)
def test_run_window_runs_from_the_schedule_time_to_run_until_across_midnight(start, until, local, outside):
    p = load_policy({"ARCHIVER_SCHEDULE_TIME": start, "ARCHIVER_RUN_UNTIL": until, "ARCHIVER_TIMEZONE": "UTC"})
    hh, mm = map(int, local.split(":"))
    assert p.outside_run_window(datetime(2026, 12, 4, hh, mm, tzinfo=UTC)) is outside


def test_without_run_until_a_run_is_never_stopped_for_the_night():
    assert not load_policy({}).outside_run_window(datetime(2026, 12, 4, 12, 0, tzinfo=UTC))


minutes = st.integers(min_value=0, max_value=24 * 60 - 1)


@given(start=minutes, until=minutes, at=minutes)
def test_a_run_is_inside_its_window_exactly_from_schedule_time_until_run_until(start, until, at):
    assume(start != until)
    hhmm = "{:02d}:{:02d}".format
    p = load_policy({"ARCHIVER_SCHEDULE_TIME": hhmm(*divmod(start, 60)), "ARCHIVER_RUN_UNTIL": hhmm(*divmod(until, 60)),
                     "ARCHIVER_TIMEZONE": "UTC"})
    when = datetime(2026, 12, 4, tzinfo=UTC) + timedelta(minutes=at)
    inside = (at - start) % (24 * 60) < (until - start) % (24 * 60)  # minutes since the start, within the window
    assert p.outside_run_window(when) is not inside
