"""Related records: the foreign-key graph around the live table, and whether the policy's mode can
archive through it without any constraint acting on a row outside the batch.

The graph holds every constraint that references the live table (on its primary key or any other
unique key, one or several columns, with any ON DELETE action, deferrable or not, including the
live table's references to itself), every constraint referencing those tables in turn, to any
depth, and the tables the policy lists (links without a foreign key). What each mode does:

* ``skip``: a live row referenced by a row of another table stays live (that row stays).
* ``move``: the rows of every table below the live table that reference a moving row, and the rows
  referencing those, to any depth, move with it in the batch's transaction to ``<table>_backup``;
  deepest first, so no constraint ever sees a parent go before its children. Refused before
  anything moves where that cannot be done (``preflight``).
* ``keep``: refused when any constraint from another table references the live table.

A reference from the live table to itself is never a related record: in every mode, a live row
referenced by another live row stays live, so no archive step can cascade to, null, or fail on a
young row (``Eligibility``). The referencing row may itself be archived, and the referenced one
then by a later run (one level per run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .catalogue import columns, foreign_keys_to, live_shape, table_exists
from .config import Policy
from .db import Database
from .exceptions import SchemaError
from .identifiers import qualified, quote

_ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}

Table = tuple[str, str]  # (schema, table)


@dataclass(frozen=True)
class Related:
    """One link of the graph: a row of ``schema.table`` belongs to the row of ``parent`` whose
    ``parent_columns`` equal its ``columns`` (a foreign key, or a table the policy lists)."""

    schema: str
    table: str
    columns: tuple[str, ...]
    parent: Table
    parent_columns: tuple[str, ...]
    constraint: str | None = None  # None: listed in the policy, no foreign key
    on_delete: str | None = None
    deferrable: bool = False

    @property
    def child(self) -> Table:
        return (self.schema, self.table)

    @property
    def via_fk(self) -> bool:
        return self.constraint is not None

    @property
    def is_self(self) -> bool:
        return self.child == self.parent

    def describe(self) -> str:
        """How an error names the link: the constraint, its table and columns, its action."""
        cols = ", ".join(self.columns)
        if not self.via_fk:
            return f"{self.schema}.{self.table} ({cols}), listed in the policy"
        action = _ON_DELETE.get(self.on_delete or "a", self.on_delete)
        return (f"constraint {self.constraint} on {self.schema}.{self.table} ({cols}) referencing "
                f"{self.parent[0]}.{self.parent[1]} ({', '.join(self.parent_columns)}) ON DELETE {action}")


@dataclass(frozen=True)
class RelatedGraph:
    """Every link reachable from the live table, and the tables below it, parents before children."""

    live: Table
    links: tuple[Related, ...]
    tables: tuple[Table, ...]  # below the live table; move order is the reverse (deepest first)
    cycle: Related | None = None  # a link closing a cycle between tables below the live table

    @property
    def children(self) -> list[Related]:
        """Links from another table straight to the live table."""
        return [r for r in self.links if r.parent == self.live and not r.is_self]

    @property
    def self_links(self) -> list[Related]:
        """The live table's references to itself."""
        return [r for r in self.links if r.is_self and r.parent == self.live]

    def into(self, table: Table) -> list[Related]:
        """Links from ``table`` to the tables it belongs to, its own references left out."""
        return [r for r in self.links if r.child == table and not r.is_self]

    def self_links_of(self, table: Table) -> list[Related]:
        return [r for r in self.links if r.child == table and r.is_self]

    def has_children(self, table: Table) -> bool:
        return any(r.parent == table for r in self.links)


