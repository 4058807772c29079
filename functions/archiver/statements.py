"""The SQL of a run's batches: the lock, re-check and move statements, the one-statement batch,
the count and the dry run's breakdown, built once per hop against the live table's current shape.

No row's key crosses the wire: the lock statement returns the last locked row's keyset row (the
cursor) as text, and the move statement finds the rows up to it again (see ``Statements``). The
rows the engine reads back are named (``Locked``, ``Rechecked``, ``OneStatementBatch``): their
columns are taken by name, never by position.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from .catalogue import COLUMNS_SIGNATURE_SQL, TableShape
from .config import Policy
from .eligibility import Cutoffs, Eligibility
from .identifiers import qualified, quote
from .jobs import JobStore
from .migration import ARCHIVE_META, related_archive_name
from .related import RelatedGraph, Table, lock_moving_sql, move_rows_sql

SKIP_ROOM = 2  # the move statement's limit, in batch sizes (see BatchSql.found)
KEYS = "k"  # the re-check's key arrays, the move statements' parameters: k0, k1, ... (TableShape.key_arrays)


@dataclass(frozen=True)
class Columns:
    """The tables a run's statements name columns of (their oids), and those columns' signature."""

    tables: list[int]
    signature: str


class Locked(NamedTuple):
    """The lock statement's row (``BatchSql.lock``), its columns by name."""

    locked: int  # rows locked
    last: list[str] | None  # the last one's keyset row, as text: the new cursor (NULL: none locked)
    signature: str | None  # the columns' signature, read once the rows were locked
    ours: bool | None  # the lease is this worker's (NULL: no such job, a lost lease too)
    cancel: bool | None  # a cancel was asked for

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Locked:
        return cls(**{name: row[name] for name in cls._fields})


class Rechecked(NamedTuple):
    """The re-check's row (move mode, ``BatchSql.recheck``): the keys to move, one text array per key
    column (NULL: none), and the rows left live because the archive already holds their key."""

    keys: dict[str, list[str] | None]  # by the move statements' parameter names (k0, k1, ...)
    held: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Rechecked:
        return cls({name: value for name, value in row.items() if name != "held"}, int(row["held"]))

    @property
    def moving(self) -> bool:
        """Some rows are free to move (every array is NULL or none is)."""
        return bool(next(iter(self.keys.values())))


class OneStatementBatch(NamedTuple):
    """What the one-statement batch (``BatchSql.one_statement``) found, from the ``batch_*`` columns
    of its row; the rest of the row is the job row, NULL unless the batch counted (``record_from``)."""

    locked: int  # rows locked
    same: bool  # the columns' signature is the statements': otherwise nothing moved
    ours: bool | None  # as in ``Locked``
    cancel: bool | None

    @classmethod
    def take(cls, row: dict[str, Any]) -> OneStatementBatch:
        """Take the findings out of ``row``, leaving the job row's columns."""
        return cls(**{name: row.pop(f"batch_{name}") for name in cls._fields})


