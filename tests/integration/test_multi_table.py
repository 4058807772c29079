"""Two policies on two tables with one shared run log, on a real PostgreSQL: runs, restore, purge
and stats of one table never touch the other; the schedule's dry-run phase and its run_until
window honoured with an injected clock; the weekly report's figures equal the run log's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from archiver import alerts, reports, slack
from archiver.config import PolicySet, load_policies, load_policy, load_settings
from archiver.engine import Archiver, Unlimited
from archiver.events import parse_archive_event
from archiver.jobs import JobStore
from archiver.restore import Restorer, purge
from archiver.states import RunState
from archiver.worker import Deps, LocalInvoker, process
from handlers import status
from local import cli
from tests.api_client import request
from tests.helpers import add_customers, count, setup

CUSTOMERS, CALLS = "nic_cc_customer", "nic_cc_call_log"
POLICIES = """
[[policies]]
live_table = "nic_cc_customer"
batch_size = 4

[[policies]]
live_table = "nic_cc_call_log"
age_column = "called_at"
retention_days = 90
schedule_time = "02:00"
timezone = "UTC"
batch_size = 2
purge_after_days = 730
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    f = tmp_path / "policies.toml"
    f.write_text(POLICIES)
    return f


@pytest.fixture
def policies(env, policy_file) -> PolicySet:
    return load_policies(env, policy_file)


@pytest.fixture
def two_tables(db, policy, policies):
    """12 old and 3 young customers without calls; one young customer with 7 old and 2 young calls."""
    setup(db, policy)
    add_customers(db, policy, [70 + i for i in range(12)] + [5, 6, 7])
    caller = add_customers(db, policy, [3])[0]
    for days in [100 + i for i in range(7)] + [10, 20]:
        db.run("INSERT INTO nic_cc_call_log (customer_id, called_at, outcome) VALUES (:c, now() - make_interval("
               "days => :d), 'answered')", c=caller, d=days)
    for p in policies.policies:
        from archiver import migration
        migration.migrate(db, p)
    return db


def rows(db, table: str) -> dict[int, str]:
    """A table's rows by id, with a checksum of the whole row (its times written in UTC, whichever
    policy's time zone the session last took)."""
    db.use_timezone("UTC")
    return {r[0]: r[1] for r in db.run(f"SELECT id, md5(CAST(t AS text)) FROM {table} t")}


def both(db) -> dict[str, dict[int, str]]:
    return {t: rows(db, t) for t in (CUSTOMERS, f"{CUSTOMERS}_backup", CALLS, f"{CALLS}_backup")}


def other_side(state: dict[str, dict[int, str]], table: str) -> dict[str, dict[int, str]]:
    return {k: v for k, v in state.items() if not k.startswith(table)}


def run(db, policy, settings, **kw):
    archiver = Archiver(db, policy, settings)
    job = archiver.start(**kw)
    return archiver.run_hop(job.id, owner="w", hop=1).job


def test_two_tables_with_default_names_each_archive_into_their_own_table_and_restore_since_keeps_to_its_own(
        env, db, policy, settings, two_tables):
    """Issue 19: with only ARCHIVER_LIVE_TABLE set, the call log archived into nic_cc_customer_backup,
    and `restore --since` for the customers moved the call log's rows into the customer table."""
    calls = load_policy({**env, "ARCHIVER_LIVE_TABLE": CALLS, "ARCHIVER_AGE_COLUMN": "called_at",
                         "ARCHIVER_RETENTION_DAYS": "90"})
    assert (calls.archive_table, calls.log_table) == (f"{CALLS}_backup", policy.log_table)
    from archiver import migration
    migration.migrate(db, calls)
    before = both(db)
    since = db.scalar("SELECT now()")
    assert run(db, policy, settings).records_archived == 12
    assert run(db, calls, settings).records_archived == 7
    assert count(db, f"{CUSTOMERS}_backup") == 12 and count(db, f"{CALLS}_backup") == 7
    calls_after_run = {t: rows(db, t) for t in (CALLS, f"{CALLS}_backup")}
    _, result = Restorer(db, policy).restore(since=since)
    assert result.restored == 12
    assert {t: rows(db, t) for t in (CALLS, f"{CALLS}_backup")} == calls_after_run
    assert rows(db, CUSTOMERS) == before[CUSTOMERS] and rows(db, f"{CUSTOMERS}_backup") == {}


