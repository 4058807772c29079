"""Restore (the seeds' rollback) and purge of the archive, each logged as a run.

Restore moves archived rows back to the live table without the archive columns, related rows
too in ``move`` mode, batch by batch; a row whose id is live again is reported, never
overwritten. A live partition that became an archive partition whole (``partitions.py``) is created
again, empty and of the same name and range, before its rows come back. Purge deletes archive rows
past the long-term retention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .archive_partitions import archive_partitioned, parts, recreate_live
from .catalogue import TableShape, columns, live_shape, table_exists
from .config import MAX_BATCH_SIZE, MAX_DAYS, Policy
from .db import Database, describe_error, expecting
from .exceptions import CheckViolationError, ConfigError, SchemaError
from .export import purge_gate, related_purge_gate
from .identifiers import qualified, quote
from .jobs import Job, JobStore
from .migration import ARCHIVE_META, RELATED_META, related_archive_name
from .observability import logger
from .related import RelatedGraph, Table, missing_referent, related_graph, restore_rows_sql
from .states import RunState

MAX_REPORTED_CONFLICTS = 100
RUN_LEASE_SECONDS = 3600  # a restore or purge holds its run's lease an hour, renewed with each restore batch


@dataclass
class RestoreResult:
    restored: int = 0
    related_restored: int = 0
    conflicts: list[Any] = field(default_factory=list)
    conflict_count: int = 0
    rolled_back_jobs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"restored": self.restored, "related_restored": self.related_restored,
                "conflicts": self.conflict_count, "conflict_ids": [str(c) for c in self.conflicts],
                "rolled_back_jobs": self.rolled_back_jobs}


def _insert_columns(db: Database, schema: str, target: str, source: str, meta: tuple[str, ...]) -> list[str]:
    """Columns to copy back: in both tables, minus archive columns and generated live columns."""
    have = {c.name for c in columns(db, schema, source)}
    return [c.name for c in columns(db, schema, target)
            if c.name in have and c.name not in meta and not c.generated]


def _key(values: list[Any]) -> Any:
    """A key as reported: its value, or a tuple of them for a key of several columns."""
    return values[0] if len(values) == 1 else tuple(values)


class Restorer:
    def __init__(self, db: Database, policy: Policy, batch_size: int | None = None) -> None:
        self.db = db
        self.policy = policy
        self.jobs = JobStore(db, policy)
        self.batch_size = batch_size or policy.batch_size
        self.live = qualified(policy.schema_name, policy.live_table)
        self.archive = qualified(policy.schema_name, policy.archive_table)

    def _selection(self, job_id: str | None, since: datetime | None) -> tuple[str, dict[str, Any]]:
        if (job_id is None) == (since is None):
            raise ConfigError("restore needs exactly one of --job or --since")
        if job_id is not None:
            job = self.jobs.get(job_id)
            if job.kind != "archive" or job.dry_run:
                raise ConfigError(f"job {job.id} is a {'dry run' if job.dry_run else job.kind} run: nothing to restore")
            return "{a}.archive_job_id = CAST(:sel AS uuid)", {"sel": job.id}
        # Only rows this policy's runs archived: an archive another table's runs also write to
        # (shared by mistake, or a related archive in move mode) must not give their rows to this table.
        # A template on the alias ``{a}``: it also picks related archive rows (restore_rows_sql).
        return "{a}.archived_at >= CAST(:sel AS timestamptz) AND " + self.jobs.own_rows("{a}"), \
            {"sel": since, "own": self.policy.key}

    def restore(self, *, job_id: str | None = None, since: datetime | None = None,
                dry_run: bool = False) -> tuple[Job, RestoreResult]:
        selection, params = self._selection(job_id, since)
        where = selection.format(a="a")
        shape = live_shape(self.db, self.policy)
        run = self.jobs.create(kind="restore", dry_run=dry_run, batch_size=self.batch_size, trigger="manual",
                               options={"job": job_id, "since": since.isoformat() if since else None})
        owner = f"restore-{run.id}"
        self.jobs.claim(run.id, owner, RUN_LEASE_SECONDS, 1)
        result = RestoreResult()
        try:
            if dry_run:
                self._count(where, params, shape, result)
            else:
                self._move_back(selection, params, shape, result, run.id)
        except Exception as exc:
            self.jobs.fail(run.id, owner, describe_error(exc))
            raise
        state = RunState.SUCCEEDED if not result.conflict_count else RunState.PARTIAL
        msg = (f"{'would restore' if dry_run else 'restored'} {result.restored} rows; "
               f"{result.conflict_count} left in the archive (already live, or referencing a row that is not)")
        self.jobs.record_totals(run.id, result.restored, result.conflict_count)
        done = self.jobs.finish(run.id, owner, state, msg, result=result.as_dict())
        assert done is not None
        return done, result

    def _count(self, where: str, params: dict[str, Any], shape: TableShape, result: RestoreResult) -> None:
        live_again = f"EXISTS (SELECT 1 FROM {self.live} l WHERE {shape.key_equal('l', 'a')})"
        total, clash = self.db.run(
            f"SELECT count(*), count(*) FILTER (WHERE {live_again}) FROM {self.archive} a WHERE {where}", **params)[0]
        result.restored, result.conflict_count = int(total) - int(clash), int(clash)
        result.conflicts = [_key(r) for r in self.db.run(
            f"SELECT {shape.key_list('a')} FROM {self.archive} a WHERE {where} AND {live_again}"
            f" ORDER BY {shape.key_list('a')} LIMIT {MAX_REPORTED_CONFLICTS}", **params)]

    def _move_back(self, selection: str, params: dict[str, Any], shape: TableShape, result: RestoreResult,
                   run_id: str) -> None:
        """Restore batch after batch in key order. A row referencing (through the live table's
        references to itself) a row not live yet waits, and comes back once that row has: the
        hold rule archives a referencing row before the row it references, so a walk in key order
        meets them in any order. A row whose referenced row never comes back stays archived,
        reported with the conflicts."""
        where = selection.format(a="a")
        graph = related_graph(self.db, self.policy)
        touched_jobs: set[str] = set()
        waiting: list[tuple[Any, Any]] = []  # (key as text, key as reported)
        cursor: Any = None
        self._live_partitions_back(where, params, shape)
        # The archive has just grown by whole runs that autovacuum may not have analyzed yet: on
        # statistics that think a run holds a few hundred rows, every batch read and sorted all of
        # its remaining rows (a 480,000-row run restored 4x slower). A table the role does not own
        # is skipped with a warning, not an error.
        self.db.run(f"ANALYZE {self.archive}")
        # Two variants, as the engine's lock statement, rather than "(:cur IS NULL OR ...)": that
        # hid the cursor's bound from the planner, and every batch re-read the selection's rest.
        # Keys travel as text, one array per key column (TableShape.key_arrays), whatever their width.
        width, keys = len(shape.key), shape.key_list("a")
        as_text = ", ".join(f"CAST(a.{quote(c.name)} AS text)" for c in shape.key)
        cur = ", ".join(f"CAST((CAST(:cur AS text[]))[{i}] AS {c.type})" for i, c in enumerate(shape.key, 1))
        batch = (f"SELECT ARRAY[{as_text}], a.archive_job_id,"
                 f" EXISTS (SELECT 1 FROM {self.live} l WHERE {shape.key_equal('l', 'a')}),"
                 f" {missing_referent(graph, 'a')}, {keys}"
                 f" FROM {self.archive} a WHERE {where}{{after}} ORDER BY {keys} LIMIT :n FOR UPDATE OF a")
        first, after_cursor = batch.format(after=""), batch.format(after=f" AND ({keys}) > ({cur})")
        while True:
            with self.db.transaction():
                if cursor is None:
                    rows = self.db.run(first, n=self.batch_size, **params)
                else:
                    rows = self.db.run(after_cursor, n=self.batch_size, cur=cursor, **params)
                if not rows:
                    break
                cursor = rows[-1][0]
                ok = [r[0] for r in rows if not r[2] and not r[3]]
                waiting += [(r[0], _key(r[4:])) for r in rows if not r[2] and r[3]]
                self._conflicts(result, [_key(r[4:]) for r in rows if r[2]])
                touched_jobs.update(str(r[1]) for r in rows if r[1] is not None)
                self._restore_rows(ok, graph, selection, params, shape, result)
                self.jobs.record_step(run_id, RUN_LEASE_SECONDS)
        while waiting:
            with self.db.transaction():
                ready = [r[0] for r in self.db.run(
                    f"SELECT ARRAY[{as_text}] FROM {self.archive} a WHERE ({keys}) IN ({shape.key_arrays('k')})"
                    f" AND NOT {missing_referent(graph, 'a')} ORDER BY {keys} FOR UPDATE OF a",
                    **TableShape.key_params("k", [k for k, _ in waiting], width))]
                self._restore_rows(ready, graph, selection, params, shape, result)
            if not ready:
                break
            back = {tuple(k) for k in ready}
            waiting = [w for w in waiting if tuple(w[0]) not in back]
        self._conflicts(result, [shown for _, shown in waiting])
        # Related rows left archived (a row they reference is not live): counted with the conflicts, keys not listed.
        for _, backup, _ in self._related(graph):
            result.conflict_count += int(self.db.scalar(f"SELECT count(*) FROM {qualified(*backup)} a WHERE {where}",
                                                        **params))
        # A run is rolled back once none of its rows remain in the archive.
        remaining = {str(r[0]) for r in self.db.run(
            f"SELECT DISTINCT archive_job_id FROM {self.archive} WHERE archive_job_id = ANY(CAST(:j AS uuid[]))",
            j=sorted(touched_jobs))} if touched_jobs else set()
        done = sorted(touched_jobs - remaining)
        self.jobs.mark_rolled_back(done)
        result.rolled_back_jobs = done

    def _live_partitions_back(self, where: str, params: dict[str, Any], shape: TableShape) -> None:
        """Before a row moves: the archive partitions holding selected rows get their live partition back
        where the live table has none of their range any more (it was attached to the archive whole), so
        that the rows return to a partition of the name and range they left, not to the live default
        partition, or to none (the restore would fail). Each is created in its own transaction: an empty
        partition left by a restore that stops later is where a second restore's rows go."""
        if not shape.partitioned or not archive_partitioned(self.db, self.policy):
            return
        # One probe per archive partition (an index's first entry), not a read of every selected row.
        oids = [p.oid for p in parts(self.db, self.archive)
                if self.db.scalar(f"SELECT EXISTS (SELECT 1 FROM ONLY {p.table} a WHERE {where})", **params)]
        for name in recreate_live(self.db, self.policy, oids):
            logger.info("live partition created again", extra={"partition": name})

    @staticmethod
    def _conflicts(result: RestoreResult, keys: list[Any]) -> None:
        result.conflict_count += len(keys)
        result.conflicts.extend(keys[: max(0, MAX_REPORTED_CONFLICTS - len(result.conflicts))])

    def _restore_rows(self, keys: list[Any], graph: RelatedGraph, selection: str, params: dict[str, Any],
                      shape: TableShape, result: RestoreResult) -> None:
        """Bring back archived live rows ``keys`` (as text, one list per row; one statement: references
        between them hold at its end) and, in move mode, their related rows, parents before children."""
        if not keys:
            return
        cols = ", ".join(quote(c) for c in _insert_columns(self.db, self.policy.schema_name, self.policy.live_table,
                                                             self.policy.archive_table, ARCHIVE_META))
        ids = TableShape.key_params("k", keys, len(shape.key))
        batch = shape.key_arrays("k")
        try:
            with expecting(CheckViolationError):
                self.db.run(f"WITH m AS (DELETE FROM {self.archive} a WHERE ({shape.key_list('a')}) IN ({batch})"
                            f" RETURNING {cols}) INSERT INTO {self.live} ({cols}) OVERRIDING SYSTEM VALUE"
                            f" SELECT {cols} FROM m", **ids)
        except CheckViolationError as exc:
            # No live partition takes the row (its own could not be created again, and there is no default
            # one), or a check constraint added since refuses it: the batch rolls back, in the archive.
            raise SchemaError(f"a row to restore fits no partition of the live table, or breaks one of its"
                              f" check constraints: {exc}; the rows of this batch stay archived") from None
        result.restored += self.db.row_count

        def in_batch(alias: str) -> str:
            return f"({shape.key_list(alias)}) IN ({batch})"

        def selected(alias: str) -> str:
            return selection.format(a=alias)

        for table, backup, rcols in self._related(graph):
            self.db.run(restore_rows_sql(graph, table, backup, rcols, in_batch, selected), **ids, **params)
            result.related_restored += self.db.row_count

    def _related(self, graph: RelatedGraph) -> list[tuple[Table, Table, tuple[str, ...]]]:
        """In move mode, the related tables with an archive, parents first, and the columns to copy back."""
        if self.policy.related_mode != "move":
            return []
        out = []
        for schema, table in graph.tables:
            backup = related_archive_name(self.policy, table)
            if table_exists(self.db, schema, backup):
                out.append(((schema, table), (schema, backup),
                            tuple(_insert_columns(self.db, schema, table, backup, RELATED_META))))
        return out


