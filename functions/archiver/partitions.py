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
When the archive is partitioned like the live table (``archive_partitions.py``), a leaf directly
under the live table moves without a row copied instead: in the same kind of transaction it is
detached from the live table, given the archive's columns (constant defaults: no rewrite), merged
with the archive partition of its range if there is one and it is small beside the leaf, and attached to the
archive; the rows never leave their pages. Where that cannot be (the live table's lock did not come,
the layouts differ, the role does not own the tables), the leaf is copied as above.
See docs/decisions/whole-partition-moves.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

from .archive_partitions import Part, archive_name, archive_partitioned, mirror, mirror_of
from .catalogue import COLUMNS_SIGNATURE_SQL, TableShape, columns
from .config import Policy
from .db import Database, expecting
from .eligibility import Cutoffs, age_bound
from .exceptions import (
    CheckViolationError,
    CollationMismatchError,
    ColumnsChangedError,
    DatatypeMismatchError,
    FeatureNotSupportedError,
    LeaseLostError,
    LockNotAvailableError,
    PartitionLayoutError,
    PermissionDeniedError,
    QueryCanceledError,
    ServerError,
    UndefinedTableError,
    UniqueViolationError,
)
from .identifiers import qualified, quote
from .jobs import Job, JobStore
from .observability import logger

# How long the move waits for the partition's lock: an application transaction holding it wins, and
# queries that arrive meanwhile queue behind the request no longer than this.
LOCK_TIMEOUT_MS = 200
# A move may take at most this share of what is left of the hop: one that cannot finish in it rolls
# back and leaves the rest of the hop to the row batches, which make progress where it could not.
HOP_SHARE = 0.5
# The archive partition of a leaf's range merges into the leaf only while it holds at most this share of
# the leaf's rows; beyond, the leaf is copied into it. A merged row costs about what a copied one does
# (more indexes to fill, the archive's built over both), and the merge is paid with the whole live table
# locked, the copy with the leaf only: 100,000-row leaf, 99,000 rows merged 447 ms, copied 321 ms.
MERGED_UP_TO = 0.25
# Why a move gives way to the row batches (SQLSTATE): nothing has changed when they happen.
GIVES_WAY: dict[type[ServerError], str] = {
    LockNotAvailableError: "the partition is locked by another session",
    UniqueViolationError: "the archive already holds a key of the partition",
    QueryCanceledError: "the move would take longer than the hop allows",
    FeatureNotSupportedError: "a foreign key references the partition",
    UndefinedTableError: "the partition is gone",
    PermissionDeniedError: "the role may not lock or truncate the partition",
}
# Why a leaf is copied rather than attached to the archive (SQLSTATE): the transaction rolls back and
# the copy runs in one of its own.
COPIED_INSTEAD: dict[type[ServerError], str] = {
    LockNotAvailableError: "the live table is in use",
    PermissionDeniedError: "the role does not own the live table, the partition or the archive",
    PartitionLayoutError: "an archive partition overlaps the partition's range",
    CheckViolationError: "the archive's default partition holds rows of the partition's range",
    DatatypeMismatchError: "the partition's columns differ from the archive's",
    CollationMismatchError: "a column's collation differs from the archive's",
    UniqueViolationError: "the archive already holds a key of the partition",
    FeatureNotSupportedError: "the partition cannot be detached",
}
# The archive's columns a leaf is given when it is attached, as constant defaults (one value for every
# row, kept in the catalogue: no row is rewritten); the job's values come from this transaction's settings.
_META_VALUES = {
    "archived_at": "now()",
    "archived_by": "current_setting('archiver.archived_by')",
    "archive_reason": "current_setting('archiver.archive_reason')",
    "archive_job_id": "CAST(current_setting('archiver.archive_job_id') AS uuid)",
}
# What the live table gave a partition that an archive partition must not keep: its foreign keys (an
# archived row must not hold up a delete elsewhere), its columns' defaults (a sequence's nextval), and
# its checks and NOT NULLs the archive does not have (archived rows, and rows archived later by batches,
# answer to the archive's rules, not to the live table's of the day). A key column keeps its NOT NULL.
_INHERITED_SQL = """
SELECT 'DROP CONSTRAINT ' || quote_ident(conname) FROM pg_constraint
WHERE conrelid = CAST(:t AS regclass) AND contype IN ('f', 'c')
UNION ALL
SELECT 'ALTER COLUMN ' || quote_ident(attname) || ' DROP DEFAULT' FROM pg_attribute
WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped AND atthasdef AND attgenerated = ''
UNION ALL
SELECT 'ALTER COLUMN ' || quote_ident(l.attname) || ' DROP NOT NULL' FROM pg_attribute l
JOIN pg_attribute a ON a.attrelid = CAST(:archive AS regclass) AND a.attname = l.attname AND NOT a.attnotnull
WHERE l.attrelid = CAST(:t AS regclass) AND l.attnum > 0 AND NOT l.attisdropped AND l.attnotnull
  AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = l.attrelid AND (i.indisprimary OR i.indisreplident)
                  AND l.attnum = ANY (i.indkey))"""