def test_restore_since_leaves_rows_that_another_tables_runs_wrote_into_the_archive(db, policy, policies, settings,
                                                                                   two_tables):
    """Belt and braces for an archive shared by mistake: restore moves only its own runs' rows."""
    customers = policies.get(CUSTOMERS)
    since = db.scalar("SELECT now()")
    run(db, customers, settings)
    foreign = JobStore(db, policies.get(CALLS)).create(batch_size=1, trigger="manual")
    db.run("UPDATE nic_cc_archive_log SET state = 'succeeded' WHERE job_id = CAST(:j AS uuid)", j=foreign.id)
    db.run("INSERT INTO nic_cc_customer_backup (id, name, status, created_at, updated_at, archive_job_id)"
           " VALUES (-1, 'not a customer', 'open', now(), now(), CAST(:j AS uuid))", j=foreign.id)
    _, result = Restorer(db, customers).restore(since=since)
    assert result.restored == 12
    assert count(db, f"{CUSTOMERS}_backup") == 1 and count(db, CUSTOMERS, "id = -1") == 0


def test_runs_restore_purge_and_stats_of_one_table_never_touch_the_other(db, policies, settings, two_tables):
    customers, calls = policies.get(CUSTOMERS), policies.get(CALLS)
    start = both(db)
    since = db.scalar("SELECT now()")

    job = run(db, calls, settings)
    assert (job.state, job.records_archived, job.table) == ("succeeded", 7, CALLS)
    assert other_side(both(db), CALLS) == other_side(start, CALLS)

    mid = both(db)
    assert run(db, customers, settings).records_archived == 12
    assert other_side(both(db), CUSTOMERS) == other_side(mid, CUSTOMERS)

    mid = both(db)
    db.run("UPDATE nic_cc_customer_backup SET archived_at = now() - interval '800 days'")
    db.run("UPDATE nic_cc_call_log_backup SET archived_at = now() - interval '800 days'")
    aged = both(db)
    purged = purge(db, calls, 730, without_export=True)
    assert purged.records_archived == 7 and count(db, f"{CALLS}_backup") == 0
    assert other_side(both(db), CALLS) == other_side(aged, CALLS)

    mid = both(db)
    _, result = Restorer(db, customers).restore(since=since - timedelta(days=1000))
    assert result.restored == 12
    assert other_side(both(db), CUSTOMERS) == other_side(mid, CUSTOMERS)

    # The run log is shared; each table's runs, stats and active run are its own.
    assert {j.table for j in JobStore(db, customers).recent(50)} == {CUSTOMERS}
    assert {j.kind for j in JobStore(db, calls).recent(50)} == {"archive", "purge"}
    assert len(JobStore(db, customers).recent(50, keys=[customers.key, calls.key])) == 4
    from archiver import status as core
    calls_stats, customer_stats = core.stats(db, calls, 7), core.stats(db, customers, 7)
    assert (calls_stats["totals"]["archived"], customer_stats["totals"]["archived"]) == (7, 12)
    assert calls_stats["tables"]["archive"]["rows"] == 0 and customer_stats["tables"]["live"]["rows"] == 16


def test_one_active_run_per_table_lets_both_tables_run_at_once(db, policies, settings, two_tables):
    a = Archiver(db, policies.get(CUSTOMERS), settings).start()
    b = Archiver(db, policies.get(CALLS), settings).start()
    assert a.active and b.active and a.table == CUSTOMERS and b.table == CALLS


