"""Time running out at every point of a run, through the real handler with a fake Lambda context.

Two ways a Lambda's time runs out at statement k:
* ``clock``: the fake clock jumps past the deadline just before statement k; the code only looks
  at the clock between batches, so the hop must hand over to the next one there.
* ``killed``: the invocation dies just before statement k (Lambda's timeout kills the process:
  the open transaction rolls back); Lambda retries the same event once the lease has expired.
Either way the chain must continue or end cleanly, with every row exactly once.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from archiver.alerts import RecordingSink
from archiver.db import Database
from archiver.engine import Archiver
from archiver.events import start_event
from archiver.identifiers import qualified
from handlers import archive
from local.runner import FakeContext

from .support import ScriptedDatabase, jobs, make_deps, seed, verify

CUSTOMERS, BATCH = 400, 50
BATCH_STATEMENTS = ("begin", "lock job", "lock rows", "re-check", "move rows", "record batch", "commit")


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class LambdaTimeout(BaseException):
    """The invocation's process is gone (BaseException: no handler code may catch it)."""


class Script:
    """Counts statements; at statement ``at`` the time runs out (clock) or the process dies."""

    def __init__(self, at: int | None, mode: str, clock: ManualClock) -> None:
        self.at, self.mode, self.clock = at, mode, clock
        self.count = 0
        self.labels: list[str] = []
        self.fired_on: str | None = None

    def __call__(self, sql: str) -> None:
        self.count += 1
        self.labels.append(label(sql))
        if self.count != self.at:
            return
        self.fired_on = label(sql)
        if self.mode == "clock":
            self.clock.now += 10_000  # far past any deadline
        else:
            raise LambdaTimeout


def label(sql: str) -> str:
    s = " ".join(sql.split())
    for key, name in (("START TRANSACTION", "begin"), ("COMMIT", "commit"),
                      ("FOR UPDATE OF l SKIP LOCKED", "lock rows"),
                      ("FILTER (WHERE NOT EXISTS", "re-check"), ("WITH m AS (DELETE", "move rows"),
                      ("records_archived = records_archived +", "record batch"), ("FOR UPDATE", "lock job"),
                      ("SET state = 'running'", "claim"), ("next_hop = :n", "hand-off"),
                      ("finished_at = now()", "finish")):
        if key in s:
            return name
    return s[:40]


def reset(db: Database, policy) -> None:
    db.run("DROP SCHEMA public CASCADE")
    db.run("CREATE SCHEMA public")
    db.run("SELECT setseed(0.42)")  # the same rows every time: statement k is the same point
    seed(db, policy, CUSTOMERS, related=False)


def chain(event: dict[str, Any], deps, clock: ManualClock, policy) -> int:
    """Drive the handler hop after hop; a killed invocation is retried by 'Lambda'."""
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    log = qualified(policy.schema_name, policy.log_table)
    pending, invocations = [event], 0
    while pending:
        current = pending.pop(0)
        invocations += 1
        assert invocations < 50, "the chain does not end"
        try:
            archive.handler(current, FakeContext(900, clock), deps=lambda: deps)
        except LambdaTimeout:
            deps.db.close()  # the process is gone; its connection with it
            pending.insert(0, current)  # Lambda's retry of the same event ...
            _expire_leases(deps.db, log)  # ... arrives after the dead worker's lease ran out
            continue
        pending += [payload for _, payload in deps.invoker.queue]
        deps.invoker.queue.clear()
    return invocations


def _expire_leases(db: Database, log: str) -> None:
    db.run(f"UPDATE {log} SET lease_expires_at = now() - interval '1 second' WHERE lease_expires_at IS NOT NULL")


def _points(db, policy, settings) -> list[int]:
    """Statement numbers of the reference run, and which of them fall inside batch transactions."""
    reset(db, policy)
    clock = ManualClock()
    script = Script(None, "clock", clock)
    worker_db = ScriptedDatabase(db, script)
    job = Archiver(db, policy, settings).start(fixed_batch_size=BATCH)
    chain(start_event(job.id), make_deps(worker_db, policy, settings, RecordingSink()), clock,
          policy)
    worker_db.close()
    return script.labels


def attack(db, policy, settings, sink, at: int, mode: str) -> tuple[str | None, int]:
    reset(db, policy)
    clock = ManualClock()
    script = Script(at, mode, clock)
    worker_db = ScriptedDatabase(db, script)
    job = Archiver(db, policy, settings).start(fixed_batch_size=BATCH)
    invocations = chain(start_event(job.id), make_deps(worker_db, policy, settings, sink), clock,
                        policy)
    worker_db.close()
    runs = jobs(db, policy)
    assert [r["state"] for r in runs] == ["succeeded"], (at, mode, script.fired_on, runs)
    return script.fired_on, invocations


def campaign(db, policy, settings, leak_watch, chaos_report, mode: str, only_batches: bool) -> None:
    labels = _points(db, policy, settings)
    batch_points = [i + 1 for i, name in enumerate(labels) if name in BATCH_STATEMENTS]
    points = batch_points[: 2 * 7] if only_batches else list(range(1, len(labels) + 1))
    sink = leak_watch.sink()
    hit: dict[str, int] = {}
    total_rows = lost = dups = changed = 0
    for at in points:
        fired, _ = attack(db, policy, settings, sink, at, mode)
        hit[fired or "-"] = hit.get(fired or "-", 0) + 1
        check = verify(db, policy)
        total_rows += check.rows_checked
        lost, dups, changed = lost + check.lost, dups + check.duplicates, changed + check.changed
        check.assert_intact()
    chaos_report.record(f"time runs out at every statement ({mode})", runs=len(points), rows_checked=total_rows,
                        lost=lost, duplicates=dups, changed=changed,
                        note=f"{len(points)} statements, {sum(hit.get(k, 0) for k in BATCH_STATEMENTS)} inside batches")
    assert not sink.alerts, [a.kind for a in sink.alerts]


@pytest.mark.parametrize("mode", ["clock", "killed"])
@pytest.mark.chaos
def test_time_running_out_inside_a_batch_continues_or_ends_cleanly(db, policy, settings, leak_watch,
                                                                    chaos_report, mode):
    campaign(db, policy, settings, leak_watch, chaos_report, mode, only_batches=True)


@pytest.mark.parametrize("mode", ["clock", "killed"])
@pytest.mark.chaos
@pytest.mark.slow
def test_time_running_out_at_every_statement_of_a_run_continues_or_ends_cleanly(db, policy, settings, leak_watch,
                                                                                  chaos_report, mode):
    campaign(db, policy, settings, leak_watch, chaos_report, mode, only_batches=False)
