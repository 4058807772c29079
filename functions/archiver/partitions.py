"""Whole partitions: a leaf partition that lies entirely past the run's cutoff moves in one transaction.

When the live table is range-partitioned on the age column alone and eligibility reads nothing but the
row (``engine.only_the_row``: no rule, no related table, no reference of the table to itself), every
row of a partition whose upper bound is at or before the cutoff is eligible. Such a partition's rows
move with one ``INSERT … SELECT`` into the archive, counted in the job row by the same statement, and
the partition is emptied with ``TRUNCATE``: it stays attached (a restore puts rows back into it; the
user's partition tooling drops it). One transaction, like a batch: the job's lease gate first (the
job row locked, the lease ours, no cancel asked), then the partition locked ``ACCESS EXCLUSIVE`` with
a short ``lock_timeout``, the columns signature checked, the move, the ``TRUNCATE``, and the
partition's name and row count in the job's options. Whatever stops it (a crash, a lost connection)
leaves everything as it was. A partition the move cannot have now (locked by the application, a key
the archive already holds, too long for the hop) is left to the row batches, which move it as today.
See docs/decisions/whole-partition-moves.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

from .catalogue import COLUMNS_SIGNATURE_SQL, TableShape, columns
from .config import Policy
from .db import Database, expecting
from .eligibility import Cutoffs, age_bound
from .exceptions import (
    ColumnsChangedError,
    FeatureNotSupportedError,
    LeaseLostError,
    LockNotAvailableError,
    PermissionDeniedError,
    QueryCanceledError,
    ServerError,
    UndefinedTableError,
    UniqueViolationError,
)
from .identifiers import qualified, quote
from .jobs import Job, JobStore
from .migration import ARCHIVE_META
from .observability import logger

# How long the move waits for the partition's lock: an application transaction holding it wins, and
# queries that arrive meanwhile queue behind the request no longer than this.
LOCK_TIMEOUT_MS = 200
# A move may take at most this share of what is left of the hop: one that cannot finish in it rolls
# back and leaves the rest of the hop to the row batches, which make progress where it could not.
HOP_SHARE = 0.5
# Why a move gives way to the row batches (SQLSTATE): nothing has changed when they happen.
GIVES_WAY: dict[type[ServerError], str] = {
    LockNotAvailableError: "the partition is locked by another session",
    UniqueViolationError: "the archive already holds a key of the partition",
    QueryCanceledError: "the move would take longer than the hop allows",
    FeatureNotSupportedError: "a foreign key references the partition",
    UndefinedTableError: "the partition is gone",
    PermissionDeniedError: "the role may not lock or truncate the partition",
}

# The leaves (with the partition of the live table above each) under each partition whose range on
# the age column ends at or before the cutoff, oldest first. Only a range partitioning on the age
# column alone; the bound is read from the partition's definition (``FOR VALUES FROM (…) TO ('…')``,
# rendered in this session's time zone and date style, and cast back in the same session). MAXVALUE
# and DEFAULT partitions have no such bound; a partition partitioned in turn is judged by its own
# range (every leaf below lies within it); a leaf that is not a plain table, has a trigger of its own
# (TRUNCATE fires no row trigger), or that the job's role may not read and truncate directly (a grant
# on the parent covers only access through it) goes by batches. ``{age_type}`` and ``{cutoff}`` are
# filled in (``whole_leaves``).
_LEAVES_SQL = r"""
WITH ranged AS (
  SELECT c.oid,
         substring(pg_get_expr(c.relpartbound, c.oid) FROM '^FOR VALUES FROM \(.*\) TO \(''(.*)''\)$') AS upper
  FROM pg_partitioned_table pt
  JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
  JOIN pg_inherits i ON i.inhparent = pt.partrelid
  JOIN pg_class c ON c.oid = i.inhrelid
  WHERE pt.partrelid = CAST(:live AS regclass) AND pt.partstrat = 'r' AND pt.partnatts = 1 AND a.attname = :age)