def purge(db: Database, policy: Policy, older_than_days: int, dry_run: bool = False,
          batch_size: int = MAX_BATCH_SIZE, trigger: str = "manual", without_export: bool = False) -> Job:
    """Delete archive rows archived more than ``older_than_days`` ago, and in move mode related archive
    rows: only those in a verified export (export.purge_gate, related_purge_gate), unless
    ``without_export``, which is logged."""
    if not 1 <= older_than_days <= MAX_DAYS:
        raise ConfigError(f"--older-than must be between 1 and {MAX_DAYS} days")
    db.use_timezone(policy.timezone)  # "N days" in the policy's calendar
    jobs = JobStore(db, policy)
    run = jobs.create(kind="purge", dry_run=dry_run, batch_size=batch_size, trigger=trigger,
                      options={"older_than_days": older_than_days, "without_export": without_export})
    owner = f"purge-{run.id}"
    jobs.claim(run.id, owner, RUN_LEASE_SECONDS, 1)
    shape = live_shape(db, policy)
    # The archive's own key (it mirrors the live table's, of any width) picks the rows to delete.
    tables = [(qualified(policy.schema_name, policy.archive_table), shape.key_list("x"))]
    gates = ["true" if without_export else purge_gate(db, policy, "x", shape)]
    if policy.related_mode == "move":  # related archive rows: their group must be in a verified export too
        for schema, table in related_graph(db, policy).tables:
            backup = related_archive_name(policy, table)
            if table_exists(db, schema, backup):
                tables.append((qualified(schema, backup), "x.ctid"))
                gates.append("true" if without_export else related_purge_gate(db, policy, "x", schema, backup))
    cutoff = db.scalar("SELECT now() - make_interval(days => :d)", d=older_than_days)
    mine = jobs.own_rows("x")  # rows of this table's runs only, as restore
    total = 0
    try:
        for (table, key), gate in zip(tables, gates, strict=True):
            if dry_run:
                total += int(db.scalar(f"SELECT count(*) FROM {table} x WHERE x.archived_at < :c AND {mine}"
                                       f" AND {gate}", c=cutoff, own=policy.key))
                continue
            while True:
                with db.transaction():
                    db.run(f"DELETE FROM {table} x WHERE ({key}) IN (SELECT {key} FROM {table} x"
                           f" WHERE x.archived_at < :c AND {mine} AND {gate} LIMIT :n)",
                           c=cutoff, n=batch_size, own=policy.key)
                    n = db.row_count
                total += n
                if n < batch_size:
                    break
    except Exception as exc:
        jobs.fail(run.id, owner, describe_error(exc))
        raise
    jobs.record_totals(run.id, total)
    msg = (f"{'would purge' if dry_run else 'purged'} {total} archive rows archived before {cutoff.isoformat()}"
           + (" without an export" if without_export else " (those in verified exports)"))
    done = jobs.finish(run.id, owner, RunState.SUCCEEDED, msg,
                       result={"purged": total, "purge_cutoff": cutoff.isoformat()})
    assert done is not None
    return done