class BatchSql:
    """Named builders of one policy's batch statements over the live table's shape (alias ``l``).

    A builder returns a statement or a piece of one (a ``WITH`` item, a condition). ``first``: the
    run's first batch, which has no cursor yet; two variants rather than ``(:cur IS NULL OR ...)``,
    which would hide the bound from the index.
    """

    def __init__(self, policy: Policy, shape: TableShape, eligible: str, jobs: JobStore) -> None:
        self.shape, self.eligible, self.jobs = shape, eligible, jobs
        self.live = qualified(policy.schema_name, policy.live_table)
        self.archive = qualified(policy.schema_name, policy.archive_table)
        self.cols = ", ".join(quote(c) for c in shape.names)
        self.walk = ", ".join(f"l.{quote(c.name)}" for c in shape.walk)

    # -- the cursor ----------------------------------------------------------------------
    def keyset_row(self, param: str) -> str:
        """The keyset row in text-array parameter ``param``, each value cast back to its column's type:
        compared as a row, exactly in the index's order (a timestamp is never turned into a timestamptz)."""
        return "(" + ", ".join(f"CAST((CAST(:{param} AS text[]))[{i}] AS {c.type})"
                               for i, c in enumerate(self.shape.walk, 1)) + ")"

    def after_cursor(self) -> str:
        return f"({self.walk}) > {self.keyset_row('cur')}"

    def up_to_last(self) -> str:
        return f"({self.walk}) <= {self.keyset_row('last')}"

    def where(self, first: bool) -> str:
        """The rows a batch may take: eligible, and after the cursor unless it is the first."""
        return self.eligible if first else f"{self.after_cursor()} AND {self.eligible}"

    def last_row(self) -> str:
        """The keyset row, as text, of the last of the rows ``b`` locked: the new cursor."""
        walk = self.shape.walk
        return ("SELECT ARRAY[" + ", ".join(f"CAST(b.{quote(c.name)} AS text)" for c in walk) + "] FROM b"
                " ORDER BY " + ", ".join(f"b.{quote(c.name)} DESC" for c in walk) + " LIMIT 1")

    # -- pieces of the move ----------------------------------------------------------------
    def held(self, rows: str) -> str:
        """``h``: the keys of ``rows`` the archive already holds (probed through the archive key's first
        column, an index scan whatever the plan): those rows stay live, counted as failed; nothing is
        overwritten."""
        shape, first_key = self.shape, quote(self.shape.key[0].name)
        return (f"h AS (SELECT {shape.key_list('a')} FROM {self.archive} a"
                f" WHERE a.{first_key} = ANY(ARRAY(SELECT {rows}.{first_key} FROM {rows}))"
                + (f" AND ({shape.key_list('a')}) IN (SELECT {shape.key_list(rows)} FROM {rows})"
                   if len(shape.key) > 1 else "") + ")")

    def free(self, rows: str) -> str:
        """The row of ``rows`` is not in ``h`` (``held``)."""
        return f"NOT EXISTS (SELECT 1 FROM h WHERE {self.shape.key_equal('h', rows)})"

    def pick(self, rows: str) -> str:
        """The DELETE takes its rows by their ctid, a TID scan whatever the key (on a partitioned
        table, ctids repeat across partitions: with the partition's oid)."""
        return (f"x.ctid = ANY(ARRAY(SELECT {rows}.c FROM {rows} WHERE {self.free(rows)}))"
                + (f" AND (x.tableoid, x.ctid) IN (SELECT {rows}.t, {rows}.c FROM {rows} WHERE {self.free(rows)})"
                   if self.shape.partitioned else ""))

    def found(self, first: bool, what: str) -> str:
        """``r``: the rows the lock statement took, found again: SKIP LOCKED passes over rows another
        transaction holds (ours are not), and the predicate is re-checked under this statement's
        snapshot, taken after the rows were locked.

        ORDER BY and LIMIT as in the lock statement, though the range bounds the rows: on the range's
        estimate alone (a row comparison: a third of the table) the planner hash-joined full scans of
        the related tables into every batch, a cost that grows with those tables, and the steering
        then shrank the batches to a row each. The limit leaves room for rows the lock statement
        skipped and that are free by now (SKIP_ROOM)."""
        where = "true" if first else self.after_cursor()
        return (f"r AS (SELECT {what} FROM {self.live} l WHERE {where} AND {self.up_to_last()} AND {self.eligible}"
                f" ORDER BY {self.walk} LIMIT :m FOR UPDATE OF l SKIP LOCKED)")

    def insert(self, source: str = "m") -> str:
        """``i``: the rows of ``source`` (by default ``m``, the rows the batch deleted) into the archive, with
        who, why and which run."""
        return (f" i AS (INSERT INTO {self.archive} ({self.cols}, {', '.join(quote(c) for c in ARCHIVE_META)})"
                f" SELECT {self.cols}, now(), :by, :reason, CAST(:job AS uuid) FROM {source} RETURNING 1)")

    def in_batch(self, alias: str) -> str:
        """The key of ``alias`` is one of the batch's keys (the re-check's text arrays, any width)."""
        return f"({self.shape.key_list(alias)}) IN ({self.shape.key_arrays(KEYS)})"

    # -- statements -------------------------------------------------------------------------
    def lock(self, first: bool) -> str:
        """Lock the next rows; returns one ``Locked`` row. The statement first locks the job row
        (jobs.lease_gate: a one-time filter, evaluated before the scan locks any row) and locks no row
        unless the lease is ours and no cancel is asked. The columns signature is read after the rows
        are locked (see COLUMNS_SIGNATURE_SQL)."""
        return (f"WITH {self.jobs.lease_gate}, b AS (SELECT {self.walk} FROM {self.live} l"
                f" WHERE (SELECT ours AND NOT cancel FROM j) AND {self.where(first)}"
                f" ORDER BY {self.walk} LIMIT :n FOR UPDATE OF l SKIP LOCKED)"
                f" SELECT count(*) AS locked, ({self.last_row()}) AS last, ({COLUMNS_SIGNATURE_SQL}) AS signature,"
                " (SELECT ours FROM j) AS ours, (SELECT cancel FROM j) AS cancel FROM b")

    def move(self, first: bool) -> str:
        """One statement finds, re-checks and moves the rows, and counts the batch in the job row
        (jobs.record_from); returns that row. Written straight into the DELETE, the checks made the
        planner hash-join full scans of the related tables."""
        what = f"l.tableoid AS t, l.ctid AS c, {self.shape.key_list('l')}"
        return (f"WITH {self.found(first, what)}, {self.held('r')},"
                f" m AS (DELETE FROM {self.live} x WHERE {self.pick('r')} RETURNING {self.cols}),"
                f"{self.insert()}, u AS ({self.jobs.record_from('i', 'h')}) SELECT * FROM u")

    def recheck(self, first: bool) -> str:
        """Move mode: related rows must move first (foreign keys), in statements of their own. The
        re-check returns one ``Rechecked`` row: the keys to move, one text array per key column, and
        the count of rows left live."""
        shape = self.shape
        keys = ", ".join(f"CAST(array_agg(r.{quote(c.name)}) FILTER (WHERE {self.free('r')}) AS text[]) AS {KEYS}{i}"
                         for i, c in enumerate(shape.key))
        return (f"WITH {self.found(first, shape.key_list('l'))}, {self.held('r')}"
                f" SELECT {keys}, (SELECT count(*) FROM h) AS held FROM r")

    def move_by_keys(self) -> str:
        """Move mode: move the rows the re-check returned, after their related rows; returns the job row."""
        return (f"WITH m AS (DELETE FROM {self.live} x WHERE {self.in_batch('x')} RETURNING {self.cols}),"
                f"{self.insert()}, u AS ({self.jobs.record_from('i')}) SELECT * FROM u")

    def one_statement(self, first: bool) -> str:
        """The whole batch in one statement, where eligibility reads nothing but the live row
        (``only_the_row``): the lock's own re-check (FOR UPDATE re-evaluates the row's conditions on
        its latest version) is all the re-check there is to do, and no foreign key points at the
        table. Its DELETE and job-row update wait for the signature, read once the rows are locked
        (``n`` scans ``b`` to the end first); a mismatch moves nothing and the client rolls back.
        Returns the lock's findings (``OneStatementBatch``) and the job row, NULL unless it counted."""
        go = "(SELECT ours AND NOT cancel FROM j) AND (SELECT same FROM s)"
        live, walk, cols = self.live, self.walk, self.cols
        return (f"WITH {self.jobs.lease_gate}, b AS (SELECT l.tableoid AS t, l.ctid AS c, {walk} FROM {live} l"
                f" WHERE (SELECT ours AND NOT cancel FROM j) AND {self.where(first)}"
                f" ORDER BY {walk} LIMIT :n FOR UPDATE OF l SKIP LOCKED),"
                f" n AS (SELECT count(*) AS locked, ({self.last_row()}) AS last FROM b),"
                f" s AS (SELECT ({COLUMNS_SIGNATURE_SQL}) = :sig AS same FROM n), {self.held('b')},"
                f" m AS (DELETE FROM {live} x WHERE (SELECT same FROM s) AND {self.pick('b')} RETURNING {cols}),"
                f"{self.insert()}, u AS ({self.jobs.record_from('i', 'h', cursor='(SELECT last FROM n)', guard=go)})"
                " SELECT n.locked AS batch_locked, s.same AS batch_same, (SELECT ours FROM j) AS batch_ours,"
                " (SELECT cancel FROM j) AS batch_cancel, u.* FROM n CROSS JOIN s LEFT JOIN u ON true")

    def count(self) -> str:
        """The rows eligible now."""
        return f"SELECT count(*) FROM {self.live} l WHERE {self.eligible}"

    def breakdown(self, lob_column: str) -> str:
        """The dry run's count of eligible rows per line of business."""
        lob = quote(lob_column)
        return (f"SELECT COALESCE(CAST(l.{lob} AS text), '(none)'), count(*) FROM {self.live} l WHERE {self.eligible}"
                " GROUP BY 1 ORDER BY 1")