def related_graph(db: Database, policy: Policy) -> RelatedGraph:
    """Walk the catalogue from the live table (and the tables the policy lists) to every table
    that references it, directly or through others; cycles end the walk where they close."""
    live: Table = (policy.schema_name, policy.live_table)
    links: list[Related] = []
    for listed in policy.related_tables:
        child: Table = (policy.schema_name, listed.table)
        if any(fk.table == listed.table and fk.schema == child[0]
               for fk in foreign_keys_to(db, *live)):
            continue  # its foreign key is the link
        if not table_exists(db, *child):
            raise SchemaError(f"related table {listed.table!r} listed in the policy does not exist")
        if listed.column not in {c.name for c in columns(db, *child)}:
            raise SchemaError(f"related table {listed.table!r} has no column {listed.column!r}")
        links.append(Related(*child, (listed.column,), live, (live_shape(db, policy).pk,)))
    seen, queue = {live}, [live, *(r.child for r in links)]
    seen.update(queue)
    while queue:
        parent = queue.pop(0)
        for fk in foreign_keys_to(db, *parent):
            link = Related(fk.schema, fk.table, fk.columns, parent, fk.ref_columns, fk.name, fk.on_delete,
                           fk.deferrable)
            links.append(link)
            if link.child not in seen:
                seen.add(link.child)
                queue.append(link.child)
    tables, cycle = _top_down(live, links, [t for t in seen if t != live])
    return RelatedGraph(live, tuple(links), tables, cycle)


def _top_down(live: Table, links: list[Related], tables: list[Table]) -> tuple[tuple[Table, ...], Related | None]:
    """The tables below the live table, each after every table it references; a cycle between
    them is returned (one of its links) and broken where found, for ``preflight`` to report."""
    ordered: list[Table] = []
    pending = sorted(tables)
    cycle = None
    while pending:
        placed = {live, *ordered}
        ready = [t for t in pending
                 if all(r.parent in placed for r in links if r.child == t and not r.is_self and r.parent != live)]
        if not ready:
            cycle = cycle or next(r for r in links if r.child == pending[0] and not r.is_self
                                  and r.parent not in placed)
            ready = pending[:1]
        ordered.extend(ready)
        pending = [t for t in pending if t not in ready]
    return tuple(ordered), cycle


def preflight(db: Database, policy: Policy, graph: RelatedGraph) -> None:
    """Refuse, before any row moves, a configuration where a constraint would act on a row outside
    the batch (delete, null, default it) or fail the run half-way. Names the constraint."""
    if policy.related_mode == "keep":
        acting = [r for r in graph.children if r.via_fk]
        if acting:
            raise SchemaError(
                f"related mode 'keep' is impossible: {acting[0].describe()}, so deleting a live row would fail or "
                "change that table; use related mode 'skip' or 'move'")
    if policy.related_mode == "move":
        back = [r for r in graph.links if r.child == graph.live and not r.is_self]
        if back:
            raise SchemaError(
                f"related mode 'move' cannot move rows of {back[0].parent[0]}.{back[0].parent[1]}: {back[0].describe()}"
                ", so live rows would have to move with them; use related mode 'skip'")
        if graph.cycle is not None:
            raise SchemaError(
                f"related mode 'move' cannot order the related tables: {graph.cycle.describe()} closes a cycle"
                " between them; use related mode 'skip'")
    rules = policy.rules
    needed = {
        "no_active_aod": rules.aod_table, "no_unpaid_installment": rules.installment_table,
        "no_upcoming_follow_up": rules.follow_up_table, "no_recent_call": rules.call_log_table,
    }
    for rule in rules.enabled:
        if not table_exists(db, policy.schema_name, needed[rule]):
            raise SchemaError(f"rule {rule} needs table {policy.schema_name}.{needed[rule]}, which does not exist")


# -- SQL builders: small and self-contained, each takes aliases and column lists -------------------
def column_list(alias: str, cols: tuple[str, ...]) -> str:
    return ", ".join(f"{alias}.{quote(c)}" for c in cols)


def matches(child: str, child_cols: tuple[str, ...], parent: str, parent_cols: tuple[str, ...]) -> str:
    """``child``'s columns equal ``parent``'s: a row (or NULL, never true, where the foreign key
    has a NULL column and so references nothing)."""
    if len(child_cols) == 1:
        return f"{child}.{quote(child_cols[0])} = {parent}.{quote(parent_cols[0])}"
    return f"({column_list(child, child_cols)}) = ({column_list(parent, parent_cols)})"


