"""The engine on a real PostgreSQL: every row accounted for, whatever happens."""

from __future__ import annotations

import threading
import time

import pytest

from archiver import migration
from archiver.eligibility import pin_cutoffs
from archiver.engine import Archiver
from archiver.exceptions import AlreadyRunningError, SchemaError
from archiver.jobs import JobStore
from archiver.statements import Locked
from tests.helpers import add_customers, assert_counts_match_archive, count, raced_by_ddl, setup, snapshot


def run_to_end(db, policy, settings, **start):
    archiver = Archiver(db, policy, settings)
    job = archiver.start(**start)
    outcome = archiver.run_hop(job.id, owner="w1", hop=1)
    assert outcome.status == "done"
    return outcome.job


def test_every_row_is_live_or_archived_with_identical_content(db, policy, settings):
    setup(db, policy, customers=3000)
    before = snapshot(db)
    job = run_to_end(db, policy, settings, fixed_batch_size=250)
    after = snapshot(db)
    assert after == before
    assert job.records_archived == count(db, "nic_cc_customer_backup") > 0
    assert job.batches >= job.records_archived // 250
    assert_counts_match_archive(db)


def test_archive_rows_carry_audit_columns(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70, 80])
    job = run_to_end(db, policy, settings)
    rows = db.rows("SELECT archived_by, archive_reason, CAST(archive_job_id AS text) AS j, archived_at"
                   " FROM nic_cc_customer_backup")
    assert {(r["archived_by"], r["archive_reason"], r["j"]) for r in rows} == {("system", "60_day_rule", job.id)}
    assert all(r["archived_at"] is not None for r in rows)


def test_dry_run_moves_nothing_and_counts_what_the_real_run_moves(db, policy, settings):
    setup(db, policy, customers=2000)
    before = snapshot(db)
    dry = run_to_end(db, policy, settings, dry_run=True)
    assert snapshot(db) == before and count(db, "nic_cc_customer_backup") == 0
    assert dry.dry_run and dry.records_archived == 0
    assert sum(dry.as_dict()["by_line_of_business"].values()) == dry.eligible
    real = run_to_end(db, policy, settings)
    assert real.records_archived == dry.eligible


def test_failed_batch_leaves_tables_as_before_it_and_the_run_resumes(db, policy, settings):
    setup(db, policy)
    ids = add_customers(db, policy, [100 - i * 0.01 for i in range(50)])
    # A real fault inside the batch transaction: the archive refuses one row.
    db.run(f"""CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN IF NEW.id = {ids[25]} THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$""")
    db.run("CREATE TRIGGER boom BEFORE INSERT ON nic_cc_customer_backup FOR EACH ROW EXECUTE FUNCTION boom()")
    before = snapshot(db)
    archiver = Archiver(db, policy, settings)
    job = archiver.start(fixed_batch_size=10)
    with pytest.raises(Exception, match="injected fault"):
        archiver.run_hop(job.id, owner="w1", hop=1)
    assert snapshot(db) == before
    assert count(db, "nic_cc_customer_backup") == 20  # two whole batches, not a row of the third
    assert_counts_match_archive(db)
    db.run("DROP TRIGGER boom ON nic_cc_customer_backup")
    db.run("UPDATE nic_cc_archive_log SET lease_expires_at = now() - interval '1 second'")
    outcome = archiver.run_hop(job.id, owner="w2", hop=None)  # takeover of the crashed worker's run
    assert outcome.job.state == "succeeded" and outcome.job.records_archived == 50
    assert snapshot(db) == before and count(db, "nic_cc_customer") == 0
    assert_counts_match_archive(db)


def test_rows_locked_by_the_application_are_skipped_then_archived_later(db, policy, settings, connect):
    setup(db, policy)
    ids = add_customers(db, policy, [90, 91, 92, 93])
    app = connect()
    with app.transaction():
        app.run("SELECT 1 FROM nic_cc_customer WHERE id = ANY(:ids) FOR UPDATE", ids=ids[:2])
        job = run_to_end(db, policy, settings)
        assert job.records_archived == 2
        app.run("UPDATE nic_cc_customer SET amount_due = 999 WHERE id = ANY(:ids)", ids=ids[:2])
    assert count(db, "nic_cc_customer", "amount_due = 999") == 2  # the update landed, nothing lost
    second = run_to_end(db, policy, settings)
    assert second.records_archived == 2
    assert count(db, "nic_cc_customer_backup", "amount_due = 999") == 2


def test_second_run_meanwhile_is_refused_naming_the_running_job(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70])
    archiver = Archiver(db, policy, settings)
    first = archiver.start()
    with pytest.raises(AlreadyRunningError) as err:
        archiver.start()
    assert err.value.job_id == first.id
    assert count(db, "nic_cc_archive_log") == 1