# -- the archive function: schedule events per table ----------------------------------------------
class Clock:
    """An injected clock: a fixed time, or one that moves a minute each time it is read."""

    def __init__(self, start: datetime, step: timedelta = timedelta(0)) -> None:
        self.now, self.step = start, step

    def __call__(self) -> datetime:
        now = self.now
        self.now += self.step
        return now


def deps_for(db, policies, settings, clock) -> Deps:
    return Deps(db=db, policy=policies.policies[0], settings=settings, invoker=LocalInvoker(),
                alerts=alerts.RecordingSink(), policies=policies, clock=clock)


def schedule(table: str | None, when: str | None = None, **extra) -> dict:
    event = {"source": "archiver.schedule", "trigger": "schedule", **extra}
    if table:
        event["table"] = table
    if when:
        event["scheduled_time"] = when
    return parse_archive_event(event)


def with_keys(policies: PolicySet, table: str, **changes) -> PolicySet:
    return PolicySet(tuple(p.model_copy(update=changes) if p.live_table == table else p for p in policies.policies))


def test_schedule_event_runs_the_table_it_names(db, policies, settings, two_tables):
    deps = deps_for(db, policies, settings, Clock(datetime(2026, 12, 4, 2, 30, tzinfo=UTC)))
    out = process(schedule(CALLS, "2026-12-04T02:30:00Z"), deps, Unlimited(), "self")
    assert out["status"] == "done" and out["job"]["table"] == CALLS and out["job"]["archived"] == 7
    assert count(db, f"{CUSTOMERS}_backup") == 0
    rejected = process(schedule("nic_cc_orders"), deps, Unlimited(), "self")
    assert rejected["status"] == "rejected" and "nic_cc_customer, nic_cc_call_log" in rejected["error"]


def test_dry_run_until_makes_scheduled_runs_dry_until_that_date_by_the_injected_clock(db, policies, settings,
                                                                                   two_tables):
    trial = with_keys(policies, CALLS, dry_run_until=datetime(2026, 12, 6).date())
    clock = Clock(datetime(2026, 12, 5, 23, 59, tzinfo=UTC))  # the 5th in UTC, the policy's zone
    deps = deps_for(db, trial, settings, clock)
    before = both(db)
    out = process(schedule(CALLS), deps, Unlimited(), "self")
    assert out["job"]["dry_run"] is True and out["job"]["eligible"] == 7 and both(db) == before
    clock.now = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
    out = process(schedule(CALLS), deps, Unlimited(), "self")
    assert out["job"]["dry_run"] is False and out["job"]["archived"] == 7


def test_mode_dry_run_and_the_events_dry_run_flag_count_only_and_mode_off_runs_nothing(db, policies, settings,
                                                                                      two_tables):
    before = both(db)
    clock = Clock(datetime(2026, 12, 5, 2, 0, tzinfo=UTC), timedelta(minutes=1))
    deps = deps_for(db, with_keys(policies, CALLS, mode="dry_run"), settings, clock)
    assert process(schedule(CALLS), deps, Unlimited(), "self")["job"]["dry_run"] is True
    deps = deps_for(db, policies, settings, clock)
    assert process(schedule(CUSTOMERS, dry_run=True), deps, Unlimited(), "self")["job"]["dry_run"] is True
    deps = deps_for(db, with_keys(policies, CUSTOMERS, mode="off"), settings, clock)
    assert process(schedule(CUSTOMERS), deps, Unlimited(), "self") == {"status": "off", "table": CUSTOMERS}
    assert both(db) == before and count(db, "nic_cc_archive_log") == 2


