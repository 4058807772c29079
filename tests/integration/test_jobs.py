"""The job store on a real PostgreSQL: the run log's rows read as typed jobs, the lease names as the
database leaves them, and the rows restore and purge record (their content pinned: moving their
statements into the job store changed none of it)."""

from __future__ import annotations

import dataclasses
import typing
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from archiver.engine import Archiver
from archiver.jobs import HANDOFF, Job, JobStore, Lease
from archiver.restore import Restorer, purge
from archiver.states import RunState
from tests.helpers import add_customers, setup
from tests.unit.test_jobs import is_typed


def assert_typed(job: Job | None) -> Job:
    assert job is not None
    hints = typing.get_type_hints(Job)
    wrong = [f.name for f in dataclasses.fields(Job) if not is_typed(getattr(job, f.name), hints[f.name])]
    assert wrong == []
    return job


def test_every_row_the_store_returns_is_a_typed_job_through_a_run_s_life(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70, 80])
    archiver = Archiver(db, policy, settings)
    jobs = archiver.jobs
    created = assert_typed(jobs.get(archiver.start().id))
    assert created.state is RunState.PENDING and created.percent_complete == Decimal(0)
    claimed = assert_typed(jobs.claim(created.id, "w", 30, 1))
    assert claimed.state is RunState.RUNNING and claimed.hop == 1
    assert_typed(jobs.record_batch(jobs.record_params(created.id, "w", cursor=["2026-01-01", "1"],
                                                      lease_seconds=30, failed=0)))
    assert jobs.get(created.id).cursor_row == ["2026-01-01", "1"]
    done = assert_typed(jobs.finish(created.id, "w", RunState.SUCCEEDED, "done"))
    assert done.state is RunState.SUCCEEDED and isinstance(done.finished_at, datetime)
    assert [j.id for j in jobs.recent()] == [created.id]


def test_the_lease_names_follow_the_store_s_transitions(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70])
    jobs = JobStore(db, policy)
    now = lambda: db.scalar("SELECT now()")  # noqa: E731 - the database's clock, as the rule reads it
    job = Archiver(db, policy, settings).start()
    assert jobs.get(job.id).lease(now()) is Lease.FREE
    assert jobs.claim(job.id, "w1", 60, 1) is not None
    assert jobs.get(job.id).lease(now()) is Lease.HELD and not jobs.get(job.id).may_take_over(now())
    assert jobs.claim(job.id, "w2", 60, None) is None  # a takeover finds it held
    assert jobs.handoff(job.id, "w1", 2, 60)
    handed = jobs.get(job.id)
    assert handed.lease(now()) is Lease.HANDED_OFF and handed.lease_owner == HANDOFF and handed.next_hop == 2
    assert jobs.claim(job.id, "w2", 60, 3) is None  # only hop 2's event may claim it
    assert jobs.claim(job.id, "w2", 60, 2) is not None
    jobs.release(job.id, "w2", "paused for the night")
    assert jobs.get(job.id).lease(now()) is Lease.PAUSED and jobs.get(job.id).may_take_over(now())
    assert jobs.claim(job.id, "w3", 0, None) is not None  # taken over; a lease of 0 s expires at once
    db.run("SELECT pg_sleep(0.01)")
    assert jobs.get(job.id).lease(now()) is Lease.EXPIRED and jobs.get(job.id).may_take_over(now())
    assert jobs.finish(job.id, "w3", RunState.SUCCEEDED) is not None
    assert jobs.get(job.id).lease(now()) is Lease.FREE and not jobs.get(job.id).may_take_over(now())


# -- what restore and purge write to the log ---------------------------------------------------
_TIMES = ("run_date", "scheduled_for", "cutoff", "lease_expires_at", "heartbeat_at", "started_at", "finished_at")


def logged(db) -> list[dict[str, Any]]:
    """The run log's rows, oldest first, with what differs from run to run made comparable:
    job ids as their order of appearance, times as whether they are set."""
    rows = db.rows("SELECT * FROM nic_cc_archive_log ORDER BY id")
    names = {str(r["job_id"]): f"job{i}" for i, r in enumerate(rows, 1)}

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, uuid.UUID | str) and str(value) in names:
            return names[str(value)]
        return value

    out = []
    for r in rows:
        row = {k: plain(v) for k, v in r.items() if k not in ("id", "batch_size", "cursor_row")}
        row.update({k: r[k] is not None for k in _TIMES}, execution_time_ms=r["execution_time_ms"] is not None)
        out.append(row)
    return out