def test_two_workers_on_one_job_only_one_claims_it(db, policy, settings, connect):
    setup(db, policy)
    add_customers(db, policy, [70 + i for i in range(30)])
    job = Archiver(db, policy, settings).start(fixed_batch_size=5)
    outcomes = []

    def work(name):
        other = connect()
        outcomes.append(Archiver(other, policy, settings).run_hop(job.id, owner=name, hop=1))

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.status for o in outcomes) == ["done", "ignored", "ignored", "ignored"]
    final = JobStore(db, policy).get(job.id)
    assert final.records_archived == 30 == count(db, "nic_cc_customer_backup")


def test_a_worker_whose_lease_is_taken_between_batches_stops_and_the_new_owner_finishes(
        db, policy, settings, connect):
    setup(db, policy)
    add_customers(db, policy, [70 + i for i in range(20)])
    archiver = Archiver(db, policy, settings)
    job = archiver.start(fixed_batch_size=5)
    other = connect()

    def take_over(current, result):
        if current.batches == 1:  # the lease expired while w1 was stalled; w2 took the job over
            other.run("UPDATE nic_cc_archive_log SET lease_expires_at = now() - interval '1 second'")
            assert JobStore(other, policy).claim(job.id, "w2", 60, None) is not None

    stale = archiver.run_hop(job.id, owner="w1", hop=1, on_batch=take_over)
    assert stale.status == "ignored" and stale.reason == "lease lost"
    assert count(db, "nic_cc_customer_backup") == 5
    finished = Archiver(other, policy, settings).run_hop(job.id, owner="w2", hop=None)
    assert finished.job.state == "succeeded" and finished.job.records_archived == 20
    assert count(db, "nic_cc_customer") == 0
    assert_counts_match_archive(db)


def test_the_batch_statement_locks_no_row_unless_the_lease_is_its_own(db, policy, settings, connect):
    setup(db, policy)
    add_customers(db, policy, [70 + i for i in range(10)])
    archiver = Archiver(db, policy, settings)
    job = archiver.start(fixed_batch_size=5)
    archiver.run_hop(job.id, owner="w1", hop=1, max_batches=0)
    stmts = archiver.statements(pin_cutoffs(db, policy))
    other = connect()
    for owner, cancel, locks in (("intruder", False, 0), ("w1", True, 0), ("w1", False, 5)):
        other.run("UPDATE nic_cc_archive_log SET cancel_requested = :c, lease_owner = 'w1'", c=cancel)
        with db.transaction():  # commits nothing but the locks' release
            found = Locked.from_row(db.rows(stmts.lock_first, n=5, job=job.id, owner=owner, **stmts.params)[0])
            free = other.scalar("SELECT count(*) FROM (SELECT id FROM nic_cc_customer FOR UPDATE SKIP LOCKED) x")
        assert (found.locked, found.ours, found.cancel, 10 - free) == (locks, owner == "w1", cancel, locks), owner


def test_bounded_run_resumes_later_with_the_same_cutoff(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70 + i for i in range(20)])
    archiver = Archiver(db, policy, settings)
    job = archiver.start(fixed_batch_size=5)
    paused = archiver.run_hop(job.id, owner="w1", hop=1, max_batches=2)
    assert paused.status == "paused" and paused.job.records_archived == 10 and paused.job.state == "running"
    resumed = archiver.run_hop(job.id, owner="w2", hop=None)
    assert resumed.job.state == "succeeded" and resumed.job.records_archived == 20
    assert resumed.job.cutoff == job.cutoff


def test_rows_that_age_past_the_cutoff_during_a_run_wait_for_the_next_run(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70])
    archiver = Archiver(db, policy, settings)
    job = archiver.start()
    # Younger than the pinned cutoff by half a second: eligible by a cutoff computed any later.
    db.run("INSERT INTO nic_cc_customer (name, created_at) VALUES ('Customer Y',"
           " CAST(:c AS timestamptz) + interval '500 milliseconds')", c=job.cutoff)
    time.sleep(1)
    outcome = archiver.run_hop(job.id, owner="w1", hop=1)
    assert outcome.job.records_archived == 1
    assert count(db, "nic_cc_customer", "name = 'Customer Y'") == 1


def test_cancel_stops_after_the_current_batch(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70 + i for i in range(20)])
    archiver = Archiver(db, policy, settings)
    job = archiver.start(fixed_batch_size=5)
    archiver.run_hop(job.id, owner="w1", hop=1, max_batches=1)
    JobStore(db, policy).request_cancel(job.id)
    outcome = archiver.run_hop(job.id, owner="w1", hop=None)
    assert outcome.job.state == "cancelled" and outcome.job.records_archived == 5
    assert count(db, "nic_cc_customer_backup") == 5


