"""The SQL of a run's batches: the lock, re-check and move statements, the one-statement batch,
the count and the dry run's breakdown, built once per hop against the live table's current shape.

No row's key crosses the wire: the lock statement returns the last locked row's keyset row (the
cursor) as text, and the move statement finds the rows up to it again (see ``Statements``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Policy
from .eligibility import Cutoffs, Eligibility
from .identifiers import qualified, quote
from .jobs import JobStore
from .related import RelatedGraph, Table, lock_moving_sql, move_rows_sql
from .schema import ARCHIVE_META, COLUMNS_SIGNATURE_SQL, TableShape, related_archive_name

SKIP_ROOM = 2  # the move statement's limit, in batch sizes (see Statements.found)


@dataclass(frozen=True)
class Columns:
    """The tables a run's statements name columns of (their oids), and those columns' signature."""

    tables: list[int]
    signature: str


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