def test_run_until_stops_between_batches_and_the_next_nights_trigger_resumes_with_the_same_cutoff(
        env, db, policies, two_tables):
    settings = load_settings({**env, "ARCHIVER_TARGET_BATCH_MS": "0"})  # batches of exactly 2 rows
    night = with_keys(policies, CALLS, run_until="06:00")
    before = both(db)
    # Read once before each batch, a minute apart: 05:57, 05:58, 05:59 run a batch; 06:00 stops it.
    deps = deps_for(db, night, settings, Clock(datetime(2026, 12, 4, 5, 57, tzinfo=UTC), timedelta(minutes=1)))
    out = process(schedule(CALLS, "2026-12-04T02:00:00Z"), deps, Unlimited(), "self")
    job = JobStore(db, night.get(CALLS)).get(out["job"]["job_id"])
    assert out["status"] == "paused" and "06:00" in out["reason"]
    assert (job.state, job.batches, job.records_archived, job.lease_owner) == ("running", 3, 6, None)
    assert "stopped for the night" in job.message
    assert count(db, CALLS) + count(db, f"{CALLS}_backup") == len(before[CALLS])
    deps = deps_for(db, night, settings, Clock(datetime(2026, 12, 5, 2, 0, tzinfo=UTC)))
    out = process(schedule(CALLS, "2026-12-05T02:00:00Z"), deps, Unlimited(), "self")
    done = JobStore(db, night.get(CALLS)).get(job.id)
    assert out["status"] == "done" and done.state == "succeeded" and done.records_archived == 7
    assert done.cutoff == job.cutoff and deps.alerts.alerts == []  # a planned pause is not "stuck"
    assert sorted(rows(db, CALLS) | rows(db, f"{CALLS}_backup")) == sorted(before[CALLS])


def test_a_scheduled_run_picked_up_after_run_until_pauses_at_once_and_a_manual_run_does_not(env, db, policies,
                                                                                              two_tables):
    settings = load_settings({**env, "ARCHIVER_TARGET_BATCH_MS": "0"})
    night = with_keys(policies, CALLS, run_until="06:00")
    deps = deps_for(db, night, settings, Clock(datetime(2026, 12, 4, 6, 30, tzinfo=UTC)))
    job = Archiver(db, night.get(CALLS), settings).start(trigger="schedule")
    out = process(parse_archive_event({"action": "start", "job_id": job.id}), deps, Unlimited(), "s")
    assert out["status"] == "paused" and out["job"]["archived"] == 0
    manual = Archiver(db, night.get(CUSTOMERS), settings).start()
    out = process(parse_archive_event({"action": "start", "job_id": manual.id}), deps, Unlimited(), "s")
    assert out["status"] == "done" and out["job"]["archived"] == 12  # the table without run_until


def test_purge_event_purges_only_its_tables_archive_and_refuses_a_table_without_purge_after_days(
        db, policies, settings, two_tables):
    customers, calls = policies.get(CUSTOMERS), policies.get(CALLS)
    run(db, customers, settings)
    run(db, calls, settings)
    db.run("UPDATE nic_cc_customer_backup SET archived_at = now() - interval '800 days'")
    db.run("UPDATE nic_cc_call_log_backup SET archived_at = now() - interval '800 days' WHERE id % 2 = 0")
    deps = deps_for(db, policies, settings, Clock(datetime(2026, 12, 6, 3, 0, tzinfo=UTC)))
    out = process(parse_archive_event({"action": "purge", "table": CALLS}), deps, Unlimited(), "self")
    assert out["status"] == "done" and out["job"]["kind"] == "purge" and out["job"]["trigger"] == "schedule"
    assert count(db, f"{CALLS}_backup") == 7  # no verified export holds them: nothing is deleted
    deps = deps_for(db, with_keys(policies, CALLS, purge_without_export=True), settings,
                    Clock(datetime(2026, 12, 6, 3, 0, tzinfo=UTC)))
    out = process(parse_archive_event({"action": "purge", "table": CALLS}), deps, Unlimited(), "self")
    assert out["status"] == "done" and out["job"]["kind"] == "purge"
    assert count(db, f"{CALLS}_backup") == 4 and count(db, f"{CUSTOMERS}_backup") == 12
    refused = process(parse_archive_event({"action": "purge", "table": CUSTOMERS}), deps, Unlimited(), "self")
    assert refused["status"] == "rejected" and "purge_after_days" in refused["error"]
    assert count(db, f"{CUSTOMERS}_backup") == 12


