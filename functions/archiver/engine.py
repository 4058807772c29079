"""The archiving engine's run loop: set-based, keyset-paged batches, one transaction each.

A batch locks the next eligible rows after the run's cursor (skipping rows the application
holds), moves them to the archive in one statement, and records the counters and the new
cursor in the job row, all in one transaction: the tables and the counts never disagree,
and a crash at any point leaves the state of the last committed batch. The statements are built
in ``statements.py``, the batch size and the hop's time budget are steered in ``steering.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .catalogue import COLUMNS_SIGNATURE_SQL, TableShape, columns, has_index, live_shape, table_oids
from .config import Policy, Settings
from .db import Database
from .eligibility import Cutoffs, pin_cutoffs
from .exceptions import ColumnsChangedError, HopLimitError, LeaseLostError, SchemaError
from .jobs import Job, JobStore
from .migration import ARCHIVE_META, RELATED_META, MigrationReport, related_archive_name, sync_archive_table
from .observability import NullMetrics, RunMetrics, logger
from .partitions import partition_moves
from .related import RelatedGraph, Table, preflight, related_graph
from .replicas import LagReader, replay_lag_reader, wait_for_replicas
from .statements import SKIP_ROOM, Columns, Locked, OneStatementBatch, Rechecked, Statements, only_the_row
from .states import RunState
from .steering import Steering, hands_over, kept_back_ms


class Budget(Protocol):
    def remaining_ms(self) -> float: ...


class Unlimited:
    def remaining_ms(self) -> float:
        return float("inf")


@dataclass
class HopOutcome:
    """What one worker invocation did: finished the job, must continue in a new hop, or nothing."""

    status: str  # done | continue | paused | ignored
    job: Job | None
    next_hop: int | None = None
    reason: str | None = None
    batches: int = 0
    archived: int = 0
    batch_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class BatchResult:
    locked: int
    moved: int
    failed: int
    ms: float


MAX_REPREPARES = 3  # in a row: a table whose columns change under every batch stops the run



class Archiver:
    """Runs archive jobs of one policy against one database."""

    def __init__(self, db: Database, policy: Policy, settings: Settings,
                 metrics: RunMetrics | None = None, replica_lag: LagReader | None = None) -> None:
        self.db = db
        self.replica_lag = replica_lag or replay_lag_reader(db)
        self.policy = policy
        self.settings = settings
        db.use_timezone(policy.timezone)  # the cutoffs' "N days" are the policy's calendar days
        self.jobs = JobStore(db, policy)
        self.metrics = metrics or NullMetrics()
        self._shape: TableShape | None = None
        self._related: RelatedGraph | None = None
        self._related_columns: dict[Table, tuple[str, ...]] = {}
        self._columns = Columns([], "")

    # -- preparation -------------------------------------------------------------------
    def prepare(self) -> None:
        """Check the schema and the policy against the database before anything moves.

        Brings a drifted archive table up to the live columns; refuses a policy that a
        foreign key would break half-way (SchemaError).
        """
        report = MigrationReport()
        related = related_graph(self.db, self.policy)
        # The columns signature is read before the shapes: if a column comes in between, the first
        # batch sees a difference and prepares again, instead of moving rows without it.
        named = [(self.policy.schema_name, self.policy.live_table)]
        if self.policy.related_mode == "move":
            named += list(related.tables)
        tables = table_oids(self.db, named)
        signature = str(self.db.scalar(COLUMNS_SIGNATURE_SQL, sig_rels=tables))
        sync_archive_table(self.db, self.policy.schema_name, self.policy.live_table,
                           self.policy.archive_table, ARCHIVE_META, report)
        if report.added_columns:
            logger.info("archive table follows live table", extra={"added_columns": report.added_columns})
        shape = live_shape(self.db, self.policy)
        preflight(self.db, self.policy, related)
        related_columns: dict[Table, tuple[str, ...]] = {}
        if self.policy.related_mode == "move":
            for schema, table in related.tables:
                sync_archive_table(self.db, schema, table, related_archive_name(self.policy, table),
                                   RELATED_META, report)
                related_columns[(schema, table)] = tuple(c.name for c in columns(self.db, schema, table))
        # Only a complete preparation counts: if the connection dies half-way, the retry
        # prepares again instead of building batches without the related tables.
        self._shape, self._related, self._related_columns = shape, related, related_columns
        self._columns = Columns(tables, signature)

    def statements(self, cutoffs: Cutoffs, job_id: str | None = None) -> Statements:
        """The run's statements; ``job_id`` is the run whose archived rows still hold back the rows
        they reference (see ``Eligibility``)."""
        if self._shape is None or self._related is None:
            self.prepare()
        assert self._shape is not None and self._related is not None
        stmts = Statements(self.policy, self._shape, self._related, cutoffs, self._related_columns, self._columns,
                           self.jobs, job_id)
        self.db.prepare(*stmts.per_batch)
        return stmts

    def count_eligible(self, stmts: Statements | None = None) -> int:
        """Rows a run would move now (with a run's statements: under its pinned cutoffs)."""
        stmts = stmts or self.statements(pin_cutoffs(self.db, self.policy))
        return int(self.db.scalar(stmts.count, **stmts.params))

    # -- starting ----------------------------------------------------------------------
    def start(self, *, dry_run: bool = False, fixed_batch_size: int | None = None, trigger: str = "manual",
              scheduled_for: Any = None, max_replica_lag: float | None = None) -> Job:
        """Create the run with its cutoffs pinned now. Raises AlreadyRunningError.

        ``fixed_batch_size`` (``archiver run --batch-size``, ``POST /runs`` ``batch_size``): every batch
        of the run that size, no steering. Without it the run starts at the policy's ``batch_size`` and
        steers toward ``target_batch_ms`` (``steering.Steering``); with a target of 0, every batch is the
        policy's ``batch_size``. The run log's ``batch_size`` holds the fixed or the starting size."""
        self.prepare()
        cutoffs = pin_cutoffs(self.db, self.policy)
        options = {
            "cutoffs": cutoffs.to_json(), "retention_days": self.policy.retention_days,
            "retention_by_lob": self.policy.retention_by_lob, "related_mode": self.policy.related_mode,
            "rules": list(self.policy.rules.enabled), "archived_by": self.policy.archived_by,
            "archive_reason": self.policy.archive_reason,
            "adaptive": fixed_batch_size is None and self.settings.target_batch_ms > 0,
            "target_batch_ms": self.settings.target_batch_ms,
            "max_replica_lag": self.settings.max_replica_lag if max_replica_lag is None else max_replica_lag,
        }
        return self.jobs.create(dry_run=dry_run, batch_size=fixed_batch_size or self.policy.batch_size,
                                trigger=trigger, scheduled_for=scheduled_for, cutoff=cutoffs.default,
                                options=options)

    # -- working -----------------------------------------------------------------------
    def run_hop(self, job_id: str, *, owner: str, hop: int | None, budget: Budget | None = None,
                max_batches: int | None = None, on_batch: Callable[[Job, BatchResult], None] | None = None,
                stop_for: Callable[[], str | None] | None = None) -> HopOutcome:
        """Claim the job and work batch after batch until done, out of time, or bounded.

        ``stop_for``, asked before each batch, gives a reason to pause there (the run's night is over):
        the job stays active with its lease released, and the next trigger resumes it."""
        budget = budget or Unlimited()
        job = self.jobs.claim(job_id, owner, self.settings.lease_seconds, hop)
        if job is None:
            current = self.jobs.get(job_id)
            reason = ("finished" if not current.active else
                      f"leased to another worker (hop {current.hop}, next {current.next_hop})")
            logger.info("job not claimed", extra={"reason": reason, "hop": hop})
            return HopOutcome("ignored", current, reason=reason)
        logger.append_keys(job_id=job.id)
        if job.hop > self.settings.max_hops:
            error = HopLimitError(job.id, job.hop, self.settings.max_hops)
            self.jobs.fail(job.id, owner, str(error))
            raise error
        try:
            if job.cancel_requested:
                return HopOutcome("done", self.jobs.finish(job.id, owner, RunState.CANCELLED, "cancelled on request"))
            stmts = self.statements(Cutoffs.from_json(job.options["cutoffs"]), job.id)
            if job.dry_run:
                return HopOutcome("done", self._dry_run(job, owner, stmts))
            if job.eligible is None:
                self.jobs.set_eligible(job.id, owner, self.count_eligible(stmts))
            return self._loop(job, owner, stmts, budget, max_batches, on_batch, stop_for)
        except LeaseLostError as exc:
            logger.warning("lease lost, stopping", extra={"reason": str(exc)})
            return HopOutcome("ignored", self.jobs.get(job_id), reason="lease lost")

    def _loop(self, job: Job, owner: str, stmts: Statements, budget: Budget, max_batches: int | None,
              on_batch: Callable[[Job, BatchResult], None] | None,
              stop_for: Callable[[], str | None] | None = None) -> HopOutcome:
        outcome = HopOutcome("continue", job)
        slowest = float(job.slowest_batch_ms or 0)
        size = int(job.batch_size)  # the run's fixed size, or where its steering starts ("adaptive")
        target = float(job.options.get("target_batch_ms") or 0) if job.options.get("adaptive") else 0.0
        steering = Steering(target)
        reprepared = 0
        wholes = partition_moves(self.db, self.policy, self.jobs, self.settings.lease_seconds, self._shape,
                                 self._related is not None and only_the_row(self.policy, self._related))
        while True:
            reason = stop_for() if stop_for is not None else None
            if reason or (max_batches is not None and outcome.batches >= max_batches):
                self.jobs.release(job.id, owner, reason)
                outcome.status, outcome.job, outcome.reason = "paused", self.jobs.get(job.id), reason
                return outcome
            if hands_over(self.settings, budget.remaining_ms(), slowest, outcome.batches):
                nxt = int(job.hop) + 1
                if not self.jobs.handoff(job.id, owner, nxt, self.settings.lease_seconds):
                    raise LeaseLostError("lease lost before hand-off")
                outcome.next_hop, outcome.job = nxt, self.jobs.get(job.id)
                return outcome
            try:
                whole = wholes.move(job, owner, stmts, budget.remaining_ms()) if wholes else None  # partitions.py
                result, job = ((BatchResult(whole.rows, whole.rows, 0, whole.ms), whole.job) if whole
                               else self._batch(job, owner, stmts, size))
            except ColumnsChangedError:  # rolled back: nothing moved with the old column list
                reprepared += 1
                if reprepared > MAX_REPREPARES:
                    raise SchemaError("the tables' columns changed under every batch; the run stops"
                                      " with nothing moved since the last committed batch") from None
                logger.info("columns changed during the run: building the statements again")
                self.prepare()
                stmts = self.statements(Cutoffs.from_json(job.options["cutoffs"]), job.id)
                continue
            reprepared = 0
            if result is None:  # cancelled
                outcome.status = "done"
                outcome.job = self.jobs.finish(job.id, owner, RunState.CANCELLED, "cancelled on request")
                return outcome
            slowest = max(slowest, result.ms)
            # A short batch says nothing about the cost, nor does a whole partition's move.
            if target and whole is None and result.locked == size:
                size = steering.next(size, result.ms)
            outcome.batches += 1
            outcome.archived += result.moved
            outcome.batch_ms.append(result.ms)
            self.metrics.batch(result.ms, result.moved)
            if on_batch is not None:
                on_batch(job, result)
            if result.locked == 0:
                state = RunState.PARTIAL if job.records_failed else RunState.SUCCEEDED
                msg = (f"archived {job.records_archived} rows" +
                       (f"; {job.records_failed} rows left live: their id is already in the archive"
                        if job.records_failed else ""))
                outcome.status, outcome.job = "done", self.jobs.finish(job.id, owner, state, msg)
                return outcome
            self._pause(budget, slowest, float(job.options.get("max_replica_lag", self.settings.max_replica_lag)))

    def _pause(self, budget: Budget, slowest: float, max_replica_lag: float) -> None:
        """Idle between batches (the batch has committed: no row is held), unless the hop is about
        to hand over anyway; then, while a standby's replay lag is above ``max_replica_lag`` seconds,
        wait for it, within the same part of the hop's budget."""
        pause = self.settings.batch_pause_ms
        if pause and budget.remaining_ms() - pause >= kept_back_ms(self.settings, slowest):
            time.sleep(pause / 1000)
        waited = wait_for_replicas(self.replica_lag, max_replica_lag,
                                   lambda: budget.remaining_ms() - kept_back_ms(self.settings, slowest))
        if waited:
            logger.info("waited for standbys to replay", extra={"waited_s": waited, "max_replica_lag": max_replica_lag})

    def _batch(self, job: Job, owner: str, stmts: Statements, size: int) -> tuple[BatchResult | None, Job]:
        """One batch in one transaction: begin, lock (the job row, then the rows), move and count
        (move mode: re-check, then related rows, then the rows), commit. ``job`` is this worker's
        latest copy of the job row: while the lease is ours nobody else moves its cursor, and the
        lock statement checks that it is."""
        started = time.perf_counter()
        lease = {"job": job.id, "owner": owner}  # lease_gate's parameters
        cursor = job.cursor_row
        if stmts.single:
            return self._batch_single(job, owner, stmts, size, started)
        with self.db.transaction():
            if cursor is None:
                rows = self.db.rows(stmts.lock_first, n=size, **lease, **stmts.params)
            else:
                rows = self.db.rows(stmts.lock_next, n=size, cur=cursor, **lease, **stmts.params)
            found = Locked.from_row(rows[0])  # an aggregate: one row, always
            if not found.ours:
                raise LeaseLostError(f"job {job.id} is no longer leased to this worker")
            if found.cancel:
                return None, job
            if found.signature != stmts.signature:
                raise ColumnsChangedError("columns changed since the statements were built")
            locked = int(found.locked)
            record = self.jobs.record_params(job.id, owner, cursor=found.last,
                                             lease_seconds=self.settings.lease_seconds)
            span = {"last": found.last, "m": SKIP_ROOM * size, **({"cur": cursor} if cursor is not None else {})}
            first = cursor is None
            if not locked:
                moved, failed, after = 0, 0, self.jobs.record_batch({**record, "failed": 0})
            elif not stmts.recheck:
                moved, failed, after = self.jobs.recorded(job.id, self.db.row(
                    stmts.move_first if first else stmts.move_next, by=self.policy.archived_by,
                    reason=self.policy.archive_reason, **span, **record, **stmts.params))
            else:
                rows = self.db.rows(stmts.recheck[0 if first else 1], **span, **stmts.params)
                checked = Rechecked.from_row(rows[0])  # an aggregate: one row, always
                failed = checked.held
                if checked.moving:
                    for sql in stmts.move_related:
                        self.db.run(sql, job=job.id, **checked.keys)
                    moved, _, after = self.jobs.recorded(job.id, self.db.row(
                        stmts.move_first, by=self.policy.archived_by, reason=self.policy.archive_reason,
                        failed=failed, **checked.keys, **record, **stmts.params))
                else:
                    moved, after = 0, self.jobs.record_batch({**record, "failed": failed})
        return BatchResult(locked, moved, failed, (time.perf_counter() - started) * 1000), after

    def _batch_single(self, job: Job, owner: str, stmts: Statements, size: int,
                      started: float) -> tuple[BatchResult | None, Job]:
        """One batch in one statement (``Statements.single``): begin, the batch, commit."""
        cursor = job.cursor_row
        params = {"n": size, "job": job.id, "owner": owner, "sig": stmts.signature, "by": self.policy.archived_by,
                  "reason": self.policy.archive_reason, "lease": self.settings.lease_seconds, **stmts.params}
        with self.db.transaction():
            if cursor is None:
                row = self.db.row(stmts.single[0], **params)
            else:
                row = self.db.row(stmts.single[1], cur=cursor, **params)
            assert row is not None  # one row, always (n CROSS JOIN s)
            found = OneStatementBatch.take(row)  # the rest of the row is the job row
            if not found.ours:
                raise LeaseLostError(f"job {job.id} is no longer leased to this worker")
            if found.cancel:
                return None, job
            if not found.same:
                raise ColumnsChangedError("columns changed since the statements were built")
            moved, failed, after = self.jobs.recorded(job.id, row if row.get("job_id") else None)
        return BatchResult(int(found.locked), moved, failed, (time.perf_counter() - started) * 1000), after

    def _dry_run(self, job: Job, owner: str, stmts: Statements) -> Job | None:
        count = self.count_eligible(stmts)
        by_lob = {}
        if stmts.breakdown:
            by_lob = {str(k): int(v) for k, v in self.db.run(stmts.breakdown, **stmts.params)}
        warnings = self._plan_warnings(stmts, job.id, owner)
        self.jobs.set_eligible(job.id, owner, count, {"by_line_of_business": by_lob, "warnings": warnings})
        msg = f"dry run: {count} rows would be archived" + (f"; {'; '.join(warnings)}" if warnings else "")
        return self.jobs.finish(job.id, owner, RunState.SUCCEEDED, msg)

    def _plan_warnings(self, stmts: Statements, job_id: str, owner: str) -> list[str]:
        plan = self.db.scalar(stmts.explain, n=int(self.policy.batch_size), job=job_id, owner=owner, **stmts.params)
        if isinstance(plan, str):
            plan = json.loads(plan)
        found: list[str] = []

        def walk(node: dict[str, Any]) -> None:
            if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") == self.policy.live_table:
                found.append(f"the batch query scans the whole table {self.policy.live_table}")
            for child in node.get("Plans", []):
                walk(child)

        walk(plan[0]["Plan"])
        if not found:
            return []
        assert self._shape is not None
        index = tuple(c.name for c in self._shape.walk)
        advice = (f"run 'archiver migrate' to create the index on ({', '.join(index)})"
                  if not has_index(self.db, self.policy.schema_name, self.policy.live_table, index) else
                  "the index exists but the planner prefers a full scan: ANALYZE the table if its statistics"
                  " are stale (on a small table a full scan can be right)")
        return [f"{found[0]}: {advice}"]