def references_set(alias: str, cols: tuple[str, ...]) -> str:
    """The row references something: none of the foreign key's columns is NULL (MATCH SIMPLE)."""
    return " AND ".join(f"{alias}.{quote(c)} IS NOT NULL" for c in cols)


def not_referenced(link: Related, alias: str) -> str:
    """No row of ``link``'s table references the row ``alias`` (of the link's parent table)."""
    match = matches("r", link.columns, alias, link.parent_columns)
    return f"NOT EXISTS (SELECT 1 FROM {qualified(*link.child)} r WHERE {match})"


def not_referenced_by_itself(link: Related, alias: str, archive: str) -> str:
    """No other live row references the row ``alias`` through the live table's reference to itself
    ``link``, nor does a row this run archived (``:run_job``; see ``Eligibility``). A row
    referencing itself holds nothing back: deleting it acts on no other row."""
    live_match = matches("s", link.columns, alias, link.parent_columns)
    return (f"NOT EXISTS (SELECT 1 FROM {qualified(*link.child)} s WHERE {live_match}"
            f" AND (s.tableoid, s.ctid) <> ({alias}.tableoid, {alias}.ctid))"
            f" AND NOT EXISTS (SELECT 1 FROM {archive} a WHERE a.archive_job_id = CAST(:run_job AS uuid)"
            f" AND {matches('a', link.columns, alias, link.parent_columns)})")


def moving(graph: RelatedGraph, table: Table, alias: str, in_batch: Callable[[str], str], depth: int = 0) -> str:
    """A predicate true when the row ``alias`` of ``table`` moves with the batch: a live row the
    batch holds (``in_batch``), or a row referencing a moving row through a link of the graph,
    directly or, within its own table, through its references to itself (any depth)."""
    if table == graph.live:
        return in_batch(alias)
    own = graph.self_links_of(table)
    if not own:
        return _from_parents(graph, table, alias, in_batch, depth)
    # A table referencing itself: the rows reached from the moving ones through those references,
    # walked by (tableoid, ctid) so that any key shape (or none) works.
    y, q, w, t = f"y{depth}", f"q{depth}", f"w{depth}", qualified(*table)
    step = " OR ".join(f"({matches(y, r.columns, q, r.parent_columns)})" for r in own)
    return (f"(({alias}.tableoid, {alias}.ctid) IN (WITH RECURSIVE {w}(o, t) AS ("
            f"SELECT {y}.tableoid, {y}.ctid FROM {t} {y} WHERE {_from_parents(graph, table, y, in_batch, depth)}"
            f" UNION SELECT {y}.tableoid, {y}.ctid FROM {t} {y} JOIN {t} {q} ON {step}"
            f" JOIN {w} ON {q}.tableoid = {w}.o AND {q}.ctid = {w}.t) SELECT o, t FROM {w}))")


def _from_parents(graph: RelatedGraph, table: Table, alias: str, in_batch: Callable[[str], str], depth: int) -> str:
    """The row ``alias`` of ``table`` references a moving row of another table."""
    p = f"p{depth}"
    return "(" + " OR ".join(
        f"({column_list(alias, r.columns)}) IN (SELECT {column_list(p, r.parent_columns)}"
        f" FROM {qualified(*r.parent)} {p} WHERE {moving(graph, r.parent, p, in_batch, depth + 1)})"
        for r in graph.into(table)) + ")"


def lock_moving_sql(graph: RelatedGraph, table: Table, in_batch: Callable[[str], str]) -> str:
    """Lock the rows of ``table`` that move with the batch, before any moves: a row inserted
    meanwhile below one of them would otherwise be cascaded away, or fail the batch."""
    return (f"SELECT count(*) FROM (SELECT 1 FROM {qualified(*table)} x"
            f" WHERE {moving(graph, table, 'x', in_batch)} FOR UPDATE OF x) z")