# The roles granted anything on a partition (the table or a column), other than its owner: an archive
# partition keeps none of the grants the live partition had (the application's writes, for one).
_GRANTEES_SQL = """
SELECT DISTINCT CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END
FROM pg_class c
CROSS JOIN LATERAL (SELECT c.relacl AS acl UNION ALL
                    SELECT attacl FROM pg_attribute WHERE attrelid = c.oid AND attacl IS NOT NULL) x
CROSS JOIN LATERAL aclexplode(x.acl) g LEFT JOIN pg_roles r ON r.oid = g.grantee
WHERE c.oid = CAST(:t AS regclass) AND g.grantee <> c.relowner"""

# DETACH and ATTACH are the tables' owner's (or a member of its role's): a run of a role that is neither
# copies, without locking the live table first for a DETACH that would be refused.
_OWNS_SQL = ("SELECT bool_and(pg_has_role(relowner, 'USAGE')) FROM pg_class"
             " WHERE oid IN (CAST(:live AS regclass), CAST(:archive AS regclass))")

# The leaves (with the partition of the live table above each) under each partition whose range on
# the age column ends at or before the cutoff, oldest first. Only a range partitioning on the age
# column alone; the bound is read from the partition's definition (``FOR VALUES FROM (…) TO ('…')``,
# rendered in this session's time zone and date style, and cast back in the same session). MAXVALUE
# and DEFAULT partitions have no such bound; a partition partitioned in turn is judged by its own
# range (every leaf below lies within it); a leaf that is not a plain table, has a trigger of its own
# (TRUNCATE fires no row trigger), or that the job's role may not read and truncate directly (a grant
# on the parent covers only access through it) goes by batches; one being detached (a DETACH …
# CONCURRENTLY not finished: the live table's queries no longer see it, and DETACH refuses it) is left
# alone. ``{age_type}`` and ``{cutoff}`` are filled in (``whole_leaves``).
_LEAVES_SQL = r"""
WITH ranged AS (
  SELECT c.oid,
         substring(pg_get_expr(c.relpartbound, c.oid) FROM '^FOR VALUES FROM \(.*\) TO \(''(.*)''\)$') AS upper
  FROM pg_partitioned_table pt
  JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
  JOIN pg_inherits i ON i.inhparent = pt.partrelid
  JOIN pg_class c ON c.oid = i.inhrelid
  WHERE pt.partrelid = CAST(:live AS regclass) AND pt.partstrat = 'r' AND pt.partnatts = 1 AND a.attname = :age)
SELECT n.nspname AS schema, c.relname AS name, tn.nspname AS top_schema, tc.relname AS top_name,
       c.relpersistence = 'p' AS logged
FROM ranged r CROSS JOIN LATERAL pg_partition_tree(r.oid) t
JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class tc ON tc.oid = r.oid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
WHERE r.upper IS NOT NULL AND t.isleaf AND c.relkind = 'r'
  AND NOT EXISTS (SELECT 1 FROM pg_inherits p WHERE p.inhrelid IN (c.oid, r.oid) AND p.inhdetachpending)
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
    partitioned in turn); ``logged``: not an unlogged table (whose rows crash recovery throws away: it
    never becomes an archive partition)."""

    schema: str
    name: str
    top_schema: str
    top_name: str
    logged: bool = True

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