def test_restore_and_purge_record_their_runs_in_the_log_as_they_always_have(db, policy, settings):
    setup(db, policy)
    first = add_customers(db, policy, [70, 80, 90, 100, 110])
    archiver = Archiver(db, policy, settings)
    archived = archiver.run_hop(archiver.start().id, owner="w", hop=1).job
    assert archived is not None and archived.records_archived == 5
    db.run("INSERT INTO nic_cc_customer (id, name, created_at) VALUES (:a, 'Customer New', now())", a=first[0])
    Restorer(db, policy, batch_size=2).restore(job_id=archived.id)
    Restorer(db, policy, batch_size=2).restore(job_id=archived.id, dry_run=True)
    db.run("UPDATE nic_cc_customer_backup SET archived_at = archived_at - interval '800 days'")
    purge(db, policy, 730, without_export=True, batch_size=3)
    rows = logged(db)
    assert [(r["kind"], r["state"], r["dry_run"]) for r in rows] == [
        ("archive", "succeeded", False), ("restore", "partial", False), ("restore", "partial", True),
        ("purge", "succeeded", False)]
    base = {"policy_key": "public.nic_cc_customer", "status": "success", "trigger": "manual", "scheduled_for": False,
            "cutoff": False, "next_hop": None, "lease_owner": None, "lease_expires_at": False,
            "heartbeat_at": True, "cancel_requested": False, "run_date": True, "started_at": True,
            "finished_at": True, "execution_time_ms": True, "slowest_batch_ms": 0, "error_message": None,
            "breakdown": None, "percent_complete": Decimal("100.0"), "hop": 1}
    restore_result = {"restored": 4, "related_restored": 0, "conflicts": 1, "conflict_ids": [str(first[0])],
                      "rolled_back_jobs": []}
    assert rows[1] == {**base, "job_id": "job2", "kind": "restore", "state": "partial", "status": "partial",
                       "dry_run": False, "options": {"job": "job1", "since": None, "result": restore_result},
                       "eligible": 5, "records_archived": 4, "records_failed": 1, "processed": 5,
                       "percent_complete": Decimal("100.0"), "batches": 3,
                       "message": "restored 4 rows; 1 left in the archive (already live, or referencing a row"
                                  " that is not)"}
    assert rows[2] == {**base, "job_id": "job3", "kind": "restore", "state": "partial", "status": "partial",
                       "dry_run": True, "options": {"job": "job1", "since": None,
                                                    "result": {**restore_result, "restored": 0}},
                       "eligible": 1, "records_archived": 0, "records_failed": 1, "processed": 1, "batches": 0,
                       "message": "would restore 0 rows; 1 left in the archive (already live, or referencing a"
                                  " row that is not)"}
    purged = rows[3]
    assert purged["message"].startswith("purged 1 archive rows archived before ")
    assert purged["message"].endswith(" without an export")
    assert purged["options"]["result"]["purged"] == 1
    assert {k: v for k, v in purged.items() if k not in ("message", "options")} == {
        **base, "job_id": "job4", "kind": "purge", "state": "succeeded", "dry_run": False, "eligible": 1,
        "records_archived": 1, "records_failed": 0, "processed": 1, "batches": 0}
    # The archive run keeps its own row: one of its rows is still archived, so it is not rolled back.
    assert rows[0]["state"] == "succeeded" and rows[0]["records_archived"] == 5


def test_a_restore_that_brings_back_every_row_of_a_run_marks_that_run_rolled_back(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70, 80])
    archiver = Archiver(db, policy, settings)
    archived = archiver.run_hop(archiver.start().id, owner="w", hop=1).job
    assert archived is not None
    Restorer(db, policy).restore(job_id=archived.id)
    rows = logged(db)
    assert {k: rows[0][k] for k in ("state", "status", "message", "records_archived")} == {
        "state": "rolled_back", "status": "rolled_back", "message": "restored from the archive", "records_archived": 2}
    assert {k: rows[1][k] for k in ("state", "records_archived", "records_failed", "eligible", "batches")} == {
        "state": "succeeded", "records_archived": 2, "records_failed": 0, "eligible": 2, "batches": 1}
    assert rows[1]["options"]["result"]["rolled_back_jobs"] == ["job1"]
