"""The archiving engine: set-based, keyset-paged batches, one transaction each.

A batch locks the next eligible rows after the run's cursor (skipping rows the application
holds), moves them to the archive in one statement, and records the counters and the new
cursor in the job row, all in one transaction: the tables and the counts never disagree,
and a crash at any point leaves the state of the last committed batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .config import Policy, Settings
from .db import Database
from .eligibility import Cutoffs, Eligibility, pin_cutoffs
from .exceptions import ColumnsChangedError, HopLimitError, LeaseLostError, SchemaError
from .identifiers import qualified, quote
from .jobs import Job, JobStore
from .observability import NullMetrics, RunMetrics, logger
from .partitions import partition_moves
from .related import RelatedGraph, Table, lock_moving_sql, move_rows_sql, preflight, related_graph
from .replicas import LagReader, replay_lag_reader, wait_for_replicas
from .schema import (
    ARCHIVE_META,
    COLUMNS_SIGNATURE_SQL,
    MigrationReport,
    TableShape,
    columns,
    has_index,
    live_shape,
    related_archive_name,
    sync_archive_table,
    table_oids,
)


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


class Statements:
    """The SQL of one policy against the live table's current shape, built once per hop.

    A batch is two statements (move mode: three, and the related tables' lock and move statements),
    and no row's key crosses the wire: the lock statement locks the next rows and returns the last
    one's keyset row (the cursor) as text; the move statement finds the rows between the old cursor
    and that one again (the ones this transaction holds: SKIP LOCKED), re-checks them under its
    own, fresh snapshot and moves them.
    """

    def __init__(self, policy: Policy, shape: TableShape, related: RelatedGraph, cutoffs: Cutoffs,
                 related_columns: dict[Table, tuple[str, ...]], columns: Columns, jobs: JobStore,
                 job_id: str | None = None) -> None:
        live = qualified(policy.schema_name, policy.live_table)
        archive = qualified(policy.schema_name, policy.archive_table)
        self.elig = Eligibility(policy, shape, related, cutoffs, job_id)
        self.params = {**self.elig.params, "sig_rels": columns.tables}
        self.signature = columns.signature
        self.key_width = len(shape.key)
        cols = ", ".join(quote(c) for c in shape.names)
        walk = ", ".join(f"l.{quote(c.name)}" for c in shape.walk)
        # The cursor is the keyset row's text, each value cast back to its column's type: compared as
        # a row, exactly in the index's order (a timestamp is never turned into a timestamptz).
        def row_of(param: str) -> str:
            return "(" + ", ".join(f"CAST((CAST(:{param} AS text[]))[{i}] AS {c.type})"
                                   for i, c in enumerate(shape.walk, 1)) + ")"
        after, upto = f"({walk}) > {row_of('cur')}", f"({walk}) <= {row_of('last')}"
        last = ("SELECT ARRAY[" + ", ".join(f"CAST(b.{quote(c.name)} AS text)" for c in shape.walk) + "] FROM b"
                " ORDER BY " + ", ".join(f"b.{quote(c.name)} DESC" for c in shape.walk) + " LIMIT 1")
        # Two variants rather than "(:cur IS NULL OR ...)", which would hide the bound from the index.
        # The statement first locks the job row (jobs.lease_gate: a one-time filter, evaluated before
        # the scan locks any row) and locks no row unless the lease is ours and no cancel is asked.
        # Returns (count, last keyset row, columns, ours, cancel); the columns signature is read
        # after the rows are locked (see COLUMNS_SIGNATURE_SQL).
        lock = (f"WITH {jobs.lease_gate}, b AS (SELECT {walk} FROM {live} l"
                f" WHERE (SELECT ours AND NOT cancel FROM j) AND {{where}}"
                f" ORDER BY {walk} LIMIT :n FOR UPDATE OF l SKIP LOCKED)"
                f" SELECT count(*), ({last}), ({COLUMNS_SIGNATURE_SQL}), (SELECT ours FROM j), (SELECT cancel FROM j)"
                " FROM b")
        self.lock_first = lock.format(where=self.elig.sql)
        self.lock_next = lock.format(where=f"{after} AND {self.elig.sql}")
        # The rows the lock statement took, found again: SKIP LOCKED passes over rows another
        # transaction holds (ours are not), and the predicate is re-checked under this statement's
        # snapshot, taken after the rows were locked. ``h``: their keys the archive already holds
        # (probed through the archive key's first column, an index scan whatever the plan): those
        # rows stay live, counted as failed; nothing is overwritten.
        first_key = quote(shape.key[0].name)

        def held(rows: str) -> str:
            return (f"h AS (SELECT {shape.key_list('a')} FROM {archive} a"
                    f" WHERE a.{first_key} = ANY(ARRAY(SELECT {rows}.{first_key} FROM {rows}))"
                    + (f" AND ({shape.key_list('a')}) IN (SELECT {shape.key_list(rows)} FROM {rows})"
                       if self.key_width > 1 else "") + ")")

        def free(rows: str) -> str:
            return f"NOT EXISTS (SELECT 1 FROM h WHERE {shape.key_equal('h', rows)})"

        def pick(rows: str) -> str:
            """The DELETE takes its rows by their ctid, a TID scan whatever the key (on a partitioned
            table, ctids repeat across partitions: with the partition's oid)."""
            return (f"x.ctid = ANY(ARRAY(SELECT {rows}.c FROM {rows} WHERE {free(rows)}))"
                    + (f" AND (x.tableoid, x.ctid) IN (SELECT {rows}.t, {rows}.c FROM {rows} WHERE {free(rows)})"
                       if shape.partitioned else ""))

        # ORDER BY and LIMIT as in the lock statement, though the range bounds the rows: on the
        # range's estimate alone (a row comparison: a third of the table) the planner hash-joined
        # full scans of the related tables into every batch, a cost that grows with those tables,
        # and the steering then shrank the batches to a row each. The limit leaves room for rows
        # the lock statement skipped and that are free by now (SKIP_ROOM).
        def found(where: str, what: str) -> str:
            return (f"r AS (SELECT {what} FROM {live} l WHERE {where} AND {upto} AND {self.elig.sql}"
                    f" ORDER BY {walk} LIMIT :m FOR UPDATE OF l SKIP LOCKED)")

        self.move_related: list[str] = []
        if policy.related_mode == "move" and related.tables:
            # The batch's keys, any width: the re-check's text arrays, one per key column.
            keys = shape.key_arrays("k")

            def in_batch(alias: str) -> str:
                return f"({shape.key_list(alias)}) IN ({keys})"

            # Top down, lock the rows others hang from; then move, deepest table first.
            self.move_related += [lock_moving_sql(related, t, in_batch) for t in related.tables
                                  if related.has_children(t)]
            self.move_related += [
                move_rows_sql(related, t, (t[0], related_archive_name(policy, t[1])), related_columns[t], in_batch)
                for t in reversed(related.tables)]
        insert = (f" i AS (INSERT INTO {archive} ({cols}, {', '.join(quote(c) for c in ARCHIVE_META)})"
                  f" SELECT {cols}, now(), :by, :reason, CAST(:job AS uuid) FROM m RETURNING 1)")
        self.recheck: tuple[str, ...] = ()  # move mode: (first batch, after the cursor)
        if self.move_related:
            # Related rows must move first (foreign keys), in statements of their own: the re-check
            # returns the keys to move, one text array per key column, and the rows left live.
            self.recheck = tuple(
                f"WITH {found(where, shape.key_list('l'))}, {held('r')}"
                " SELECT " + ", ".join(f"CAST(array_agg(r.{quote(c.name)}) FILTER (WHERE {free('r')}) AS text[])"
                                       for c in shape.key) + ", (SELECT count(*) FROM h) FROM r"
                for where in ("true", after))
            self.move_first = self.move_next = (
                f"WITH m AS (DELETE FROM {live} x WHERE ({shape.key_list('x')}) IN ({keys}) RETURNING {cols}),"
                f"{insert}, u AS ({jobs.record_from('i')}) SELECT * FROM u")
        else:
            # One statement finds, re-checks and moves the rows, and counts the batch in the job row
            # (jobs.record_from); returns that row. Written straight into the DELETE, the checks
            # made the planner hash-join full scans of the related tables.
            what = f"l.tableoid AS t, l.ctid AS c, {shape.key_list('l')}"
            self.move_first, self.move_next = (
                f"WITH {found(where, what)}, {held('r')},"
                f" m AS (DELETE FROM {live} x WHERE {pick('r')} RETURNING {cols}),"
                f"{insert}, u AS ({jobs.record_from('i', 'h')}) SELECT * FROM u"
                for where in ("true", after))
        # When eligibility reads nothing but the live row (no rule, no related table it depends on, no
        # reference of the table to itself: that reads other live rows and the archive), the lock's own
        # re-check (FOR UPDATE re-evaluates the row's conditions on its latest version) is all the
        # re-check there is to do, and no foreign key points at the table: the whole batch is one
        # statement. Its DELETE and job-row update wait for the signature, read once the rows
        # are locked (``n`` scans ``b`` to the end first); a mismatch moves nothing and the client
        # rolls back. Returns the lock's findings (batch_*) and the job row, NULL unless it counted.
        self.single: tuple[str, ...] = ()
        if only_the_row(policy, related):
            go = "(SELECT ours AND NOT cancel FROM j) AND (SELECT same FROM s)"
            self.single = tuple(
                f"WITH {jobs.lease_gate}, b AS (SELECT l.tableoid AS t, l.ctid AS c, {walk} FROM {live} l"
                f" WHERE (SELECT ours AND NOT cancel FROM j) AND {where}"
                f" ORDER BY {walk} LIMIT :n FOR UPDATE OF l SKIP LOCKED),"
                f" n AS (SELECT count(*) AS locked, ({last}) AS last FROM b),"
                f" s AS (SELECT ({COLUMNS_SIGNATURE_SQL}) = :sig AS same FROM n), {held('b')},"
                f" m AS (DELETE FROM {live} x WHERE (SELECT same FROM s) AND {pick('b')} RETURNING {cols}),"
                f"{insert}, u AS ({jobs.record_from('i', 'h', cursor='(SELECT last FROM n)', guard=go)})"
                " SELECT n.locked AS batch_locked, s.same AS batch_same, (SELECT ours FROM j) AS batch_ours,"
                " (SELECT cancel FROM j) AS batch_cancel, u.* FROM n CROSS JOIN s LEFT JOIN u ON true"
                for where in (self.elig.sql, f"{after} AND {self.elig.sql}"))
        self.count = f"SELECT count(*) FROM {live} l WHERE {self.elig.sql}"
        lob = quote(policy.lob_column)
        has_lob = policy.lob_column in shape.names
        self.breakdown = (
            f"SELECT COALESCE(CAST(l.{lob} AS text), '(none)'), count(*) FROM {live} l WHERE {self.elig.sql}"
            " GROUP BY 1 ORDER BY 1" if has_lob else None)
        self.explain = "EXPLAIN (FORMAT JSON) " + self.lock_first
        # What every batch sends, to prepare once per session (Database.prepare).
        self.per_batch = tuple(dict.fromkeys(
            self.single or (self.lock_first, self.lock_next, *self.recheck, self.move_first, self.move_next,
                            *self.move_related)))


def only_the_row(policy: Policy, related: RelatedGraph) -> bool:
    """Eligibility reads nothing but the live row (``Statements.single``): no rule, no reference of
    the table to itself, and no related table it depends on (``keep`` reads none of them; a foreign
    key from another table is refused in ``keep`` mode, see ``related.preflight``)."""
    return (not policy.rules.enabled and not related.self_links
            and not (policy.related_mode in ("skip", "move") and related.links))


MAX_BATCH_SIZE = 10000
SKIP_ROOM = 2  # the move statement's limit, in batch sizes (see Statements.found)
MAX_REPREPARES = 3  # in a row: a table whose columns change under every batch stops the run


@dataclass(frozen=True)
class Columns:
    """The tables a run's statements name columns of (their oids), and those columns' signature."""

    tables: list[int]
    signature: str


def kept_back_ms(settings: Settings, slowest_ms: float) -> float:
    """What a hop keeps back from its time budget: twice its slowest batch so far, plus the reserve.
    Below it the hop hands over (``hands_over``); a pause between batches may not eat into it."""
    return 2 * slowest_ms + settings.reserve_ms


def hands_over(settings: Settings, remaining_ms: float, slowest_ms: float, batches: int) -> bool:
    """Whether a hop with ``batches`` done so far stops here and hands over to the next. It keeps
    ``kept_back_ms`` back, but moves at least one batch when one fits (the slowest plus the reserve):
    after one slow batch, hops that handed over empty-handed would follow each other up to max_hops."""
    if batches == 0 and remaining_ms >= slowest_ms + settings.reserve_ms:
        return False
    return remaining_ms < kept_back_ms(settings, slowest_ms)


def next_batch_size(size: int, ms: float, target_ms: float) -> int:
    """Steer the batch size toward ``target_ms`` per batch: at most doubling or halving at a time,
    so one slow batch (a checkpoint, a busy neighbour) cannot swing it far."""
    wanted = int(size * target_ms / max(ms, 0.1))
    return max(1, min(MAX_BATCH_SIZE, size * 2, max(size // 2, wanted)))


# A batch costs a fixed part (round trips, planning, the commit) plus a part per row. Steering
# toward the target never shrinks a batch so far that the fixed part is more than a quarter of it.
ROWS_PER_FIXED = 3.0
MAX_STRETCH = 3.0  # ... nor stretches a batch past this many times the target for it
DISTINCT_SIZES = 1.5  # two batches this far apart in size tell the fixed part from the rows' part


@dataclass
class Steering:
    """The adaptive batch size of one hop: toward ``target_ms`` per batch (``next_batch_size``),
    but not below the size where the batch's fixed cost would dominate.

    Without that floor, a fixed cost near the target (the Phase-2 rules plan ten anti-joins for
    every batch, ~7 ms) shrank batches to a single row, each still taking the fixed cost: the run
    crawled at a tenth of its speed. The fixed part is estimated from consecutive batches whose
    sizes differ enough (``ms = fixed + per_row * size``), never above either batch's own time;
    a disturbed batch skews one estimate, the average with the next halves the error. Costs are
    not quite linear (larger batches cost less a row), so the estimate runs high: the floor never
    stretches a batch past MAX_STRETCH times the target.
    """

    target_ms: float
    fixed_ms: float = 0.0
    _last: tuple[int, float] | None = field(default=None, init=False, repr=False)

    def next(self, size: int, ms: float) -> int:
        if self._last is not None:
            size0, ms0 = self._last
            if max(size, size0) >= DISTINCT_SIZES * min(size, size0):
                per_row = (ms - ms0) / (size - size0)
                if per_row > 0:
                    estimate = min(max(0.0, ms - per_row * size), ms, ms0)
                    self.fixed_ms = estimate if not self.fixed_ms else (self.fixed_ms + estimate) / 2
        self._last = (size, ms)
        wanted = next_batch_size(size, ms, self.target_ms)
        if self.fixed_ms and ms > self.fixed_ms:
            floor = int(ROWS_PER_FIXED * self.fixed_ms * size / (ms - self.fixed_ms))
            stretched = int(size * MAX_STRETCH * self.target_ms / ms)
            wanted = max(wanted, min(floor, stretched, size * 2, MAX_BATCH_SIZE))
        return wanted


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
            from .schema import RELATED_META
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
    def start(self, *, dry_run: bool = False, batch_size: int | None = None, trigger: str = "manual",
              scheduled_for: Any = None, max_replica_lag: float | None = None) -> Job:
        """Create the run with its cutoffs pinned now. Raises AlreadyRunningError."""
        self.prepare()
        cutoffs = pin_cutoffs(self.db, self.policy)
        options = {
            "cutoffs": cutoffs.to_json(), "retention_days": self.policy.retention_days,
            "retention_by_lob": self.policy.retention_by_lob, "related_mode": self.policy.related_mode,
            "rules": list(self.policy.rules.enabled), "archived_by": self.policy.archived_by,
            "archive_reason": self.policy.archive_reason,
            "adaptive": batch_size is None and self.settings.target_batch_ms > 0,
            "target_batch_ms": self.settings.target_batch_ms,
            "max_replica_lag": self.settings.max_replica_lag if max_replica_lag is None else max_replica_lag,
        }
        return self.jobs.create(dry_run=dry_run, batch_size=batch_size or self.policy.batch_size,
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
                return HopOutcome("done", self.jobs.finish(job.id, owner, "cancelled", "cancelled on request"))
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
        size = int(job.batch_size)
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
                outcome.job = self.jobs.finish(job.id, owner, "cancelled", "cancelled on request")
                return outcome
            slowest = max(slowest, result.ms)
            if target and result.locked == size:  # a short batch says nothing about the cost
                size = steering.next(size, result.ms)
            outcome.batches += 1
            outcome.archived += result.moved
            outcome.batch_ms.append(result.ms)
            self.metrics.batch(result.ms, result.moved)
            if on_batch is not None:
                on_batch(job, result)
            if result.locked == 0:
                state = "partial" if job.records_failed else "succeeded"
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
                found = self.db.run(stmts.lock_first, n=size, **lease, **stmts.params)[0]
            else:
                found = self.db.run(stmts.lock_next, n=size, cur=cursor, **lease, **stmts.params)[0]
            count, last, signature, ours, cancel = found  # in Statements' order
            if not ours:
                raise LeaseLostError(f"job {job.id} is no longer leased to this worker")
            if cancel:
                return None, job
            if signature != stmts.signature:
                raise ColumnsChangedError("columns changed since the statements were built")
            locked = int(count)
            record = self.jobs.record_params(job.id, owner, cursor=last, lease_seconds=self.settings.lease_seconds)
            span = {"last": last, "m": SKIP_ROOM * size, **({"cur": cursor} if cursor is not None else {})}
            first = cursor is None
            if not locked:
                moved, failed, after = 0, 0, self.jobs.record_batch({**record, "failed": 0})
            elif not stmts.recheck:
                moved, failed, after = self.jobs.recorded(job.id, self.db.row(
                    stmts.move_first if first else stmts.move_next, by=self.policy.archived_by,
                    reason=self.policy.archive_reason, **span, **record, **stmts.params))
            else:
                *keys, held = self.db.run(stmts.recheck[0 if first else 1], **span, **stmts.params)[0]
                failed = int(held)
                if keys[0]:
                    params = {f"k{i}": values for i, values in enumerate(keys)}  # shape.key_arrays' parameters
                    for sql in stmts.move_related:
                        self.db.run(sql, job=job.id, **params)
                    moved, _, after = self.jobs.recorded(job.id, self.db.row(
                        stmts.move_first, by=self.policy.archived_by, reason=self.policy.archive_reason,
                        failed=failed, **params, **record, **stmts.params))
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
            locked, same, ours, cancel = (row.pop(k) for k in ("batch_locked", "batch_same", "batch_ours",
                                                                "batch_cancel"))
            if not ours:
                raise LeaseLostError(f"job {job.id} is no longer leased to this worker")
            if cancel:
                return None, job
            if not same:
                raise ColumnsChangedError("columns changed since the statements were built")
            moved, failed, after = self.jobs.recorded(job.id, row if row.get("job_id") else None)
        return BatchResult(int(locked), moved, failed, (time.perf_counter() - started) * 1000), after

    def _dry_run(self, job: Job, owner: str, stmts: Statements) -> Job | None:
        count = self.count_eligible(stmts)
        by_lob = {}
        if stmts.breakdown:
            by_lob = {str(k): int(v) for k, v in self.db.run(stmts.breakdown, **stmts.params)}
        warnings = self._plan_warnings(stmts, job.id, owner)
        self.jobs.set_eligible(job.id, owner, count, {"by_line_of_business": by_lob, "warnings": warnings})
        msg = f"dry run: {count} rows would be archived" + (f"; {'; '.join(warnings)}" if warnings else "")
        return self.jobs.finish(job.id, owner, "succeeded", msg)

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