def test_schema_drift_new_live_column_reaches_the_archive(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70])
    run_to_end(db, policy, settings)
    db.run("ALTER TABLE nic_cc_customer ADD COLUMN segment text")
    add_customers(db, policy, [71])
    db.run("UPDATE nic_cc_customer SET segment = 'gold'")
    run_to_end(db, policy, settings)
    assert count(db, "nic_cc_customer_backup", "segment = 'gold'") == 1


def test_column_added_between_two_batches_of_a_run_is_archived_with_its_values(db, connect, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70 + i for i in range(12)])
    archiver = Archiver(db, policy, settings)
    job = archiver.start(fixed_batch_size=4)
    side = connect()  # the application, on its own connection: alters the table between two batches

    def alter_after_first_batch(_job, result):
        if result.locked and not count(side, "information_schema.columns", "column_name = 'segment'"):
            side.run("ALTER TABLE nic_cc_customer ADD COLUMN segment text")
            side.run("UPDATE nic_cc_customer SET segment = 'gold'")

    outcome = archiver.run_hop(job.id, owner="w1", hop=1, on_batch=alter_after_first_batch)
    assert outcome.status == "done" and outcome.job.records_archived == 12
    assert count(db, "nic_cc_customer_backup") == 12
    assert count(db, "nic_cc_customer_backup", "segment = 'gold'") == 8  # every row moved after the change


def test_columns_changing_under_every_batch_stop_the_run_with_nothing_moved(db, connect, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70, 71])
    app = connect()

    archiver = raced_by_ddl(app, "nic_cc_customer")(db, policy, settings)
    job = archiver.start(fixed_batch_size=1)
    before = snapshot(db)
    with pytest.raises(SchemaError, match="changed under every batch"):
        archiver.run_hop(job.id, owner="w1", hop=1)
    assert snapshot(db) == before and count(db, "nic_cc_customer_backup") == 0


def test_archive_table_that_cannot_hold_live_rows_stops_before_moving(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70])
    db.run("ALTER TABLE nic_cc_customer_backup ALTER COLUMN agent_id TYPE text")
    before = snapshot(db)
    with pytest.raises(SchemaError, match="agent_id"):
        Archiver(db, policy, settings).start()
    assert snapshot(db) == before and count(db, "nic_cc_customer_backup") == 0


def test_migrate_is_idempotent_and_creates_the_indexes_the_job_needs(db, policy):
    setup(db, policy)
    report = migration.migrate(db, policy)
    assert report.created == [] and report.indexes == []
    idx = {r[0] for r in db.run("SELECT indexdef FROM pg_indexes WHERE tablename LIKE 'nic_cc_%'")}
    assert any("(created_at, id)" in i and "nic_cc_customer " in i for i in idx)
    for table in ("nic_cc_aod", "nic_cc_call_log", "nic_cc_follow_up"):
        assert any(f"{table} " in i and "(customer_id)" in i for i in idx), table


def test_batch_size_adapts_toward_the_target_batch_time(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70 + i * 0.001 for i in range(3000)])
    archiver = Archiver(db, policy.model_copy(update={"batch_size": 1000}),
                        settings.model_copy(update={"target_batch_ms": 10_000}))
    job = archiver.start()  # no explicit size: start at the policy's 1000 and adapt
    assert job.options["adaptive"] is True
    done = archiver.run_hop(job.id, owner="w", hop=1).job
    # Batches far under the target double: 1000, then 2000 covers the rest, then an empty batch.
    assert done.records_archived == 3000 and done.batches == 3


def test_explicit_batch_size_stays_fixed(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70 + i * 0.001 for i in range(300)])
    archiver = Archiver(db, policy, settings.model_copy(update={"target_batch_ms": 10_000}))
    job = archiver.start(fixed_batch_size=100)
    assert archiver.run_hop(job.id, owner="w", hop=1).job.batches == 4


def test_batch_pause_idles_between_batches_outside_any_transaction(db, policy, settings, connect, monkeypatch):
    from types import SimpleNamespace

    from archiver import engine

    setup(db, policy)
    add_customers(db, policy, [70 + i * 0.001 for i in range(250)])
    job_pid = db.scalar("SELECT pg_backend_pid()")
    observer = connect()
    pauses = []

    def sleep(seconds):  # what the job's session is doing while the engine pauses
        state = observer.scalar("SELECT state FROM pg_stat_activity WHERE pid = :p", p=job_pid)
        pauses.append((seconds, state))

    monkeypatch.setattr(engine, "time", SimpleNamespace(perf_counter=time.perf_counter, sleep=sleep))
    archiver = Archiver(db, policy, settings.model_copy(update={"batch_pause_ms": 200}))
    job = archiver.start(fixed_batch_size=100)
    done = archiver.run_hop(job.id, owner="w", hop=1).job

    assert done.records_archived == 250
    # After each of the batches of 100, 100 and 50, none after the empty one that ends the run;
    # "idle", not "idle in transaction": the batch has committed and holds no row.
    assert pauses == [(0.2, "idle")] * 3