SELECT n.nspname AS schema, c.relname AS name, tn.nspname AS top_schema, tc.relname AS top_name
FROM ranged r CROSS JOIN LATERAL pg_partition_tree(r.oid) t
JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class tc ON tc.oid = r.oid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
WHERE r.upper IS NOT NULL AND t.isleaf AND c.relkind = 'r'
  AND CAST(r.upper AS {age_type}) <= {cutoff}
  AND NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND NOT g.tgisinternal)
  AND has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(c.oid, 'TRUNCATE')
  AND has_table_privilege(r.oid, 'TRUNCATE')
ORDER BY CAST(r.upper AS {age_type}), c.relname"""

# The hop's share as this transaction's statement_timeout, never above the session's own (0: none).
_TIMEOUTS_SQL = (
    "SELECT set_config('lock_timeout', :lock, true), set_config('statement_timeout', CAST(CAST(LEAST("
    "CAST(:cap AS bigint), COALESCE(NULLIF(extract(epoch FROM CAST(current_setting('statement_timeout') AS interval))"
    " * 1000, 0), CAST(:cap AS bigint))) AS bigint) AS text), true)")

@dataclass(frozen=True)
class Leaf:
    """A leaf partition, and the partition of the live table it lies under (itself, unless that one is
    partitioned in turn)."""

    schema: str
    name: str
    top_schema: str
    top_name: str

    @property
    def table(self) -> str:
        return qualified(self.schema, self.name)

    @property
    def top(self) -> str:
        return qualified(self.top_schema, self.top_name)


@dataclass(frozen=True)
class Moved:
    """One partition moved: its rows, the transaction's time and the job row as it now is."""

    rows: int
    ms: float
    job: Job


class _Skip(Exception):
    """Nothing to move in this partition (any more): empty, or no longer wholly past the cutoff under
    the live table. Its transaction, if any, rolls back."""


class Signed(Protocol):
    """What a move needs of the run's statements (``engine.Statements``): the columns signature they
    were built from and its parameters (``sig_rels``)."""

    signature: str
    params: dict[str, Any]


def lowest_cutoff(cutoffs: Cutoffs) -> Any:
    """The cutoff every row of a partition meets, whatever its line of business: the earliest."""
    return min([cutoffs.default, *cutoffs.by_lob.values()])


def whole_leaves(db: Database, policy: Policy, age_type: str, cutoffs: Cutoffs) -> list[Leaf]:
    """The leaf partitions of the live table lying entirely past ``cutoffs``, oldest first; none when
    the table is not range-partitioned on the age column (of ``age_type``) alone. The bound meets the
    cutoff exactly as eligibility compares a row's age with it (``eligibility.age_bound``)."""
    sql = _LEAVES_SQL.format(age_type=age_type, cutoff=age_bound(age_type).format(":cut"))
    return [Leaf(r["schema"], r["name"], r["top_schema"], r["top_name"]) for r in db.rows(
        sql, live=qualified(policy.schema_name, policy.live_table), age=policy.age_column,
        cut=lowest_cutoff(cutoffs))]


def partition_moves(db: Database, policy: Policy, jobs: JobStore, lease_seconds: int, shape: TableShape | None,
                    only_the_row: bool) -> PartitionMoves | None:
    """The run loop's whole-partition moves, or None (no catalogue read at all) unless the live table is
    partitioned and eligibility reads only the row (``engine.only_the_row``)."""
    if shape is None or not shape.partitioned or not only_the_row:
        return None
    return PartitionMoves(db, policy, jobs, lease_seconds, shape.age.type)