# -- the weekly report -------------------------------------------------------------------------------
def test_weekly_report_figures_equal_the_run_logs_and_carry_no_customer_data(db, policies, settings, two_tables):
    customers, calls = policies.get(CUSTOMERS), policies.get(CALLS)
    run(db, customers, settings)
    run(db, calls, settings)
    failed = Archiver(db, calls, settings).start()
    JobStore(db, calls).finish(failed.id, None, RunState.FAILED, error="boom")
    run(db, customers, settings, dry_run=True)  # dry runs are not archive figures
    # Spread the runs over last week (Monday 2026-11-23 .. Sunday 2026-11-29), and one the week before.
    days = {0: "2026-11-24 02:10+00", 1: "2026-11-27 02:40+00", 2: "2026-11-27 03:00+00", 3: "2026-11-20 02:00+00"}
    ids = [r[0] for r in db.run("SELECT id FROM nic_cc_archive_log ORDER BY id")]
    for i, when in days.items():
        db.run("UPDATE nic_cc_archive_log SET run_date = CAST(:w AS timestamptz) WHERE id = :i", w=when, i=ids[i])
    db.run("UPDATE nic_cc_archive_log SET execution_time_ms = 1000 * id WHERE execution_time_ms IS NOT NULL")

    deps = deps_for(db, policies, settings, Clock(datetime(2026, 12, 4, tzinfo=UTC)))
    out = process(parse_archive_event({"action": "report", "period": "weekly",
                                       "scheduled_time": "2026-11-30T08:00:00+04:00"}), deps, Unlimited(), "self")
    report = out["report"]
    assert (report["from"], report["to"], report["days"]) == ("2026-11-23", "2026-11-29", 7)
    for t in report["tables"]:
        p = policies.get(t["table"])
        logged = {str(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in db.run(
            "SELECT CAST(run_date AT TIME ZONE :tz AS date), sum(records_archived), count(*) FILTER (WHERE state ="
            " 'failed'), round(avg(execution_time_ms)) FROM nic_cc_archive_log WHERE policy_key = :p AND kind ="
            " 'archive' AND NOT dry_run AND run_date >= CAST('2026-11-23' AS timestamp) AT TIME ZONE :tz AND"
            " run_date < CAST('2026-11-30' AS timestamp) AT TIME ZONE :tz GROUP BY 1", tz=p.timezone, p=p.key)}
        reported = {d["day"]: (d["archived"], d["failures"], d["avg_duration_ms"]) for d in t["per_day"] if d["runs"]}
        assert reported == logged
        assert t["archived"] == sum(v[0] for v in logged.values())
        assert t["live"]["rows"] == count(db, p.live_table) and t["archive"]["rows"] == count(db, p.archive_table)
    by_table = {t["table"]: t for t in report["tables"]}
    assert (by_table[CUSTOMERS]["archived"], by_table[CALLS]["archived"], by_table[CALLS]["failures"]) == (12, 7, 1)

    [alert] = deps.alerts.alerts
    assert alert.kind == "report" and "2026-11-23..2026-11-29" in alert.subject and "19 rows archived" in alert.summary
    text = alert.body + json.dumps(slack.format_message(alert))
    assert CUSTOMERS in text and CALLS in text
    assert "Customer X" not in text and "example.mu" not in text and "answered" not in text


def test_monthly_report_on_the_first_covers_the_whole_previous_month():
    assert reports.period_bounds("monthly", datetime(2026, 12, 1).date()) == (
        datetime(2026, 11, 1).date(), datetime(2026, 11, 30).date())
    assert reports.period_bounds("weekly", datetime(2026, 11, 30).date()) == (
        datetime(2026, 11, 23).date(), datetime(2026, 11, 29).date())


# -- the status API ------------------------------------------------------------------------------------
class RecordingInvoker:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def invoke_async(self, function: str, payload: dict) -> None:
        self.calls.append((function, payload))


@pytest.fixture
def api(db, policies, settings, two_tables):
    return status.StatusDeps(db=db, policy=policies.policies[0], settings=settings, invoker=RecordingInvoker(),
                             function_name="archiver-archive", policies=policies)


def test_api_lists_the_tables_and_scopes_runs_and_stats_by_table(api, db, policies, settings):
    tables = request(api, "GET", "/tables").body["tables"]
    assert [(t["table"], t["archive_table"], t["schedule_time"], t["mode"]) for t in tables] == [
        (CUSTOMERS, f"{CUSTOMERS}_backup", "02:00", "archive"), (CALLS, f"{CALLS}_backup", "02:00", "archive")]
    run(db, policies.get(CALLS), settings)
    started = request(api, "POST", "/runs", body={"table": CUSTOMERS, "dry_run": True})
    assert started.status == 202
    assert api.invoker.calls[-1][1]["table"] == CUSTOMERS
    assert {r["table"] for r in request(api, "GET", "/runs").body["runs"]} == {CUSTOMERS, CALLS}
    assert [r["table"] for r in request(api, "GET", "/runs", "table=nic_cc_call_log").body["runs"]] == [CALLS]
    one = request(api, "GET", f"/runs/{started.body['job_id']}").body
    assert one["table"] == CUSTOMERS and one["dry_run"] is True
    stats = request(api, "GET", "/stats", f"table={CALLS}&days=3").body
    assert stats["table"] == CALLS and stats["totals"]["archived"] == 7
    assert request(api, "POST", f"/runs/{started.body['job_id']}/cancel").status == 200


def test_api_refuses_a_missing_or_unknown_table_where_several_exist_with_422_naming_the_choices(api):
    for answer in (request(api, "POST", "/runs", body={}), request(api, "POST", "/runs", body={"table": "orders"}),
                   request(api, "GET", "/stats"), request(api, "GET", "/runs", "table=orders")):
        assert answer.status == 422, answer.body
        assert "nic_cc_customer, nic_cc_call_log" in answer.body["error"]


# -- the command line ----------------------------------------------------------------------------------
def main(monkeypatch, capsys, env, *args):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = cli.main(list(args))
    return code, capsys.readouterr()


def test_cli_run_over_two_tables_prints_one_object_per_table_under_json(monkeypatch, capsys, env, policy_file,
                                                                       two_tables, db):
    code, out = main(monkeypatch, capsys, env, "--policy", str(policy_file), "run", "--json")
    assert code == 0, out.err
    [line] = out.out.strip().splitlines()
    runs = json.loads(line)["runs"]
    assert [(r["table"], r["state"], r["archived"]) for r in runs] == [(CUSTOMERS, "succeeded", 12),
                                                                       (CALLS, "succeeded", 7)]
    code, out = main(monkeypatch, capsys, env, "--policy", str(policy_file), "status", "--table", CALLS, "--json")
    assert code == 0 and [r["table"] for r in json.loads(out.out)["runs"]] == [CALLS]
    code, out = main(monkeypatch, capsys, env, "--policy", str(policy_file), "run", "--table", CALLS, "--dry-run",
                     "--json")
    single = json.loads(out.out)
    assert code == 0 and single["table"] == CALLS and single["dry_run"] is True and "runs" not in single


def test_cli_exit_code_of_several_runs_is_the_worst_of_them(monkeypatch, capsys, env, policy_file, two_tables, db,
                                                            policies, settings):
    Archiver(db, policies.get(CALLS), settings).start()  # a run of the call log is active: that table is busy
    db.run("UPDATE nic_cc_archive_log SET lease_owner = 'elsewhere', lease_expires_at = now() + interval '1 hour'")
    code, out = main(monkeypatch, capsys, env, "--policy", str(policy_file), "run", "--json")
    runs = json.loads(out.out)["runs"]
    assert code == cli.EXIT_BUSY and runs[0]["state"] == "succeeded" and "already active" in runs[1]["error"]


@pytest.mark.parametrize("args", [("run", "--table", "orders"), ("status", "--table", "orders"),
                                  ("purge", "--dry-run"), ("restore", "--since", "2026-11-20T02:00:00+04:00")])
def test_cli_unknown_or_missing_table_exits_2_naming_the_choices(monkeypatch, capsys, env, policy_file, db, args):
    code, out = main(monkeypatch, capsys, env, "--policy", str(policy_file), *args, "--json")
    assert code == cli.EXIT_USAGE
    assert "nic_cc_customer, nic_cc_call_log" in json.loads(out.out)["error"]


def test_cli_migrate_without_a_table_migrates_every_policy(monkeypatch, capsys, env, policy_file, db, policy):
    setup(db, policy)
    code, out = main(monkeypatch, capsys, env, "--policy", str(policy_file), "migrate", "--json")
    assert code == 0
    assert [m["table"] for m in json.loads(out.out)["migrated"]] == [CUSTOMERS, CALLS]
    assert count(db, "pg_tables", "tablename = 'nic_cc_call_log_backup'") == 1


# -- the invariant, as a property ----------------------------------------------------------------------
@settings_(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(customer_ages=st.lists(st.integers(0, 150), max_size=12), call_ages=st.lists(st.integers(0, 200), max_size=12),
       restored=st.sampled_from([CUSTOMERS, CALLS]))
def test_every_row_of_either_table_stays_live_xor_archived_and_one_tables_restore_leaves_the_other(
        db, policy, policies, settings, two_tables, customer_ages, call_ages, restored):
    db.run("TRUNCATE nic_cc_call_log, nic_cc_call_log_backup, nic_cc_customer_backup, nic_cc_archive_log")
    db.run("DELETE FROM nic_cc_customer")
    add_customers(db, policy, [float(a) + 0.5 for a in customer_ages])
    caller = add_customers(db, policy, [1])[0]
    for age in call_ages:
        db.run("INSERT INTO nic_cc_call_log (customer_id, called_at, outcome) VALUES (:c, now() - make_interval("
               "days => :d, hours => 12), 'answered')", c=caller, d=age)
    original = {t: rows(db, t) for t in (CUSTOMERS, CALLS)}
    since = db.scalar("SELECT now()")
    for p in policies.policies:
        run(db, p, settings)
    for table in (CUSTOMERS, CALLS):
        live, archived = rows(db, table), archive_rows(db, table)
        assert not set(live) & set(archived) and {**live, **archived} == original[table]
    other = CALLS if restored == CUSTOMERS else CUSTOMERS
    untouched = {t: rows(db, t) for t in (other, f"{other}_backup")}
    Restorer(db, policies.get(restored)).restore(since=since)
    assert rows(db, restored) == original[restored] and rows(db, f"{restored}_backup") == {}
    assert {t: rows(db, t) for t in (other, f"{other}_backup")} == untouched


def archive_rows(db, table: str) -> dict[int, str]:
    """The archive's rows by id, with the checksum the live row had (the archive columns left out)."""
    db.use_timezone("UTC")
    cols = [r[0] for r in db.run("SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass)"
                                 " AND attnum > 0 AND NOT attisdropped ORDER BY attnum", t=table)]
    row = ", ".join(f"t.{c}" for c in cols)
    return {r[0]: r[1] for r in db.run(f"SELECT id, md5(CAST(ROW({row}) AS text)) FROM {table}_backup t")}
