"""Hypothesis strategies for the foreign-key graph: small schemas around a live table, their data,
the DDL and rows that build them, and an oracle of what a run must archive.

A schema is the live table (key ``id`` of type bigint, text or uuid; a unique column ``code``;
maybe a reference to itself) and 0-3 related tables ``r0..r2``, each referencing the live table or
an earlier related table (chains and fans) on its primary key, its unique column, or (the live
table) the two-column key ``(line_of_business, code)``, with any ON DELETE action, deferrable or
not, and maybe a reference to itself (``up``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

ACTIONS = ("NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT")
DEFERRABLE = ("", "DEFERRABLE INITIALLY IMMEDIATE", "DEFERRABLE INITIALLY DEFERRED")
KEY_TYPES = ("bigint", "text", "uuid")
LIVE = -1  # a link's parent: the live table, or the index of an earlier related table
RETENTION_DAYS = 60


@dataclass(frozen=True)
class Link:
    parent: int
    key: str  # id | code | pair (the live table's (line_of_business, code))
    action: str
    deferrable: str


@dataclass(frozen=True)
class Table:
    link: Link
    self_action: str | None  # a reference to itself (``up``), with this ON DELETE action


@dataclass(frozen=True)
class Schema:
    id_type: str
    code_type: str
    self_link: Link | None  # the live table's reference to itself (``referred``)
    related: tuple[Table, ...]
    back_ref: bool  # the live table references r0 (move mode refuses)
    mode: str


@dataclass(frozen=True)
class LiveRow:
    age_days: int
    lob: str
    ref: int | None  # index of the live row it references (self link)


@dataclass(frozen=True)
class RelatedRow:
    ref: int | None  # index of the parent row
    up: int | None  # index of an earlier row of the same table


@dataclass(frozen=True)
class Data:
    live: tuple[LiveRow, ...]
    related: tuple[tuple[RelatedRow, ...], ...]
    key_order: tuple[int, ...]  # the live keys' order differs from the age order


@st.composite
def links(draw: st.DrawFn, index: int) -> Link:
    parent = draw(st.sampled_from([LIVE, *range(index)]))
    key = draw(st.sampled_from(["id", "code", "pair"] if parent == LIVE else ["id", "code"]))
    return Link(parent, key, draw(st.sampled_from(ACTIONS)), draw(st.sampled_from(DEFERRABLE)))


@st.composite
def schemas(draw: st.DrawFn) -> Schema:
    count = draw(st.integers(0, 3))
    related = tuple(Table(draw(links(i)), draw(st.none() | st.sampled_from(ACTIONS))) for i in range(count))
    self_link = draw(st.none() | st.builds(Link, st.just(LIVE), st.sampled_from(["id", "code"]),
                                           st.sampled_from(ACTIONS), st.sampled_from(DEFERRABLE)))
    return Schema(draw(st.sampled_from(KEY_TYPES)), draw(st.sampled_from(KEY_TYPES)), self_link, related,
                  bool(related) and draw(st.integers(0, 9)) == 0, draw(st.sampled_from(["skip", "move", "keep"])))


def _reference(rows: int) -> st.SearchStrategy[int | None]:
    """An index into ``rows`` rows, or None (no reference) about a third of the time."""
    return st.integers(-max(1, rows // 2), rows - 1).map(lambda i: i if i >= 0 else None)


@st.composite
def datasets(draw: st.DrawFn, schema: Schema) -> Data:
    n = draw(st.integers(1, 7))
    old = st.integers(RETENTION_DAYS + 1, RETENTION_DAYS + 60)
    young = st.integers(0, RETENTION_DAYS - 1)
    age = st.sampled_from([True, True, False]).flatmap(lambda is_old: old if is_old else young)
    live = tuple(LiveRow(draw(age), draw(st.sampled_from(["Life", "Motor"])),
                         draw(_reference(n)) if schema.self_link else None) for _ in range(n))
    sizes = {LIVE: n}
    related = []
    for i, table in enumerate(schema.related):
        m = draw(st.integers(0, 5))
        parent_rows = sizes[table.link.parent]
        rows = tuple(RelatedRow(draw(_reference(parent_rows)) if parent_rows else None,
                                draw(_reference(j)) if table.self_action and j else None)
                     for j in range(m))
        related.append(rows)
        sizes[i] = m
    return Data(live, tuple(related), tuple(draw(st.permutations(range(n)))))


# -- building it ----------------------------------------------------------------------------
def live_key(schema: Schema, data: Data, i: int) -> Any:
    return _value(schema.id_type, data.key_order[i] + 1)


def live_code(schema: Schema, i: int) -> Any:
    return _value(schema.code_type, 1000 + i)


def _value(kind: str, n: int) -> Any:
    if kind == "bigint":
        return n
    if kind == "text":
        return f"k{n:04d}"
    return str(uuid.UUID(int=n * 7919))


def _column_type(schema: Schema, parent: int, key: str) -> str:
    if parent == LIVE:
        return schema.id_type if key == "id" else schema.code_type
    return "integer" if key == "id" else "text"


def ddl(schema: Schema) -> list[str]:
    """CREATE TABLE statements, parents first (the live table's reference to r0 comes last)."""
    out = []
    self_ref = ""
    if schema.self_link:
        s = schema.self_link
        self_ref = (f", referred {_column_type(schema, LIVE, s.key)} DEFAULT NULL"
                    f" REFERENCES nic_cc_customer ({s.key}) ON DELETE {s.action} {s.deferrable}")
    out.append(f"CREATE TABLE nic_cc_customer (id {schema.id_type} PRIMARY KEY, code {schema.code_type} NOT NULL"
               " UNIQUE, line_of_business text NOT NULL, created_at timestamptz NOT NULL"
               f"{self_ref}, UNIQUE (line_of_business, code))")
    for i, table in enumerate(schema.related):
        link = table.link
        parent = "nic_cc_customer" if link.parent == LIVE else f"r{link.parent}"
        if link.key == "pair":
            ref = (f"ref_lob text DEFAULT NULL, ref {schema.code_type} DEFAULT NULL, FOREIGN KEY (ref_lob, ref)"
                   f" REFERENCES {parent} (line_of_business, code)")
        else:
            ref = f"ref {_column_type(schema, link.parent, link.key)} DEFAULT NULL REFERENCES {parent} ({link.key})"
        up = (f", up integer DEFAULT NULL REFERENCES r{i} (id) ON DELETE {table.self_action}"
              if table.self_action else "")
        out.append(f"CREATE TABLE r{i} (id integer PRIMARY KEY, code text NOT NULL UNIQUE, {ref}"
                   f" ON DELETE {link.action} {link.deferrable}{up})")
    if schema.back_ref:
        out.append("ALTER TABLE nic_cc_customer ADD COLUMN main integer CONSTRAINT customer_main_r0_fk"
                   " REFERENCES r0 (id)")
    return out


def parent_value(schema: Schema, data: Data, link: Link, row: int) -> Any:
    if link.parent == LIVE:
        return live_key(schema, data, row) if link.key == "id" else live_code(schema, row)
    return row if link.key == "id" else f"r{link.parent}-{row}"


def inserts(schema: Schema, data: Data) -> list[tuple[str, dict[str, Any]]]:
    """The rows, as statements with their parameters, parents before the rows referencing them."""
    out: list[tuple[str, dict[str, Any]]] = []
    key_cast, code_cast = f"CAST(:k AS {schema.id_type})", f"CAST(:c AS {schema.code_type})"
    for i, row in enumerate(data.live):
        out.append((f"INSERT INTO nic_cc_customer (id, code, line_of_business, created_at) VALUES ({key_cast},"
                    f" {code_cast}, :lob, now() - make_interval(days => :d))",
                    {"k": live_key(schema, data, i), "c": live_code(schema, i), "lob": row.lob, "d": row.age_days}))
    if schema.self_link:
        cast = key_cast.replace(":k", ":r") if schema.self_link.key == "id" else code_cast.replace(":c", ":r")
        for i, row in enumerate(data.live):
            if row.ref is not None:
                out.append((f"UPDATE nic_cc_customer SET referred = {cast} WHERE id = {key_cast}",
                            {"r": parent_value(schema, data, schema.self_link, row.ref),
                             "k": live_key(schema, data, i)}))
    for t, (table, rows) in enumerate(zip(schema.related, data.related, strict=True)):
        ref_type = (schema.code_type if table.link.key == "pair"
                    else _column_type(schema, table.link.parent, table.link.key))
        for j, row in enumerate(rows):
            value = None if row.ref is None else parent_value(
                schema, data, Link(table.link.parent, "code" if table.link.key == "pair" else table.link.key,
                                   "", ""), row.ref)
            lob = data.live[row.ref].lob if table.link.key == "pair" and row.ref is not None else None
            cols = "id, code, ref" + (", ref_lob" if table.link.key == "pair" else "") + (", up" if row.up is not None
                                                                                          else "")
            vals = f":j, :code, CAST(:ref AS {ref_type})" + (", :lob" if table.link.key == "pair" else "") + (
                ", :up" if row.up is not None else "")
            out.append((f"INSERT INTO r{t} ({cols}) VALUES ({vals})",
                        {"j": j, "code": f"r{t}-{j}", "ref": value, "lob": lob, "up": row.up}))
    return out


# -- the oracle -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expected:
    refused: bool
    live: frozenset[int]  # indexes of the live rows a run archives
    related: tuple[frozenset[int], ...]  # per related table, the rows that move with them


def expected(schema: Schema, data: Data) -> Expected:
    """What one run must archive, from the rules (README, "Related records") applied to the data."""
    children = [t for t, table in enumerate(schema.related) if table.link.parent == LIVE]
    if (schema.mode == "keep" and children) or (schema.mode == "move" and schema.back_ref):
        return Expected(True, frozenset(), tuple(frozenset() for _ in schema.related))
    eligible = set()
    for i, row in enumerate(data.live):
        referenced = any(j != i and other.ref == i for j, other in enumerate(data.live))
        has_children = schema.mode == "skip" and any(r.ref == i for t in children for r in data.related[t])
        if row.age_days > RETENTION_DAYS and not referenced and not has_children:
            eligible.add(i)
    moved = below(schema, data, eligible) if schema.mode == "move" else tuple(frozenset() for _ in schema.related)
    return Expected(False, frozenset(eligible), moved)


def below(schema: Schema, data: Data, live_rows: set[int]) -> tuple[frozenset[int], ...]:
    """Per related table, its rows below ``live_rows`` (indexes of live rows): referencing one of
    them, or a row below them, through the links and the tables' references to themselves."""
    found: list[frozenset[int]] = []
    for t, table in enumerate(schema.related):
        parents = live_rows if table.link.parent == LIVE else found[table.link.parent]
        rows = data.related[t]
        going = {j for j, r in enumerate(rows) if r.ref in parents}
        while True:  # and the rows referencing those through the table's reference to itself
            more = {j for j, r in enumerate(rows) if r.up in going} - going
            if not more:
                break
            going |= more
        found.append(frozenset(going))
    return tuple(found)