class _CopyInstead(Exception):
    """The archive partition of the leaf's range holds more than ``MERGED_UP_TO`` of the leaf's rows:
    the leaf's rows are copied into it instead. The transaction rolls back."""


class _Skip(Exception):
    """Nothing to move in this partition (any more): empty, or no longer wholly past the cutoff under
    the live table. Its transaction, if any, rolls back."""


class Signed(Protocol):
    """What a move needs of the run's statements (``engine.Statements``): the columns signature they
    were built from and its parameters (``sig_rels``), and the batches' own insert into the archive."""

    signature: str
    params: dict[str, Any]

    def insert(self, source: str = "m") -> str: ...


def lowest_cutoff(cutoffs: Cutoffs) -> Any:
    """The cutoff every row of a partition meets, whatever its line of business: the earliest."""
    return min([cutoffs.default, *cutoffs.by_lob.values()])


def whole_leaves(db: Database, policy: Policy, age_type: str, cutoffs: Cutoffs) -> list[Leaf]:
    """The leaf partitions of the live table lying entirely past ``cutoffs``, oldest first; none when
    the table is not range-partitioned on the age column (of ``age_type``) alone. The bound meets the
    cutoff exactly as eligibility compares a row's age with it (``eligibility.age_bound``)."""
    sql = _LEAVES_SQL.format(age_type=age_type, cutoff=age_bound(age_type).format(":cut"))
    return [Leaf(r["schema"], r["name"], r["top_schema"], r["top_name"], r["logged"]) for r in db.rows(
        sql, live=qualified(policy.schema_name, policy.live_table), age=policy.age_column,
        cut=lowest_cutoff(cutoffs))]


def _why(exc: ServerError, reasons: dict[type[ServerError], str]) -> str:
    """What ``reasons`` says of ``exc``; ``exc`` itself when they name it not (a bug, reported as one)."""
    reason = next((why for cls, why in reasons.items() if isinstance(exc, cls)), None)
    if reason is None:
        raise exc
    return reason


def highest_cutoff(cutoffs: Cutoffs) -> Any:
    """The cutoff below which a row may be eligible, whatever its line of business: the latest."""
    return max([cutoffs.default, *cutoffs.by_lob.values()])


def partition_moves(db: Database, policy: Policy, jobs: JobStore, lease_seconds: int, shape: TableShape | None,
                    only_the_row: bool) -> PartitionMoves | None:
    """The run loop's partition work, or None (no catalogue read at all) unless the live table is
    partitioned: the archive's partitions kept in step with it, and, where eligibility reads only the
    row (``engine.only_the_row``), the whole-partition moves."""
    if shape is None or not shape.partitioned:
        return None
    return PartitionMoves(db, policy, jobs, lease_seconds, shape, only_the_row)