def test_dry_run_warns_when_the_batch_query_would_scan_the_whole_table(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70 + i for i in range(20)])
    db.run("DROP INDEX nic_cc_customer_created_at_id_archiver_idx")
    dry = run_to_end(db, policy, settings, dry_run=True).as_dict()
    assert dry["warnings"] and "archiver migrate" in dry["warnings"][0]
    migration.migrate(db, policy)
    db.run("ANALYZE nic_cc_customer")
    assert "archiver migrate" not in " ".join(run_to_end(db, policy, settings, dry_run=True).as_dict()["warnings"])


def test_a_row_whose_id_the_archive_already_holds_stays_live_and_counts_as_failed(db, policy, settings):
    setup(db, policy)
    ids = add_customers(db, policy, [100, 90, 80])
    # A copy of the middle customer is already archived (say, restored by hand and edited since).
    db.run("INSERT INTO nic_cc_customer_backup SELECT c.*, now(), 'someone', 'by hand', NULL"
           " FROM nic_cc_customer c WHERE id = :i", i=ids[1])

    job = run_to_end(db, policy, settings, fixed_batch_size=2)

    assert (job.state, job.records_archived, job.records_failed) == ("partial", 2, 1)
    assert count(db, "nic_cc_customer", "id = :i", i=ids[1]) == 1
    assert count(db, "nic_cc_customer_backup", "id = :i AND archive_job_id IS NULL", i=ids[1]) == 1
    for moved in (ids[0], ids[2]):
        assert count(db, "nic_cc_customer", "id = :i", i=moved) == 0
        assert count(db, "nic_cc_customer_backup", "id = :i AND archive_job_id = CAST(:j AS uuid)", i=moved,
                     j=job.id) == 1


def test_between_batches_the_job_waits_for_a_lagging_standby_outside_any_transaction(db, policy, settings, connect):
    setup(db, policy)
    add_customers(db, policy, [70 + i * 0.001 for i in range(250)])
    job_pid = db.scalar("SELECT pg_backend_pid()")
    observer = connect()
    readings = []

    def lag() -> float:  # a standby 5 s behind after the first batch, caught up after that
        readings.append(observer.scalar("SELECT state FROM pg_stat_activity WHERE pid = :p", p=job_pid))
        return 5.0 if len(readings) == 1 else 0.0

    archiver = Archiver(db, policy, settings, replica_lag=lag)
    job = archiver.start(fixed_batch_size=100, max_replica_lag=2)
    started = time.perf_counter()
    done = archiver.run_hop(job.id, owner="w", hop=1).job

    assert done.records_archived == 250 and done.options["max_replica_lag"] == 2
    # One reading after each of the batches of 100, 100 and 50, plus the one that found it caught up.
    assert readings == ["idle"] * 4 and time.perf_counter() - started >= 0.5


def test_the_wait_for_standbys_ends_where_the_hop_hands_over(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70 + i * 0.001 for i in range(250)])

    class Seconds:
        def __init__(self, s: float) -> None:
            self.end = time.perf_counter() + s

        def remaining_ms(self) -> float:
            return (self.end - time.perf_counter()) * 1000

    archiver = Archiver(db, policy, settings, replica_lag=lambda: 60.0)  # a standby that never catches up
    job = archiver.start(fixed_batch_size=100, max_replica_lag=1)
    started = time.perf_counter()
    outcome = archiver.run_hop(job.id, owner="w", hop=1, budget=Seconds(2.0))
    assert outcome.status == "continue" and outcome.batches == 1 and time.perf_counter() - started < 3


def test_on_a_server_without_standbys_the_job_never_waits(db, policy, settings):
    from archiver.replicas import replay_lag_reader

    setup(db, policy)
    add_customers(db, policy, [70 + i * 0.001 for i in range(250)])
    assert replay_lag_reader(db)() == 0.0  # the real pg_stat_replication, empty on a single server
    archiver = Archiver(db, policy, settings.model_copy(update={"max_replica_lag": 0.001}))
    job = archiver.start(fixed_batch_size=100)
    started = time.perf_counter()
    assert archiver.run_hop(job.id, owner="w", hop=1).job.records_archived == 250
    assert job.options["max_replica_lag"] == 0.001 and time.perf_counter() - started < 0.5
