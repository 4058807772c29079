"""The catalogue, read only: the live table's shape (columns, key, age column), the foreign keys that
reference a table, its indexes and partitions, and the columns signature a batch re-reads.

Nothing here changes the database; ``migration.py`` builds on it to create and update the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import Policy
from .db import Database
from .exceptions import SchemaError
from .identifiers import qualified, quote


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    generated: bool


@dataclass(frozen=True)
class ForeignKey:
    """One foreign-key constraint: ``schema.table (columns)`` references ``ref_columns`` of the
    table it was looked up for (its primary key or any other unique key, in the constraint's order)."""

    schema: str
    table: str
    columns: tuple[str, ...]
    on_delete: str  # a=no action, r=restrict, c=cascade, n=set null, d=set default
    name: str
    ref_columns: tuple[str, ...]
    deferrable: bool


AGE_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")


@dataclass(frozen=True)
class TableShape:
    """What the engine needs to know about the live table.

    ``key``: the columns that tell rows apart (the primary key, or else a unique index on NOT NULL
    columns), in index order. ``walk``: the keyset the batches walk, the age column then every key
    column not already in it; its values, as text, are a run's cursor.
    """

    columns: tuple[Column, ...]
    key: tuple[Column, ...]
    age: Column
    partitioned: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.key)

    @property
    def walk(self) -> tuple[Column, ...]:
        return (self.age, *(c for c in self.key if c.name != self.age.name))

    @property
    def pk(self) -> str:
        """The key's one column, for what only a single-column key supports (the Phase-2 rules)."""
        if len(self.key) != 1:
            raise SchemaError(f"this needs a single-column key; the live table's key is ({', '.join(self.key_names)})")
        return self.key[0].name

    @property
    def pk_type(self) -> str:
        """The type of the key's one column (see ``pk``)."""
        return next(c.type for c in self.key if c.name == self.pk)

    def key_list(self, alias: str) -> str:
        """``a.k1, a.k2``: the key columns of ``alias``."""
        return ", ".join(f"{alias}.{quote(c.name)}" for c in self.key)

    def key_equal(self, left: str, right: str) -> str:
        """The key of ``left`` equals the key of ``right`` (a row comparison, index-friendly)."""
        return f"({self.key_list(left)}) = ({self.key_list(right)})"

    def key_text(self, alias: str) -> str:
        """The key of ``alias`` as one text: the value for one column, the row's text for several."""
        if len(self.key) == 1:
            return f"CAST({alias}.{quote(self.key[0].name)} AS text)"
        return f"CAST(ROW({self.key_list(alias)}) AS text)"

    def key_arrays(self, prefix: str) -> str:
        """A ``SELECT`` of key tuples from one text-array parameter per key column (``:prefix0`` ...):
        how a list of keys of any width crosses the wire (see ``key_params``)."""
        arrays = ", ".join(f"CAST(CAST(:{prefix}{i} AS text[]) AS {c.type}[])" for i, c in enumerate(self.key))
        return f"SELECT * FROM unnest({arrays})"

    @staticmethod
    def key_params(prefix: str, keys: list[tuple[str, ...]], width: int) -> dict[str, list[str]]:
        """``key_arrays``' parameters: keys given as tuples of their columns' text."""
        return {f"{prefix}{i}": [k[i] for k in keys] for i in range(width)}



_COLUMNS_SQL = """
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       a.attgenerated <> '' AS generated
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relname = :table AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum"""

# Candidate keys: the primary key, then unique indexes on NOT NULL columns (no expression, no
# predicate, valid), fewest columns first. Key columns only (not an index's INCLUDE columns), in
# index order. A partitioned parent (relkind 'p') has its own pg_index rows for them.
_KEYS_SQL = """
SELECT i.indisprimary AS primary, c.relkind = 'p' AS partitioned,
       array(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.n
             WHERE k.o <= i.indnkeyatts ORDER BY k.o) AS columns
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE n.nspname = :schema AND c.relname = :table AND c.relkind IN ('r', 'p')
  AND (i.indisprimary OR (i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indisvalid
       AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey) WITH ORDINALITY k(n, o)
                       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.n
                       WHERE k.o <= i.indnkeyatts AND NOT a.attnotnull)))
ORDER BY i.indisprimary DESC, i.indnkeyatts, ic.relname"""

_PARTITIONED_SQL = """
SELECT c.relkind = 'p' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relname = :table"""

# Every foreign key referencing a table, on whichever unique key (confkey names the referenced
# columns, in the constraint's order). A constraint on a partitioned table is listed once: the
# copies PostgreSQL keeps on each partition (conparentid <> 0) are left out.
_FKS_TO_SQL = """
SELECT cn.nspname AS schema, cc.relname AS table, con.confdeltype AS on_delete, con.conname AS name,
       con.condeferrable AS deferrable,
       array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o) AS columns,
       array(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o) AS ref_columns
FROM pg_constraint con
JOIN pg_class pc ON pc.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
JOIN pg_class cc ON cc.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0 AND pn.nspname = :schema AND pc.relname = :table
ORDER BY cc.relname, con.conname"""

