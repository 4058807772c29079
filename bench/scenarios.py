"""What the benchmark measures, each on a database of its own: the project's job (through the local
runner and the real archive handler, as in Lambda), the database's own limit (one statement, one
transaction), and the seeds' method (row by row)."""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass, field

from archiver import alerts
from archiver.catalogue import live_shape
from archiver.config import Policy, Settings
from archiver.db import Database
from archiver.eligibility import pin_cutoffs
from archiver.engine import Archiver, BatchResult
from archiver.events import start_event
from archiver.identifiers import qualified, quote
from archiver.jobs import Job
from archiver.migration import ARCHIVE_META
from archiver.statements import Statements
from archiver.worker import Deps, LocalInvoker
from local.runner import drive


@dataclass(frozen=True)
class Batch:
    at_s: float  # when it ended, seconds after the job started
    ms: float
    locked: int
    moved: int


@dataclass
class JobRun:
    batch_size: int
    archived: int
    seconds: float
    hops: int
    state: str
    batches: list[Batch] = field(default_factory=list)
    job_id: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.archived / self.seconds if self.seconds else 0.0

    @property
    def working(self) -> list[Batch]:
        """Batches that found rows (the last batch of a run finds none and ends it)."""
        return [b for b in self.batches if b.locked]

    @property
    def worst_ms(self) -> float:
        return max((b.ms for b in self.working), default=0.0)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(b.ms for b in self.working) if self.working else 0.0

    def flatness(self) -> float:
        """Mean batch time of the last 10% of full batches over the first 10%; for the adaptive
        default run, whose batches are steered to a time, the mean time per row instead."""
        if self.batch_size == DEFAULT_RUN:
            full = [b.ms / b.locked for b in self.working[:-1]]
        else:
            full = [b.ms for b in self.working if b.locked == self.batch_size]
        k = max(1, len(full) // 10)
        return statistics.fmean(full[-k:]) / statistics.fmean(full[:k]) if full else 0.0

    def summary(self) -> dict[str, float | int | str]:
        return {"batch_size": self.batch_size, "archived": self.archived, "seconds": round(self.seconds, 2),
                "rows_per_s": round(self.rows_per_s), "batches": len(self.working), "hops": self.hops,
                "state": self.state, "mean_batch_ms": round(self.mean_ms, 1),
                "worst_batch_ms": round(self.worst_ms, 1), "flatness": round(self.flatness(), 3)}


@dataclass(frozen=True)
class Moved:
    rows: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


DEFAULT_RUN = 0  # batch_size of the run as users leave it: no explicit size, so it adapts


def batch_label(batch_size: int) -> str:
    return "default (adaptive)" if batch_size == DEFAULT_RUN else f"batch {batch_size}"


def run_job(db: Database, policy: Policy, settings: Settings, batch_size: int) -> JobRun:
    """The job as the nightly schedule runs it: start, then hops of the real archive handler.
    ``batch_size`` DEFAULT_RUN starts it without a size, as the schedule and the API do."""
    started = time.perf_counter()
    job = Archiver(db, policy, settings).start(fixed_batch_size=batch_size or None, trigger="bench")
    batches: list[Batch] = []

    def record(_job: Job, result: BatchResult) -> None:
        batches.append(Batch(time.perf_counter() - started, result.ms, result.locked, result.moved))

    deps = Deps(db=db, policy=policy, settings=settings, invoker=LocalInvoker(), alerts=alerts.RecordingSink(),
                on_batch=record)
    run = drive(start_event(job.id), deps, settings.hop_seconds)
    seconds = time.perf_counter() - started
    final = run.last.get("job", {})
    return JobRun(batch_size, int(final.get("archived") or 0), seconds, run.hops, str(final.get("state")), batches,
                  job.id)


def _statements(db: Database, policy: Policy, settings: Settings) -> Statements:
    return Archiver(db, policy, settings).statements(pin_cutoffs(db, policy))


def run_limit(db: Database, policy: Policy, settings: Settings) -> Moved:
    """Every eligible row in one statement and one transaction: what no production job may do
    (it holds every row for the whole move), and the fastest this database moves them."""
    stmts = _statements(db, policy, settings)
    cols = ", ".join(quote(c) for c in live_shape(db, policy).names)
    live, archive = qualified(policy.schema_name, policy.live_table), qualified(policy.schema_name,
                                                                                policy.archive_table)
    sql = (f"WITH m AS (DELETE FROM {live} l WHERE {stmts.elig.sql} RETURNING {cols})"
           f" INSERT INTO {archive} ({cols}, {', '.join(quote(c) for c in ARCHIVE_META)})"
           f" SELECT {cols}, now(), :by, :reason, NULL FROM m")
    started = time.perf_counter()
    with db.transaction():
        db.run(sql, by=policy.archived_by, reason="bench limit", **stmts.params)
        rows = db.row_count
    return Moved(rows, time.perf_counter() - started)


def run_row_by_row(db: Database, policy: Policy, settings: Settings, sample: int, per_tx: int = 1000) -> Moved:
    """Seed 001's pseudocode: fetch a batch, then per customer one INSERT and one DELETE, a log
    row per batch, one transaction per batch. The batch is chosen by the same eligibility as the
    job (so no foreign key fails; the seed's per-row try/catch would need a savepoint per row in
    PostgreSQL, which would only make it slower)."""
    stmts = _statements(db, policy, settings)
    shape = live_shape(db, policy)
    names = shape.names
    live, archive = qualified(policy.schema_name, policy.live_table), qualified(policy.schema_name,
                                                                                policy.archive_table)
    log = qualified(policy.schema_name, policy.log_table)
    select = f"SELECT {', '.join('l.' + quote(c) for c in names)} FROM {live} l WHERE {stmts.elig.sql} LIMIT :n"
    insert = (f"INSERT INTO {archive} ({', '.join(quote(c) for c in names)}, archived_at, archived_by,"
              f" archive_reason) VALUES ({', '.join(f':c{i}' for i in range(len(names)))}, now(), :by, :reason)")
    delete = f"DELETE FROM {live} WHERE {quote(shape.pk)} = :k"
    write_log = (f"INSERT INTO {log} (job_id, policy_key, state, records_archived, batch_size, trigger)"
                 " VALUES (CAST(:j AS uuid), :p, 'succeeded', :a, :n, 'row-by-row')")
    pk_at = names.index(shape.pk)
    moved = 0
    started = time.perf_counter()
    while moved < sample:
        with db.transaction():
            rows = db.run(select, n=min(per_tx, sample - moved), **stmts.params)
            for row in rows:
                db.run(insert, by=policy.archived_by, reason=policy.archive_reason,
                       **{f"c{i}": v for i, v in enumerate(row)})
                db.run(delete, k=row[pk_at])
            db.run(write_log, j=str(uuid.uuid4()), p=policy.key, a=len(rows), n=per_tx)
        if not rows:
            break
        moved += len(rows)
    return Moved(moved, time.perf_counter() - started)
