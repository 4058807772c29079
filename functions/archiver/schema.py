"""Schema: introspection of the live table, and the idempotent migration of everything the job needs.

Creates the run log, the archive table (and related archive tables in ``move`` mode), the
index the batch query walks, and the indexes missing on child tables' foreign-key columns.
Brings a drifted archive table up to the live table's columns, or stops with a clear message.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from .config import Policy
from .db import Database
from .exceptions import SchemaError
from .identifiers import qualified, quote
from .states import ACTIVE_STATES, RunState

# Columns the archive tables carry on top of the live columns.
ARCHIVE_META = ("archived_at", "archived_by", "archive_reason", "archive_job_id")
RELATED_META = ("archived_at", "archive_job_id")

# The run log: one row per run (archive, restore, purge, dry run). Defined once; migrate
# creates the table from it and adds any column an older version of the log lacks.
STATES = tuple(RunState)
# An active run, in SQL, spelt as the one-active index's predicate so the planner can use it.
ACTIVE_SQL = "state IN (" + ", ".join(f"'{s}'" for s in ACTIVE_STATES) + ")"
LOG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "bigserial PRIMARY KEY"),
    ("job_id", "uuid NOT NULL UNIQUE"),
    ("kind", "text NOT NULL DEFAULT 'archive'"),
    ("policy_key", "text NOT NULL"),
    ("run_date", "timestamptz NOT NULL DEFAULT now()"),
    ("state", "text NOT NULL DEFAULT 'pending' CHECK (state IN ("
              + ", ".join(f"'{s}'" for s in STATES) + "))"),
    # The seeds' status vocabulary ('success', 'partial', 'failed', 'rolled_back'), derived.
    ("status", "text GENERATED ALWAYS AS (CASE state WHEN 'succeeded' THEN 'success' "
               "WHEN 'pending' THEN 'running' ELSE state END) STORED"),
    ("dry_run", "boolean NOT NULL DEFAULT false"),
    ("trigger", "text NOT NULL DEFAULT 'manual'"),
    ("scheduled_for", "timestamptz"),
    ("cutoff", "timestamptz"),
    ("batch_size", "integer NOT NULL DEFAULT 1000"),
    ("options", "jsonb NOT NULL DEFAULT '{}'::jsonb"),
    ("eligible", "bigint"),
    ("records_archived", "bigint NOT NULL DEFAULT 0"),
    ("records_failed", "bigint NOT NULL DEFAULT 0"),
    ("processed", "bigint GENERATED ALWAYS AS (records_archived + records_failed) STORED"),
    ("percent_complete", "numeric(5,1) GENERATED ALWAYS AS (CASE WHEN state = 'succeeded' THEN 100 "
                         "WHEN eligible > 0 THEN LEAST(100, round(100.0 * (records_archived + records_failed)"
                         " / eligible, 1)) ELSE 0 END) STORED"),
    ("batches", "integer NOT NULL DEFAULT 0"),
    ("hop", "integer NOT NULL DEFAULT 0"),
    ("next_hop", "integer"),
    # The keyset row (age column, key columns) of the last row a run has passed, each value as
    # text, cast back to its column's type where compared: the comparison is exactly the index order.
    ("cursor_row", "text[]"),
    ("lease_owner", "text"),
    ("lease_expires_at", "timestamptz"),
    ("heartbeat_at", "timestamptz"),
    ("cancel_requested", "boolean NOT NULL DEFAULT false"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("execution_time_ms", "bigint"),
    ("slowest_batch_ms", "integer NOT NULL DEFAULT 0"),
    ("message", "text"),
    ("error_message", "text"),
    ("breakdown", "jsonb"),
)


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


@dataclass
class MigrationReport:
    created: list[str] = field(default_factory=list)
    added_columns: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {"created": self.created, "added_columns": self.added_columns,
                "indexes": self.indexes, "warnings": self.warnings}


# -- introspection ------------------------------------------------------------------------
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
    partitioned = bool(db.scalar(_PARTITIONED_SQL, schema=schema, table=table))
    return TableShape(columns=cols, key=tuple(by_name[k] for k in key), age=age, partitioned=partitioned)


def table_key(db: Database, schema: str, table: str) -> tuple[str, ...]:
    """The columns that identify a row: the primary key, else the narrowest unique index on NOT NULL
    columns; empty when the table has neither."""
    rows = db.rows(_KEYS_SQL, schema=schema, table=table)
    return tuple(rows[0]["columns"]) if rows else ()


def foreign_keys_to(db: Database, schema: str, table: str) -> list[ForeignKey]:
    return [ForeignKey(r["schema"], r["table"], tuple(r["columns"]), r["on_delete"], r["name"],
                       tuple(r["ref_columns"]), bool(r["deferrable"]))
            for r in db.rows(_FKS_TO_SQL, schema=schema, table=table)]


def _index_name(table: str, cols: tuple[str, ...], suffix: str = "archiver_idx") -> str:
    name = f"{table}_{'_'.join(cols)}_{suffix}"
    if len(name) > 63:  # PostgreSQL truncates silently; keep names unique and stable instead.
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[:50]}_{digest}"
    return name


def has_index(db: Database, schema: str, table: str, cols: tuple[str, ...]) -> bool:
    """Whether a valid index on ``table`` leads with ``cols``."""
    return any(r["valid"] and tuple(r["columns"][: len(cols)]) == cols
               for r in db.rows(_INDEXES_SQL, schema=schema, table=table))


def _ensure_index(db: Database, schema: str, table: str, cols: tuple[str, ...], report: MigrationReport) -> None:
    """Create an index leading with ``cols`` unless a valid one exists (CONCURRENTLY: no long lock)."""
    if has_index(db, schema, table, cols):
        return
    name = _index_name(table, cols)
    collist = ", ".join(quote(c) for c in cols)
    if db.scalar(_PARTITIONED_SQL, schema=schema, table=table):
        _ensure_partitioned_index(db, schema, table, name, collist)  # not valid yet: completed, not dropped
    else:
        for r in db.rows(_INDEXES_SQL, schema=schema, table=table):
            if r["name"] == name and not r["valid"]:  # left behind by a failed CONCURRENTLY build
                db.run(f"DROP INDEX CONCURRENTLY IF EXISTS {qualified(schema, name)}")
        db.run(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote(name)} ON {qualified(schema, table)} ({collist})")
    report.indexes.append(f"{schema}.{name}")


# The partitions directly under a partitioned table, with whether each is partitioned itself.
_PARTITIONS_SQL = """
SELECT n.nspname AS schema, c.relname AS table, c.relkind = 'p' AS partitioned
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = CAST(:parent AS regclass) ORDER BY c.relname"""


def _ensure_partitioned_index(db: Database, schema: str, table: str, name: str, collist: str) -> None:
    """CREATE INDEX CONCURRENTLY is refused on a partitioned table: create the parent's index ON ONLY
    (no build, not valid yet), build each partition's index concurrently and attach it; the parent's
    index becomes valid once every partition has one. Partitions partitioned in turn go the same way."""
    parent = qualified(schema, table)
    db.run(f"CREATE INDEX IF NOT EXISTS {quote(name)} ON ONLY {parent} ({collist})")
    for part in db.rows(_PARTITIONS_SQL, parent=parent):
        child = _index_name(part["table"], (name,), "part")
        if part["partitioned"]:
            _ensure_partitioned_index(db, part["schema"], part["table"], child, collist)
        else:
            db.run(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote(child)}"
                   f" ON {qualified(part['schema'], part['table'])} ({collist})")
        attached = db.scalar("SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = CAST(:p AS regclass)"
                             " AND inhrelid = CAST(:c AS regclass))",
                             p=qualified(schema, name), c=qualified(part["schema"], child))
        if not attached:
            db.run(f"ALTER INDEX {qualified(schema, name)} ATTACH PARTITION {qualified(part['schema'], child)}")


# -- the run log ---------------------------------------------------------------------------
def _migrate_log(db: Database, policy: Policy, report: MigrationReport) -> None:
    log, key = qualified(policy.schema_name, policy.log_table), policy.log_table
    if not table_exists(db, policy.schema_name, policy.log_table):
        cols = ",\n  ".join(f"{quote(n)} {ddl}" for n, ddl in LOG_COLUMNS)
        db.run(f"CREATE TABLE {log} (\n  {cols}\n)")
        report.created.append(f"{policy.schema_name}.{policy.log_table}")
    else:
        have = {c.name for c in columns(db, policy.schema_name, policy.log_table)}
        for name, ddl in LOG_COLUMNS:
            if name not in have:
                db.run(f"ALTER TABLE {log} ADD COLUMN {quote(name)} {ddl}")
                report.added_columns.append(f"{policy.log_table}.{name}")
    # One active run per policy, enforced by the database itself.
    db.run(f"CREATE UNIQUE INDEX IF NOT EXISTS {quote(_index_name(key, ('one_active',), 'uq'))} "
           f"ON {log} (policy_key) WHERE {ACTIVE_SQL}")
    # One run per scheduled night, however many times the scheduler delivers the trigger.
    db.run(f"CREATE UNIQUE INDEX IF NOT EXISTS {quote(_index_name(key, ('one_per_schedule',), 'uq'))} "
           f"ON {log} (policy_key, scheduled_for) WHERE scheduled_for IS NOT NULL")
    db.run(f"CREATE INDEX IF NOT EXISTS {quote(_index_name(key, ('run_date',)))} ON {log} (run_date DESC)")


# -- archive tables ------------------------------------------------------------------------
def _create_archive_table(db: Database, schema: str, name: str, source: tuple[Column, ...],
                          pk: list[str], meta_ddl: list[str]) -> None:
    cols = [f"{quote(c.name)} {c.type}" + (" NOT NULL" if c.name in pk else "") for c in source]
    cols += meta_ddl
    if pk:
        cols.append(f"PRIMARY KEY ({', '.join(quote(p) for p in pk)})")
    db.run(f"CREATE TABLE {qualified(schema, name)} ({', '.join(cols)})")


_META_DDL = {
    "archived_at": "timestamptz NOT NULL DEFAULT now()",
    "archived_by": "text NOT NULL DEFAULT 'system'",
    "archive_reason": "text NOT NULL DEFAULT '60_day_rule'",
    "archive_job_id": "uuid",
}


def sync_archive_table(db: Database, schema: str, source_table: str, archive_table: str,
                       meta: tuple[str, ...], report: MigrationReport) -> None:
    """Create ``archive_table`` from ``source_table`` or bring it up to the source's columns.

    Raises SchemaError, before anything moves, when the archive cannot hold the source's rows.
    """
    source = columns(db, schema, source_table)
    if not source:
        raise SchemaError(f"table {schema}.{source_table} does not exist")
    meta_ddl = [f"{quote(m)} {_META_DDL[m]}" for m in meta]
    if not table_exists(db, schema, archive_table):
        pk = list(table_key(db, schema, source_table))
        _create_archive_table(db, schema, archive_table, source, pk, meta_ddl)
        for idx in (("archive_job_id",), ("archived_at",)):
            _ensure_index(db, schema, archive_table, idx, report)
        report.created.append(f"{schema}.{archive_table}")
        return
    have = {c.name: c for c in columns(db, schema, archive_table)}
    problems = []
    for col in source:
        mine = have.get(col.name)
        if mine is None:  # schema drift: the live table grew a column; the archive follows
            db.run(f"ALTER TABLE {qualified(schema, archive_table)} ADD COLUMN {quote(col.name)} {col.type}")
            report.added_columns.append(f"{archive_table}.{col.name}")
        elif mine.type != col.type:
            problems.append(f"column {col.name!r} is {mine.type} in the archive but {col.type} in the live table")
    for m in meta:
        if m not in have:
            db.run(f"ALTER TABLE {qualified(schema, archive_table)} ADD COLUMN {quote(m)} {_META_DDL[m]}")
            report.added_columns.append(f"{archive_table}.{m}")
    source_names = {c.name for c in source}
    for name, col in have.items():
        if name not in source_names and name not in meta and col.not_null:
            problems.append(f"archive column {name!r} is NOT NULL but the live table no longer has it")
    if problems:
        raise SchemaError(f"archive table {schema}.{archive_table} cannot hold rows of "
                          f"{schema}.{source_table}: " + "; ".join(problems))


def related_archive_name(policy: Policy, table: str) -> str:
    name = f"{table}{policy.related_archive_suffix}"
    return name if len(name) <= 63 else _index_name(table, (), "bk")


def migrate(db: Database, policy: Policy) -> MigrationReport:
    """Create or update everything the job needs. Idempotent and safe to run concurrently."""
    from .related import related_graph  # local: related builds on schema

    report = MigrationReport()
    with db.lock("migrate:" + policy.key):
        _migrate_log(db, policy, report)
        shape = live_shape(db, policy)
        sync_archive_table(db, policy.schema_name, policy.live_table, policy.archive_table,
                           ARCHIVE_META, report)
        _ensure_index(db, policy.schema_name, policy.live_table, tuple(c.name for c in shape.walk), report)
        graph = related_graph(db, policy)
        for link in graph.links:
            _ensure_index(db, link.schema, link.table, link.columns, report)
        for link in graph.self_links:  # a run looks up the rows it archived by their reference
            _ensure_index(db, policy.schema_name, policy.archive_table, link.columns, report)
        if policy.related_mode == "move":
            for schema, table in graph.tables:
                sync_archive_table(db, schema, table, related_archive_name(policy, table), RELATED_META, report)
        ensure_erasure_tables(db, policy, report)
    return report


# -- erasure (erasure.py): its records and the database's HMAC key ---------------------------------
ERASURE_SUFFIX = "_erasures"
KEY_SUFFIX = "_erasure_key"


def erasure_table(policy: Policy) -> str:
    return _bounded(f"{policy.log_table}{ERASURE_SUFFIX}")


def key_table(policy: Policy) -> str:
    return _bounded(f"{policy.log_table}{KEY_SUFFIX}")


def _bounded(name: str) -> str:
    return name if len(name) <= 63 else f"{name[:50]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def ensure_erasure_tables(db: Database, policy: Policy, report: MigrationReport | None = None) -> None:
    """The erasure records and the per-database key: created, or brought up to date. Idempotent;
    called by migrate (self-contained, so it moves with migrate wherever that lives)."""
    schema = policy.schema_name
    records = qualified(schema, erasure_table(policy))
    if not table_exists(db, schema, erasure_table(policy)):
        db.run(f"CREATE TABLE IF NOT EXISTS {records} (id bigserial PRIMARY KEY, policy_key text NOT NULL,"
               " key_hash text NOT NULL, key_id text, erased_at timestamptz NOT NULL DEFAULT now(),"
               " erased_by text NOT NULL, removed jsonb NOT NULL DEFAULT '{}'::jsonb, UNIQUE (policy_key, key_hash))")
        if report is not None:
            report.created.append(f"{schema}.{erasure_table(policy)}")
    elif "key_id" not in {c.name for c in columns(db, schema, erasure_table(policy))}:
        db.run(f"ALTER TABLE {records} ADD COLUMN key_id text")  # NULL: a record of the unsalted hash
        if report is not None:
            report.added_columns.append(f"{erasure_table(policy)}.key_id")
    keys = qualified(schema, key_table(policy))
    if not table_exists(db, schema, key_table(policy)):
        db.run(f"CREATE TABLE IF NOT EXISTS {keys} (id integer PRIMARY KEY CHECK (id = 1), secret bytea NOT NULL,"
               " created_at timestamptz NOT NULL DEFAULT now())")
        db.run(f"REVOKE ALL ON {keys} FROM PUBLIC")  # the owner alone reads it (docs/security.md)
        if report is not None:
            report.created.append(f"{schema}.{key_table(policy)}")
    db.run(f"INSERT INTO {keys} (id, secret) VALUES (1, :s) ON CONFLICT (id) DO NOTHING", s=secrets.token_bytes(32))