# Indexes of a table as arrays of column names in index order (expression columns show as NULL).
_INDEXES_SQL = """
SELECT i.indisvalid AS valid, ic.relname AS name,
       array(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(n, o)
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o) AS columns
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE n.nspname = :schema AND c.relname = :table"""

# The partitions directly under a partitioned table, with whether each is partitioned itself.
_PARTITIONS_SQL = """
SELECT n.nspname AS schema, c.relname AS table, c.relkind = 'p' AS partitioned
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = CAST(:parent AS regclass) ORDER BY c.relname"""


# Every column of the tables (name, type, generated or not) in one string. The engine reads it when
# it builds a run's statements and again inside every batch, after the batch's rows are locked (no
# DDL can change the table until the batch ends): a difference means a column came or went in between.
COLUMNS_SIGNATURE_SQL = (
    "SELECT string_agg(CAST(a.attrelid AS text) || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)"
    " || ' ' || CAST(a.attgenerated AS text), ', ' ORDER BY a.attrelid, a.attnum)"
    " FROM pg_attribute a WHERE a.attrelid = ANY(CAST(:sig_rels AS oid[])) AND a.attnum > 0 AND NOT a.attisdropped")


def table_oids(db: Database, tables: list[tuple[str, str]]) -> list[int]:
    """The oids of ``(schema, table)`` pairs, in order, in one query."""
    names = [qualified(schema, table) for schema, table in tables]
    return [int(r[0]) for r in db.run("SELECT CAST(CAST(n AS regclass) AS oid) FROM unnest(CAST(:names AS text[]))"
                                      " WITH ORDINALITY u(n, i) ORDER BY i", names=names)]


def table_exists(db: Database, schema: str, table: str) -> bool:
    return bool(db.scalar("SELECT to_regclass(:name) IS NOT NULL", name=f"{quote(schema)}.{quote(table)}"))


def columns(db: Database, schema: str, table: str) -> tuple[Column, ...]:
    return tuple(Column(**r) for r in db.rows(_COLUMNS_SQL, schema=schema, table=table))


def live_shape(db: Database, policy: Policy) -> TableShape:
    schema, table = policy.schema_name, policy.live_table
    cols = columns(db, schema, table)
    if not cols:
        raise SchemaError(f"live table {schema}.{table} does not exist")
    by_name = {c.name: c for c in cols}
    age = by_name.get(policy.age_column)
    if age is None:
        raise SchemaError(f"live table {schema}.{table} has no column {policy.age_column!r} (the age column)")
    if age.type not in AGE_TYPES:
        raise SchemaError(f"the age column {table}.{age.name} is {age.type}; it must be one of {', '.join(AGE_TYPES)}")
    key = table_key(db, schema, table)
    if not key:
        raise SchemaError(f"live table {schema}.{table} has no primary key and no unique index on NOT NULL columns:"
                          " the archiver needs one to tell rows apart and to keep them unique in the archive;"
                          " add a primary key")
    return TableShape(columns=cols, key=tuple(by_name[k] for k in key), age=age,
                      partitioned=is_partitioned(db, schema, table))


def table_key(db: Database, schema: str, table: str) -> tuple[str, ...]:
    """The columns that identify a row: the primary key, else the narrowest unique index on NOT NULL
    columns; empty when the table has neither."""
    rows = db.rows(_KEYS_SQL, schema=schema, table=table)
    return tuple(rows[0]["columns"]) if rows else ()


def foreign_keys_to(db: Database, schema: str, table: str) -> list[ForeignKey]:
    return [ForeignKey(r["schema"], r["table"], tuple(r["columns"]), r["on_delete"], r["name"],
                       tuple(r["ref_columns"]), bool(r["deferrable"]))
            for r in db.rows(_FKS_TO_SQL, schema=schema, table=table)]


def has_index(db: Database, schema: str, table: str, cols: tuple[str, ...]) -> bool:
    """Whether a valid index on ``table`` leads with ``cols``."""
    return any(r["valid"] and tuple(r["columns"][: len(cols)]) == cols for r in indexes(db, schema, table))


def indexes(db: Database, schema: str, table: str) -> list[dict[str, Any]]:
    """The indexes of ``table``: ``name``, ``valid`` and ``columns`` (in index order; an expression is None)."""
    return db.rows(_INDEXES_SQL, schema=schema, table=table)


def is_partitioned(db: Database, schema: str, table: str) -> bool:
    return bool(db.scalar(_PARTITIONED_SQL, schema=schema, table=table))


def partitions(db: Database, parent: str) -> list[dict[str, Any]]:
    """The partitions directly under ``parent`` (qualified): ``schema``, ``table``, ``partitioned``."""
    return db.rows(_PARTITIONS_SQL, parent=parent)


def is_partition_of(db: Database, parent: str, child: str) -> bool:
    """Whether ``child`` (an index or table, qualified) is attached to ``parent`` (qualified)."""
    return bool(db.scalar("SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = CAST(:p AS regclass)"
                          " AND inhrelid = CAST(:c AS regclass))", p=parent, c=child))