class PartitionMoves:
    """The whole-partition moves of one hop: the leaves are found at the first call, one moves per call."""

    def __init__(self, db: Database, policy: Policy, jobs: JobStore, lease_seconds: int, age_type: str) -> None:
        self.db, self.policy, self.jobs, self.lease_seconds, self.age_type = db, policy, jobs, lease_seconds, age_type
        self._leaves: list[Leaf] | None = None
        self._cutoffs: Cutoffs | None = None

    def move(self, job: Job, owner: str, stmts: Signed, remaining_ms: float) -> Moved | None:
        """Move the next non-empty leaf past the run's cutoff whole; None when none is left (or a
        cancel was asked): the row batches go on from there."""
        if self._leaves is None:
            self._cutoffs = Cutoffs.from_json(job.options["cutoffs"])
            self._leaves = whole_leaves(self.db, self.policy, self.age_type, self._cutoffs)
        while self._leaves:
            leaf = self._leaves.pop(0)
            try:
                with expecting(LockNotAvailableError, UniqueViolationError, QueryCanceledError,
                               FeatureNotSupportedError):
                    moved = self._move(leaf, job, owner, stmts, remaining_ms * HOP_SHARE)
            except _Skip:
                continue
            except ColumnsChangedError:  # the run builds its statements again and comes back for it
                self._leaves.insert(0, leaf)
                raise
            except ServerError as exc:
                reason = next((why for cls, why in GIVES_WAY.items() if isinstance(exc, cls)), None)
                if reason is None:
                    raise
                logger.info("partition left to row batches", extra={"partition": leaf.name, "reason": reason})
                continue
            if moved is None:  # cancelled: the next batch's gate ends the run
                self._leaves = []
            return moved
        return None

    def _move(self, leaf: Leaf, job: Job, owner: str, stmts: Signed, limit_ms: float) -> Moved | None:
        if not self.db.scalar(f"SELECT EXISTS (SELECT 1 FROM ONLY {leaf.table})"):
            raise _Skip  # moved by an earlier hop, or never used: no lock taken for nothing
        started = time.perf_counter()
        archive = qualified(self.policy.schema_name, self.policy.archive_table)
        with self.db.transaction():
            gate = self.db.run(f"WITH {self.jobs.lease_gate} SELECT ours, cancel FROM j", job=job.id, owner=owner)
            if not gate or not gate[0][0]:
                raise LeaseLostError(f"job {job.id} is no longer leased to this worker")
            if gate[0][1]:
                return None
            cap = min(limit_ms, 2**31 - 1) if math.isfinite(limit_ms) else 2**31 - 1
            self.db.run(_TIMEOUTS_SQL, lock=f"{LOCK_TIMEOUT_MS}ms", cap=max(1, int(cap)))
            # The partition of the live table above the leaf, with everything under it: no DETACH can take
            # the leaf out of the live table until this transaction ends. Then check it is still in it,
            # still wholly past the cutoff (the catalogue, read after the lock).
            self.db.run(f"LOCK TABLE {leaf.top} IN ACCESS EXCLUSIVE MODE")
            assert self._cutoffs is not None
            if leaf not in whole_leaves(self.db, self.policy, self.age_type, self._cutoffs):
                raise _Skip
            # Read once the partition is locked: DDL on the live table waits for this transaction from here.
            same = self.db.scalar(f"SELECT ({COLUMNS_SIGNATURE_SQL}) = :sig", sig=stmts.signature,
                                  sig_rels=stmts.params["sig_rels"])
            if same is not True:
                raise ColumnsChangedError("columns changed since the statements were built")
            cols = ", ".join(quote(c.name) for c in columns(self.db, self.policy.schema_name, self.policy.live_table))
            record = self.jobs.record_params(job.id, owner, cursor=None, lease_seconds=self.lease_seconds, failed=0)
            row = self.db.row(
                f"WITH i AS (INSERT INTO {archive} ({cols}, {', '.join(quote(c) for c in ARCHIVE_META)})"
                f" SELECT {cols}, now(), :by, :reason, CAST(:job AS uuid) FROM ONLY {leaf.table} RETURNING 1),"
                f" u AS ({self.jobs.record_from('i')}) SELECT * FROM u",
                by=self.policy.archived_by, reason=self.policy.archive_reason, **record)
            moved, _, after = self.jobs.recorded(job.id, row)
            if not moved:  # emptied since it was looked at: a batch of nothing must not end the run
                raise _Skip
            self.db.run(f"TRUNCATE {leaf.table}")
            self.jobs.record_whole_partition(job.id, leaf.name, moved)
        ms = (time.perf_counter() - started) * 1000
        logger.info("partition moved whole", extra={"partition": leaf.name, "rows": moved, "ms": round(ms, 1)})
        return Moved(moved, ms, after)