class Statements:
    """The SQL of one policy against the live table's current shape, built once per hop.

    A batch is two statements (move mode: three, and the related tables' lock and move statements),
    and no row's key crosses the wire: the lock statement locks the next rows and returns the last
    one's keyset row (the cursor) as text; the move statement finds the rows between the old cursor
    and that one again (the ones this transaction holds: SKIP LOCKED), re-checks them under its
    own, fresh snapshot and moves them. Where eligibility reads nothing but the live row, the batch
    is one statement (``single``). Each pair is (first batch, after the cursor).
    """

    def __init__(self, policy: Policy, shape: TableShape, related: RelatedGraph, cutoffs: Cutoffs,
                 related_columns: dict[Table, tuple[str, ...]], columns: Columns, jobs: JobStore,
                 job_id: str | None = None) -> None:
        self.elig = Eligibility(policy, shape, related, cutoffs, job_id)
        self.params = {**self.elig.params, "sig_rels": columns.tables}
        self.signature = columns.signature
        sql = self._sql = BatchSql(policy, shape, self.elig.sql, jobs)
        self.lock_first, self.lock_next = sql.lock(True), sql.lock(False)
        self.move_related: list[str] = []
        if policy.related_mode == "move" and related.tables:
            # Top down, lock the rows others hang from; then move, deepest table first.
            self.move_related += [lock_moving_sql(related, t, sql.in_batch) for t in related.tables
                                  if related.has_children(t)]
            self.move_related += [
                move_rows_sql(related, t, (t[0], related_archive_name(policy, t[1])), related_columns[t], sql.in_batch)
                for t in reversed(related.tables)]
        self.recheck: tuple[str, ...] = ()  # move mode: (first batch, after the cursor)
        if self.move_related:
            self.recheck = (sql.recheck(True), sql.recheck(False))
            self.move_first = self.move_next = sql.move_by_keys()
        else:
            self.move_first, self.move_next = sql.move(True), sql.move(False)
        self.single: tuple[str, ...] = ()
        if only_the_row(policy, related):
            self.single = (sql.one_statement(True), sql.one_statement(False))
        self.count = sql.count()
        self.breakdown = sql.breakdown(policy.lob_column) if policy.lob_column in shape.names else None
        self.explain = "EXPLAIN (FORMAT JSON) " + self.lock_first
        # What every batch sends, to prepare once per session (Database.prepare).
        self.per_batch = tuple(dict.fromkeys(
            self.single or (self.lock_first, self.lock_next, *self.recheck, self.move_first, self.move_next,
                            *self.move_related)))

    def insert(self, source: str = "m") -> str:
        """The batches' ``i`` (``BatchSql.insert``) from another source: a whole partition's copy (partitions.py)."""
        return self._sql.insert(source)


def only_the_row(policy: Policy, related: RelatedGraph) -> bool:
    """Eligibility reads nothing but the live row (``Statements.single``): no rule, no reference of
    the table to itself, and no related table it depends on (``keep`` reads none of them; a foreign
    key from another table is refused in ``keep`` mode, see ``related.preflight``)."""
    return (not policy.rules.enabled and not related.self_links
            and not (policy.related_mode in ("skip", "move") and related.links))