class PartitionMoves:
    """The partition work of one hop: at the first call the archive gets its partitions for the ranges
    the run may move rows of and the leaves are found; one leaf moves per call."""

    def __init__(self, db: Database, policy: Policy, jobs: JobStore, lease_seconds: int, shape: TableShape,
                 only_the_row: bool) -> None:
        self.db, self.policy, self.jobs, self.lease_seconds = db, policy, jobs, lease_seconds
        self.age_type, self.only_the_row = shape.age.type, only_the_row
        # Generated columns stay generated in a leaf but are plain in the archive: such leaves are copied.
        self.attachable = not any(c.generated for c in shape.columns)
        self._leaves: list[Leaf] | None = None
        self._unmirrored: frozenset[str] = frozenset()  # leaves to be attached: no archive partition made for them
        self._cutoffs: Cutoffs | None = None

    def _start(self, job: Job) -> list[Leaf]:
        self._cutoffs = Cutoffs.from_json(job.options["cutoffs"])
        self.attachable = self.attachable and archive_partitioned(self.db, self.policy) and bool(self.db.scalar(
            _OWNS_SQL, live=qualified(self.policy.schema_name, self.policy.live_table),
            archive=qualified(self.policy.schema_name, self.policy.archive_table)))
        leaves = whole_leaves(self.db, self.policy, self.age_type, self._cutoffs) if self.only_the_row else []
        # The batches' rows (and a copied leaf's) land in an archive partition of their own range, never
        # the default one, where a later attach would have to look for them. A leaf about to be attached
        # needs none: it becomes it (an empty one made now would only be merged and dropped).
        self._mirror_all_but(frozenset(f.name for f in leaves if self._may_attach(f)))
        return leaves

    def _may_attach(self, leaf: Leaf) -> bool:
        return self.attachable and leaf.top == leaf.table and leaf.logged

    def _mirror_all_but(self, leaves: frozenset[str]) -> None:
        """The archive partitions of the ranges whose rows may reach the archive other than by an attach:
        every one but ``leaves`` (still to be attached)."""
        assert self._cutoffs is not None
        self._unmirrored = leaves
        mirror(self.db, self.policy, self.age_type, highest_cutoff(self._cutoffs), leaves)

    def move(self, job: Job, owner: str, stmts: Signed, remaining_ms: float) -> Moved | None:
        """Move the next non-empty leaf past the run's cutoff whole; None when none is left (or a
        cancel was asked): the row batches go on from there."""
        if self._leaves is None:
            self._leaves = self._start(job)
        while self._leaves:
            leaf = self._leaves.pop(0)
            try:
                moved = self._attach_or_copy(leaf, job, owner, stmts, remaining_ms * HOP_SHARE)
            except _Skip:
                continue
            except ColumnsChangedError:  # the run builds its statements again and comes back for it
                self._leaves.insert(0, leaf)
                raise
            except ServerError as exc:
                logger.info("partition left to row batches",
                            extra={"partition": leaf.name, "reason": _why(exc, GIVES_WAY)})
                continue
            if moved is None:  # cancelled: the next batch's gate ends the run
                self._leaves = []
            return moved
        if self._unmirrored:  # a leaf left to the batches (or emptied): its range before any batch runs
            self._mirror_all_but(frozenset())
        return None

    def _attach_or_copy(self, leaf: Leaf, job: Job, owner: str, stmts: Signed, limit_ms: float) -> Moved | None:
        if not self.db.scalar(f"SELECT EXISTS (SELECT 1 FROM ONLY {leaf.table})"):
            raise _Skip  # moved by an earlier hop, or never used: no lock taken for nothing
        if self._may_attach(leaf):
            try:
                with expecting(*COPIED_INSTEAD, QueryCanceledError):
                    moved = self._attach(leaf, job, owner, stmts, limit_ms)
                if moved is not None:
                    self._unmirrored -= {leaf.name}  # it is the archive's partition of its range now
                return moved
            except _CopyInstead:
                pass
            except ServerError as exc:
                logger.info("partition copied, not attached",
                            extra={"partition": leaf.name, "reason": _why(exc, COPIED_INSTEAD)})
        if leaf.name in self._unmirrored:
            self._mirror_all_but(self._unmirrored - {leaf.name})
        with expecting(LockNotAvailableError, UniqueViolationError, QueryCanceledError, FeatureNotSupportedError):
            return self._copy(leaf, job, owner, stmts, limit_ms)

    def _begin(self, leaf: Leaf, job: Job, owner: str, limit_ms: float) -> bool:
        """The move's transaction, from its start: the job's lease gate (False: a cancel was asked), then
        its lock wait and the hop's share as its statement timeout."""
        gate = self.db.run(f"WITH {self.jobs.lease_gate} SELECT ours, cancel FROM j", job=job.id, owner=owner)
        if not gate or not gate[0][0]:
            raise LeaseLostError(f"job {job.id} is no longer leased to this worker")
        if gate[0][1]:
            return False
        cap = min(limit_ms, 2**31 - 1) if math.isfinite(limit_ms) else 2**31 - 1
        self.db.run(_TIMEOUTS_SQL, lock=f"{LOCK_TIMEOUT_MS}ms", cap=max(1, int(cap)))
        return True

    def _check(self, leaf: Leaf, stmts: Signed) -> None:
        """Once the leaf is locked: still in the live table, still wholly past the cutoff (the catalogue,
        read after the lock), its columns those the statements were built from."""
        assert self._cutoffs is not None
        if leaf not in whole_leaves(self.db, self.policy, self.age_type, self._cutoffs):
            raise _Skip
        # Read once the partition is locked: DDL on the live table waits for this transaction from here.
        same = self.db.scalar(f"SELECT ({COLUMNS_SIGNATURE_SQL}) = :sig", sig=stmts.signature,
                              sig_rels=stmts.params["sig_rels"])
        if same is not True:
            raise ColumnsChangedError("columns changed since the statements were built")

    def _attach(self, leaf: Leaf, job: Job, owner: str, stmts: Signed, limit_ms: float) -> Moved | None:
        """Detach the leaf from the live table and attach it to the archive, in one transaction."""
        started = time.perf_counter()
        live = qualified(self.policy.schema_name, self.policy.live_table)
        archive = qualified(self.policy.schema_name, self.policy.archive_table)
        with self.db.transaction():
            if not self._begin(leaf, job, owner, limit_ms):
                return None
            # The live table itself (not its other partitions): DETACH takes this lock anyway; taken
            # first, with the lock wait, so that the application's transactions win and nothing else waits.
            self.db.run(f"LOCK TABLE ONLY {live} IN ACCESS EXCLUSIVE MODE")
            self.db.run(f"LOCK TABLE {leaf.table} IN ACCESS EXCLUSIVE MODE")
            self._check(leaf, stmts)
            bound = str(self.db.scalar("SELECT pg_get_expr(relpartbound, oid) FROM pg_class"
                                       " WHERE oid = CAST(:t AS regclass)", t=leaf.table))
            twin = mirror_of(self.db, self.policy, bound)
            if twin is not None and self.db.scalar(  # the twin partitioned in turn too: not ONLY
                    f"SELECT count(*) > CAST(:share AS float8) * (SELECT count(*) FROM ONLY {leaf.table})"
                    f" FROM {twin.table}", share=MERGED_UP_TO):
                raise _CopyInstead
            self.db.run(f"ALTER TABLE {live} DETACH PARTITION {leaf.table}")
            record = self.jobs.record_params(job.id, owner, cursor=None, lease_seconds=self.lease_seconds, failed=0)
            row = self.db.row(f"WITH i AS (SELECT 1 FROM ONLY {leaf.table}), u AS ({self.jobs.record_from('i')})"
                              " SELECT * FROM u", **record)
            moved, _, after = self.jobs.recorded(job.id, row)
            if not moved:
                raise _Skip
            self._become_archive(leaf, job, twin)
            self.db.run(f"ALTER TABLE {archive} ATTACH PARTITION {leaf.table} {bound}")
            name = archive_name(self.policy, leaf.name)  # in the leaf's own schema, where it stays
            if self.db.scalar("SELECT to_regclass(:n) IS NULL", n=qualified(leaf.schema, name)):
                self.db.run(f"ALTER TABLE {leaf.table} RENAME TO {quote(name)}")
                # Without a default partition the live table would now refuse a row of that range (a
                # backdated insert): an empty partition of the leaf's name and range takes its place, as
                # the copy leaves the leaf itself.
                if not self.db.scalar("SELECT partdefid <> 0 FROM pg_partitioned_table"
                                      " WHERE partrelid = CAST(:t AS regclass)", t=live):
                    self.db.run(f"CREATE TABLE {leaf.table} PARTITION OF {live} {bound}")
            self.jobs.record_whole_partition(job.id, leaf.name, moved, "attached")
        ms = (time.perf_counter() - started) * 1000
        logger.info("partition attached to the archive", extra={"partition": leaf.name, "rows": moved,
                                                                 "ms": round(ms, 1)})
        return Moved(moved, ms, after)

    def _become_archive(self, leaf: Leaf, job: Job, twin: Part | None) -> None:
        """The detached leaf made fit to be the archive's partition of its range: what the live table gave
        it dropped, the archive's columns added (every row gets the job's values without a rewrite),
        and the rows of the archive partition it replaces (``twin``) moved into it."""
        archive = qualified(self.policy.schema_name, self.policy.archive_table)
        changes = [r[0] for r in self.db.run(_INHERITED_SQL, t=leaf.table, archive=archive)]
        if changes:
            self.db.run(f"ALTER TABLE {leaf.table} {', '.join(changes)}")
        grantees = [r[0] for r in self.db.run(_GRANTEES_SQL, t=leaf.table)]
        if grantees:  # the table's privileges and its columns' alike
            self.db.run(f"REVOKE ALL ON {leaf.table} FROM {', '.join(grantees)}")
        self.db.run("SELECT set_config('archiver.archived_by', :by, true), set_config('archiver.archive_reason',"
                    " :reason, true), set_config('archiver.archive_job_id', :job, true)",
                    by=self.policy.archived_by, reason=self.policy.archive_reason, job=job.id)
        have = {c.name for c in columns(self.db, leaf.schema, leaf.name)}
        wanted = columns(self.db, self.policy.schema_name, self.policy.archive_table)
        added = [c for c in wanted if c.name not in have]
        if added:
            self.db.run(f"ALTER TABLE {leaf.table} " + ", ".join(
                f"ADD COLUMN {quote(c.name)} {c.type}"
                + (f" DEFAULT {_META_VALUES[c.name]}" if c.name in _META_VALUES else "")
                + (" NOT NULL" if c.not_null else "") for c in added))
            defaults = [c for c in added if c.name in _META_VALUES]
            if defaults:  # the rows keep their values; later inserts get the archive's own defaults
                self.db.run(f"ALTER TABLE {leaf.table} " + ", ".join(
                    f"ALTER COLUMN {quote(c.name)} DROP DEFAULT" for c in defaults))
        if twin is not None:
            cols = ", ".join(quote(c.name) for c in wanted)
            self.db.run(f"ALTER TABLE {archive} DETACH PARTITION {twin.table}")
            self.db.run(f"INSERT INTO {leaf.table} ({cols}) SELECT {cols} FROM {twin.table}")
            self.db.run(f"DROP TABLE {twin.table}")

    def _copy(self, leaf: Leaf, job: Job, owner: str, stmts: Signed, limit_ms: float) -> Moved | None:
        """Copy the leaf's rows into the archive and empty it, in one transaction; it stays attached."""
        started = time.perf_counter()
        with self.db.transaction():
            if not self._begin(leaf, job, owner, limit_ms):
                return None
            # The partition of the live table above the leaf, with everything under it: no DETACH can take
            # the leaf out of the live table until this transaction ends.
            self.db.run(f"LOCK TABLE {leaf.top} IN ACCESS EXCLUSIVE MODE")
            self._check(leaf, stmts)
            # The columns the statements were built from: the signature just checked says they are the table's.
            record = self.jobs.record_params(job.id, owner, cursor=None, lease_seconds=self.lease_seconds, failed=0)
            row = self.db.row(f"WITH{stmts.insert(f'ONLY {leaf.table}')}, u AS ({self.jobs.record_from('i')})"
                              " SELECT * FROM u",
                              by=self.policy.archived_by, reason=self.policy.archive_reason, **record)
            moved, _, after = self.jobs.recorded(job.id, row)
            if not moved:  # emptied since it was looked at: a batch of nothing must not end the run
                raise _Skip
            self.db.run(f"TRUNCATE {leaf.table}")
            self.jobs.record_whole_partition(job.id, leaf.name, moved, "copied")
        ms = (time.perf_counter() - started) * 1000
        logger.info("partition moved whole", extra={"partition": leaf.name, "rows": moved, "ms": round(ms, 1)})
        return Moved(moved, ms, after)