def move_rows_sql(graph: RelatedGraph, table: Table, backup: Table, cols: tuple[str, ...],
                  in_batch: Callable[[str], str]) -> str:
    """Move the rows of ``table`` that move with the batch to ``backup`` (``RELATED_META`` columns,
    job ``:job``). Run deepest table first: the rows' own children have gone already."""
    names = ", ".join(quote(c) for c in cols)
    return (f"WITH m AS (DELETE FROM {qualified(*table)} x WHERE {moving(graph, table, 'x', in_batch)}"
            f" RETURNING {names}) INSERT INTO {qualified(*backup)} ({names}, archived_at, archive_job_id)"
            f" SELECT {names}, now(), CAST(:job AS uuid) FROM m")


def restore_rows_sql(graph: RelatedGraph, table: Table, backup: Table, cols: tuple[str, ...],
                     in_batch: Callable[[str], str], selected: Callable[[str], str]) -> str:
    """Bring back the rows of ``backup`` (chosen by ``selected``, a predicate on an alias) that
    reference a row of the restored batch, live again, and (the table referencing itself) the
    archived rows referencing those, to any depth: one statement, whose foreign keys are checked
    at its end, whatever order the rows reference each other in. Run parents first. A row whose
    foreign key references a row not live (its parent still archived, or in a later batch) stays,
    and so do the rows referencing it through the table's own references: a later batch takes them."""
    names = ", ".join(quote(c) for c in cols)
    y, q, t = "y", "q", qualified(*backup)
    # Its foreign keys to other tables reference live rows (parents are restored first).
    fits = " AND ".join([selected(y)] + [
        f"NOT ({references_set(y, r.columns)} AND NOT EXISTS (SELECT 1 FROM {qualified(*r.parent)} l"
        f" WHERE {matches(y, r.columns, 'l', r.parent_columns)}))" for r in graph.into(table) if r.via_fk])
    base = f"{fits} AND " + _from_parents(graph, table, y, in_batch, 1)
    own = graph.self_links_of(table)
    if own:
        step = " OR ".join(f"({matches(y, r.columns, q, r.parent_columns)})" for r in own)
        # bad: a walked row referencing, through the table's own references, a row neither live
        # nor walked, or a bad row.
        orphan = " OR ".join(
            f"({references_set(y, r.columns)} AND NOT EXISTS (SELECT 1 FROM {qualified(*table)} l"
            f" WHERE {matches(y, r.columns, 'l', r.parent_columns)}) AND NOT EXISTS (SELECT 1 FROM {t} z"
            f" JOIN w v ON z.ctid = v.t WHERE {matches(y, r.columns, 'z', r.parent_columns)}))" for r in own)
        chosen = (f"x.ctid IN (WITH RECURSIVE w(t) AS (SELECT {y}.ctid FROM {t} {y} WHERE {base}"
                  f" UNION SELECT {y}.ctid FROM {t} {y} JOIN {t} {q} ON {step} JOIN w ON {q}.ctid = w.t"
                  f" WHERE {fits}), bad(t) AS (SELECT {y}.ctid FROM {t} {y} JOIN w ON {y}.ctid = w.t WHERE {orphan}"
                  f" UNION SELECT {y}.ctid FROM {t} {y} JOIN w ON {y}.ctid = w.t JOIN {t} {q} ON {step}"
                  f" JOIN bad ON {q}.ctid = bad.t) SELECT t FROM w EXCEPT SELECT t FROM bad)")
    else:
        chosen = f"x.ctid IN (SELECT {y}.ctid FROM {t} {y} WHERE {base})"
    return (f"WITH m AS (DELETE FROM {t} x WHERE {chosen} RETURNING {names})"
            f" INSERT INTO {qualified(*table)} ({names}) OVERRIDING SYSTEM VALUE SELECT {names} FROM m")


def missing_referent(graph: RelatedGraph, alias: str) -> str:
    """The archived row ``alias`` references, through the live table's references to itself, a row
    that is not live (nor itself): inserting it now would fail its foreign key."""
    live = qualified(*graph.live)
    return "(" + " OR ".join(
        f"({references_set(alias, r.columns)} AND NOT ({matches(alias, r.columns, alias, r.parent_columns)})"
        f" AND NOT EXISTS (SELECT 1 FROM {live} l WHERE {matches(alias, r.columns, 'l', r.parent_columns)}))"
        for r in graph.self_links) + ")" if graph.self_links else "false"
