"""Lambda delivers asynchronous events at least once, in any order: continuation events arrive
2-5 times at once and late, a hop is retried after its worker died, and the nightly trigger
fires twice. The run log must resolve every race: no double work, counts exact."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from archiver.db import Database
from archiver.engine import Archiver
from archiver.events import parse_archive_event, start_event
from archiver.jobs import JobStore
from archiver.worker import process
from local.runner import LOCAL_FUNCTION_ARN

from .support import jobs, make_deps, record, seed, verify


class HandoffAfter:
    """A hop's time budget that runs out after ``n`` batches (counted through Deps.on_batch)."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def on_batch(self, job: Any, result: Any) -> None:
        self.seen += 1

    def remaining_ms(self) -> float:
        return -1.0 if self.seen >= self.n else 1e9


def deliver_concurrently(event: dict, copies: int, db: Database, policy, settings, sink,
                         batches_per_hop: int) -> list[tuple[dict, list[dict]]]:
    """Deliver ``copies`` of ``event`` at the same moment, each to its own worker and connection.
    Returns each worker's answer and the events it queued for itself."""
    barrier = threading.Barrier(copies)
    out: list[Any] = [None] * copies

    def worker(i: int) -> None:
        conn = Database(db.params, settings.lock_timeout_ms, settings.statement_timeout_ms)
        budget = HandoffAfter(batches_per_hop)
        deps = make_deps(conn, policy, settings, sink, on_batch=budget.on_batch)
        try:
            conn.ensure_alive()
            barrier.wait()
            answer = process(parse_archive_event(event), deps, budget, LOCAL_FUNCTION_ARN)
            out[i] = (answer, [payload for _, payload in deps.invoker.queue])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            out[i] = exc
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    errors = [o for o in out if isinstance(o, BaseException) or o is None]
    assert not errors, errors
    return out


@pytest.mark.chaos
def test_continuations_delivered_two_to_five_times_concurrently_and_late_do_no_double_work(
        db, policy, settings, leak_watch, chaos_report):
    rng = random.Random(11)
    seed(db, policy, 6000)
    sink = leak_watch.sink()
    job = Archiver(db, policy, settings).start(fixed_batch_size=100)
    pending = [start_event(job.id)]
    delivered = stale = 0
    backlog: list[dict] = []  # every event ever emitted, replayed late and out of order
    while pending:
        event = pending.pop(0)
        copies = rng.randint(2, 5)
        answers = deliver_concurrently(event, copies, db, policy, settings, sink, batches_per_hop=3)
        delivered += copies
        workers = [a for a, _ in answers if a["status"] != "ignored"]
        assert len(workers) == 1, [a["status"] for a, _ in answers]
        emitted = [e for _, queued in answers for e in queued]
        assert len(emitted) <= 1, emitted  # the chain never forks
        pending += emitted
        # Late and reordered: replay a random handful of old events between hops.
        backlog.append(event)
        for old in rng.sample(backlog, k=min(len(backlog), rng.randint(1, 3))):
            for answer, queued in deliver_concurrently(old, rng.randint(2, 5), db, policy, settings, sink, 3):
                assert answer["status"] == "ignored" and not queued, answer
                stale += 1
    final = JobStore(db, policy).get(job.id)
    assert final.state == "succeeded"
    check = verify(db, policy)
    record(chaos_report, "continuation delivered 2-5x, concurrent + late", check, delivered + stale,
           note=f"{final.hop} hops; {delivered} deliveries of live events, {stale} stale replays ignored")
    check.assert_intact()
    assert len(jobs(db, policy)) == 1
    assert not sink.alerts


@pytest.mark.chaos
def test_a_retried_hop_takes_over_only_after_the_dead_workers_lease_expired(
        db, policy, settings, leak_watch, chaos_report):
    settings = settings.model_copy(update={"lease_seconds": 5})
    seed(db, policy, 3000)
    sink = leak_watch.sink()
    archiver = Archiver(db, policy, settings)
    job = archiver.start(fixed_batch_size=100)

    class Died(BaseException):
        """The worker's process vanished after its first batch committed."""

    def die(*_: Any) -> None:
        raise Died

    with pytest.raises(Died):
        archiver.run_hop(job.id, owner="worker-dead", hop=1, on_batch=die)
    retry = {"action": "start", "job_id": job.id}
    deps = make_deps(Database(db.params), policy, settings, sink)
    early = process(parse_archive_event(retry), deps, HandoffAfter(10**9), LOCAL_FUNCTION_ARN)
    assert early["status"] == "ignored"  # the lease still protects the (maybe only slow) worker
    time.sleep(settings.lease_seconds + 0.5)
    done = process(parse_archive_event(retry), deps, HandoffAfter(10**9), LOCAL_FUNCTION_ARN)
    assert done["status"] == "done" and done["job"]["state"] == "succeeded"
    # The dead worker comes back (a frozen container thawing): it may not touch the run.
    zombie = archiver.run_hop(job.id, owner="worker-dead", hop=1)
    assert zombie.status == "ignored"
    deps.db.close()
    check = verify(db, policy)
    record(chaos_report, "retried hop (worker died after a batch)", check, 3,
           note="retry ignored while leased, took over after expiry; zombie ignored")
    check.assert_intact()
    assert not sink.alerts


@pytest.mark.parametrize("triggers", [2, 5])
@pytest.mark.chaos
def test_nightly_trigger_delivered_at_once_starts_exactly_one_run(
        db, policy, settings, leak_watch, chaos_report, triggers):
    seed(db, policy, 3000)
    sink = leak_watch.sink()
    night = datetime.now(UTC).replace(hour=20, minute=0, second=0, microsecond=0).isoformat()
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "time": night}
    answers = deliver_concurrently(event, triggers, db, policy, settings, sink, batches_per_hop=10**9)
    statuses = sorted(a["status"] for a, _ in answers)
    assert statuses.count("done") == 1, statuses
    assert set(statuses) <= {"done", "duplicate", "already_running", "ignored"}, statuses
    late = deliver_concurrently(event, 2, db, policy, settings, sink, batches_per_hop=10**9)
    assert [a["status"] for a, _ in late] == ["duplicate", "duplicate"]
    runs = jobs(db, policy)
    assert len(runs) == 1 and runs[0]["state"] == "succeeded" and runs[0]["trigger"] == "schedule"
    check = verify(db, policy)
    record(chaos_report, "nightly trigger delivered 2-5x at once", check, triggers + 2,
           note="exactly one run per scheduled night")
    check.assert_intact()
    assert not sink.alerts
