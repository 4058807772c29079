"""The archive function end to end through its Lambda handler: hops, duplicates, retries,
the hop limit, the nightly trigger, failures and alerts, on a real PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from archiver import alerts
from archiver.engine import Archiver, Unlimited
from archiver.events import parse_archive_event, start_event
from archiver.exceptions import RunFailedError
from archiver.identifiers import qualified
from archiver.jobs import JobStore
from archiver.worker import Deps, LocalInvoker, process
from handlers import archive
from handlers.archive import ContextBudget
from local.runner import drive
from tests.helpers import add_customers, assert_counts_match_archive, count, setup, snapshot


class TickingContext:
    """A Lambda context whose remaining time drops by ``tick_ms`` each time it is asked."""

    invoked_function_arn = "arn:aws:lambda:local:000000000000:function:archiver-archive-test"
    function_name, function_version, memory_limit_in_mb = "archiver-archive-test", "$LATEST", 512
    aws_request_id, log_group_name, log_stream_name = "req", "g", "s"

    def __init__(self, budget_ms: float, tick_ms: float = 1000) -> None:
        self.left, self.tick = budget_ms, tick_ms

    def get_remaining_time_in_millis(self) -> int:
        self.left -= self.tick
        return int(max(self.left, 0))


FOREVER = Unlimited()


def ticking(ticks_per_hop: int):
    return lambda _seconds: TickingContext(budget_ms=ticks_per_hop * 1000 + 1)


@pytest.fixture
def deps(db, policy, settings):
    return Deps(db=db, policy=policy, settings=settings, invoker=LocalInvoker(), alerts=alerts.RecordingSink())


@pytest.fixture
def rows(db, policy):
    setup(db, policy)
    add_customers(db, policy, [70 + i * 0.1 for i in range(100)])
    return snapshot(db)


def started(db, policy, settings, **kw):
    job = Archiver(db, policy, settings).start(**kw)
    return job, start_event(job.id)


def test_run_needing_several_hops_completes_with_every_row_accounted_for(db, policy, settings, deps, rows):
    job, event = started(db, policy, settings, fixed_batch_size=5)
    run = drive(event, deps, 900, context_factory=ticking(4))
    final = JobStore(db, policy).get(job.id)
    assert final.state == "succeeded" and final.records_archived == 100
    assert run.hops >= 5 and final.hop == run.hops
    assert [r["status"] for r in run.results[:-1]] == ["continue"] * (run.hops - 1)
    assert snapshot(db) == rows
    assert_counts_match_archive(db)


def _first_hop(db, policy, settings, deps):
    job, event = started(db, policy, settings, fixed_batch_size=5)
    archive.handler(event, TickingContext(3001), deps=lambda: deps)
    [(_, continuation)] = deps.invoker.queue
    deps.invoker.queue.clear()
    return job, continuation


def test_duplicated_continuation_delivered_concurrently_does_the_work_once(db, policy, settings, deps, rows,
                                                                           connect):
    job, continuation = _first_hop(db, policy, settings, deps)
    results = []

    def deliver():
        mine = Deps(db=connect(), policy=policy, settings=settings, invoker=LocalInvoker(),
                    alerts=alerts.RecordingSink())
        results.append(process(parse_archive_event(continuation), mine, FOREVER,
                               "self")["status"])

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["done", "ignored", "ignored", "ignored"]
    final = JobStore(db, policy).get(job.id)
    assert final.records_archived == 100 == count(db, "nic_cc_customer_backup")
    assert snapshot(db) == rows


def test_late_duplicate_of_a_finished_hop_changes_nothing(db, policy, settings, deps, rows):
    job, continuation = _first_hop(db, policy, settings, deps)
    process(parse_archive_event(continuation), deps, FOREVER, "self")
    before = JobStore(db, policy).get(job.id)
    again = process(parse_archive_event(continuation), deps, FOREVER, "self")
    assert again["status"] == "ignored"
    assert JobStore(db, policy).get(job.id) == before


def test_retried_hop_whose_worker_died_takes_over_after_the_lease_expires(db, policy, settings, deps, rows):
    job, continuation = _first_hop(db, policy, settings, deps)
    # The first delivery of hop 2 claims the job, does one batch, then its container dies.
    Archiver(db, policy, settings).run_hop(job.id, owner="dead-worker", hop=2, max_batches=1)
    db.run("UPDATE nic_cc_archive_log SET lease_owner = 'dead-worker', lease_expires_at = now() + interval '5 minutes'"
           " WHERE job_id = CAST(:j AS uuid)", j=job.id)
    early = process(parse_archive_event(continuation), deps, FOREVER, "self")
    assert early["status"] == "ignored"  # the lease is still live: maybe the worker is only slow
    db.run("UPDATE nic_cc_archive_log SET lease_expires_at = now() - interval '1 second'")
    retried = process(parse_archive_event(continuation), deps, FOREVER, "self")
    assert retried["status"] == "done"
    assert JobStore(db, policy).get(job.id).records_archived == 100
    assert snapshot(db) == rows
    assert_counts_match_archive(db)


def test_hop_limit_stops_a_runaway_chain_with_a_clear_error_and_an_alert(db, policy, env, deps, rows):
    from archiver.config import load_settings

    deps.settings = load_settings({**env, "ARCHIVER_MAX_HOPS": "2"})
    job, event = started(db, policy, deps.settings, fixed_batch_size=5)
    with pytest.raises(Exception, match="over the limit of 2"):
        drive(event, deps, 900, context_factory=ticking(2))
    final = JobStore(db, policy).get(job.id)
    assert final.state == "partial" and "limit" in final.error_message
    assert [a.kind for a in deps.alerts.alerts] == ["hop_limit"]
    assert snapshot(db) == rows
    assert_counts_match_archive(db)


class SteadyBudget:
    """A hop whose remaining time stays at ``ms``: what its kept-back rule sees, and nothing else."""

    def __init__(self, ms: float) -> None:
        self.ms = ms

    def remaining_ms(self) -> float:
        return self.ms


def test_a_hop_after_one_slow_batch_still_moves_a_batch_when_one_fits(db, policy, settings, deps, rows):
    # An earlier batch took 600 ms: twice that is more than any hop here has (1000 ms), so without
    # the one-batch rule every hop would hand over empty-handed until the hop limit.
    job, event = started(db, policy, settings, fixed_batch_size=5)
    db.run(f"UPDATE {qualified(policy.schema_name, policy.log_table)} SET slowest_batch_ms = 600"
           " WHERE job_id = CAST(:id AS uuid)",
           id=job.id)
    hop = event
    for n in range(1, 4):
        assert process(parse_archive_event(hop), deps, SteadyBudget(1000), "self")["status"] == "continue"
        [(_, hop)] = deps.invoker.queue
        deps.invoker.queue.clear()
        assert JobStore(db, policy).get(job.id).records_archived == 5 * n
    assert snapshot(db) == rows
    assert_counts_match_archive(db)


def test_two_deliveries_of_the_same_nightly_trigger_start_one_run(db, policy, deps, rows):
    event = {"source": "archiver.schedule", "trigger": "schedule", "scheduled_time": "2026-11-23T02:00:00+04:00"}
    first = process(parse_archive_event(event), deps, FOREVER, "self")
    second = process(parse_archive_event(event), deps, FOREVER, "self")
    assert first["status"] == "done" and second["status"] == "duplicate"
    assert second["job_id"] == first["job"]["job_id"]
    assert count(db, "nic_cc_archive_log") == 1


def test_nightly_trigger_during_an_active_run_starts_nothing_and_alerts_when_stuck(db, policy, settings, deps,
                                                                                   rows):
    job, _ = started(db, policy, settings, fixed_batch_size=5)
    Archiver(db, policy, settings).run_hop(job.id, owner="busy", hop=1, max_batches=1)
    db.run("UPDATE nic_cc_archive_log SET lease_owner = 'busy', lease_expires_at = now() + interval '1 hour'")
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "time": "2026-11-24T22:00:00Z"}
    out = process(parse_archive_event(event), deps, FOREVER, "self")
    assert out["status"] == "already_running" and out["job_id"] == job.id
    assert deps.alerts.alerts == []
    db.run("UPDATE nic_cc_archive_log SET heartbeat_at = now() - interval '3 hours'")
    event["time"] = "2026-11-25T22:00:00Z"
    process(parse_archive_event(event), deps, FOREVER, "self")
    assert [a.kind for a in deps.alerts.alerts] == ["stuck"]
    assert count(db, "nic_cc_archive_log") == 1


def test_nightly_trigger_takes_over_an_abandoned_run_and_finishes_it(db, policy, settings, deps, rows):
    job, _ = started(db, policy, settings, fixed_batch_size=5)
    Archiver(db, policy, settings).run_hop(job.id, owner="gone", hop=1, max_batches=1)
    event = {"trigger": "schedule", "scheduled_time": "2026-11-24T02:00:00+04:00"}
    out = process(parse_archive_event(event), deps, FOREVER, "self")
    assert out["status"] == "done" and out["job"]["job_id"] == job.id and out["job"]["archived"] == 100
    assert snapshot(db) == rows


def test_failure_marks_the_run_failed_alerts_and_raises(db, policy, settings, deps, rows):
    job, event = started(db, policy, settings, fixed_batch_size=5)
    db.run("ALTER TABLE nic_cc_customer_backup ADD CONSTRAINT no_rows CHECK (id < 0) NOT VALID")
    with pytest.raises(Exception, match="no_rows"):
        archive.handler(event, TickingContext(10**9, 0), deps=lambda: deps)
    final = JobStore(db, policy).get(job.id)
    assert final.state == "failed" and "no_rows" in final.error_message
    [alert] = deps.alerts.alerts
    assert alert.kind == "failure" and alert.job_id == job.id
    assert snapshot(db) == rows and count(db, "nic_cc_customer_backup") == 0


def test_malformed_event_is_rejected_without_a_retry(deps):
    out = archive.handle({"action": "continue", "job_id": "x", "hop": "many"}, TickingContext(10**9, 0),
                         lambda: deps)
    assert out["status"] == "rejected" and "hop" in out["error"]


def test_no_customer_data_reaches_logs_or_alerts(db, policy, settings, deps, log_lines):
    setup(db, policy, customers=500)
    pii = [r for row in db.run("SELECT name, email, mobile, policy_number FROM nic_cc_customer LIMIT 50")
           for r in row]
    job, event = started(db, policy, settings, fixed_batch_size=50)
    deps.settings = settings.model_copy(update={"success_alerts": True})
    drive(event, deps, 900, context_factory=ticking(3))
    db.run("ALTER TABLE nic_cc_customer_backup ADD CONSTRAINT no_rows CHECK (id < 0) NOT VALID")
    add_customers(db, policy, [90])
    job2, event2 = started(db, policy, settings)
    with pytest.raises(RunFailedError):
        drive(event2, deps, 900)
    text = log_lines.getvalue() + "".join(a.subject + a.body for a in deps.alerts.alerts)
    assert deps.alerts.alerts and "run finished" in text
    leaked = [p for p in pii if p in text] + [p for p in ("Customer X", "x@example.mu", "POL-X") if p in text]
    assert leaked == []


class BrokenInvoker:
    def invoke_async(self, function, payload):
        raise ConnectionError("lambda endpoint unreachable")


def test_a_hand_over_that_cannot_be_invoked_fails_the_run_with_an_alert(db, policy, settings, deps, rows):
    job, event = started(db, policy, settings, fixed_batch_size=5)
    deps.invoker = BrokenInvoker()
    with pytest.raises(RunFailedError, match="could not invoke hop 2"):
        process(parse_archive_event(event), deps, ContextBudget(TickingContext(3001)), "self")
    final = JobStore(db, policy).get(job.id)
    assert final.state == "partial" and final.lease_owner is None
    assert [a.kind for a in deps.alerts.alerts] == ["failure"]
    assert snapshot(db) == rows


def test_database_down_when_an_invocation_starts_alerts_and_raises(db, policy, settings, deps):
    from archiver.db import Database, params_from_url
    from archiver.exceptions import DatabaseUnavailableError

    deps.db = Database(params_from_url("postgresql://archiver@127.0.0.1:1/none?sslmode=disable"))
    event = {"action": "continue", "job_id": "2f0cbd0a-8a49-4b7b-9d3c-1c7b5f3f3a10", "hop": 3}
    with pytest.raises(DatabaseUnavailableError):
        process(parse_archive_event(event), deps, SteadyBudget(5000), "self")
    [alert] = deps.alerts.alerts
    assert alert.kind == "failure" and alert.job_id == event["job_id"]
