"""Migration: the idempotent creation and update of everything the job needs.

Creates the run log, the archive table (and related archive tables in ``move`` mode), the
index the batch query walks, and the indexes missing on child tables' foreign-key columns.
Brings a drifted archive table up to the live table's columns, or stops with a clear message.
What it reads of the database comes from ``catalogue.py``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from .archive_partitions import default_name, range_partitioned_on
from .catalogue import (
    Column,
    TableShape,
    columns,
    has_index,
    indexes,
    is_partition_of,
    is_partitioned,
    live_shape,
    partitions,
    table_exists,
    table_key,
)
from .config import Policy
from .db import Database
from .exceptions import SchemaError
from .identifiers import qualified, quote, stable_name
from .related import related_graph
from .states import ACTIVE_SQL, RunState, sql_state, sql_states

# Columns the archive tables carry on top of the live columns.
ARCHIVE_META = ("archived_at", "archived_by", "archive_reason", "archive_job_id")
RELATED_META = ("archived_at", "archive_job_id")
_META_DDL = {
    "archived_at": "timestamptz NOT NULL DEFAULT now()",
    "archived_by": "text NOT NULL DEFAULT 'system'",
    "archive_reason": "text NOT NULL DEFAULT '60_day_rule'",
    "archive_job_id": "uuid",
}

# The run log: one row per run (archive, restore, purge, dry run). Defined once; migrate
# creates the table from it and adds any column an older version of the log lacks.
LOG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "bigserial PRIMARY KEY"),
    ("job_id", "uuid NOT NULL UNIQUE"),
    ("kind", "text NOT NULL DEFAULT 'archive'"),
    ("policy_key", "text NOT NULL"),
    ("run_date", "timestamptz NOT NULL DEFAULT now()"),
    ("state", f"text NOT NULL DEFAULT {sql_state(RunState.PENDING)} CHECK (state IN {sql_states(*RunState)})"),
    # The seeds' status vocabulary ('success', 'partial', 'failed', 'rolled_back'), derived.
    ("status", f"text GENERATED ALWAYS AS (CASE state WHEN {sql_state(RunState.SUCCEEDED)} THEN 'success' "
               f"WHEN {sql_state(RunState.PENDING)} THEN 'running' ELSE state END) STORED"),
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
    ("percent_complete", "numeric(5,1) GENERATED ALWAYS AS"
                         f" (CASE WHEN state = {sql_state(RunState.SUCCEEDED)} THEN 100 WHEN eligible > 0"
                         " THEN LEAST(100, round(100.0 * (records_archived + records_failed) / eligible, 1))"
                         " ELSE 0 END) STORED"),
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


@dataclass
class MigrationReport:
    created: list[str] = field(default_factory=list)
    added_columns: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {"created": self.created, "added_columns": self.added_columns,
                "indexes": self.indexes, "warnings": self.warnings}


# -- indexes -------------------------------------------------------------------------------
def _index_name(table: str, cols: tuple[str, ...], suffix: str = "archiver_idx") -> str:
    return stable_name(f"{table}_{'_'.join(cols)}_{suffix}")


def _ensure_index(db: Database, schema: str, table: str, cols: tuple[str, ...], report: MigrationReport) -> None:
    """Create an index leading with ``cols`` unless a valid one exists (CONCURRENTLY: no long lock)."""
    if has_index(db, schema, table, cols):
        return
    name = _index_name(table, cols)
    collist = ", ".join(quote(c) for c in cols)
    if is_partitioned(db, schema, table):
        _ensure_partitioned_index(db, schema, table, name, collist)  # not valid yet: completed, not dropped
    else:
        for r in indexes(db, schema, table):
            if r["name"] == name and not r["valid"]:  # left behind by a failed CONCURRENTLY build
                db.run(f"DROP INDEX CONCURRENTLY IF EXISTS {qualified(schema, name)}")
        db.run(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote(name)} ON {qualified(schema, table)} ({collist})")
    report.indexes.append(f"{schema}.{name}")


def _ensure_partitioned_index(db: Database, schema: str, table: str, name: str, collist: str) -> None:
    """CREATE INDEX CONCURRENTLY is refused on a partitioned table: create the parent's index ON ONLY
    (no build, not valid yet), build each partition's index concurrently and attach it; the parent's
    index becomes valid once every partition has one. Partitions partitioned in turn go the same way."""
    parent = qualified(schema, table)
    db.run(f"CREATE INDEX IF NOT EXISTS {quote(name)} ON ONLY {parent} ({collist})")
    for part in partitions(db, parent):
        child = _index_name(part["table"], (name,), "part")
        if part["partitioned"]:
            _ensure_partitioned_index(db, part["schema"], part["table"], child, collist)
        else:
            db.run(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote(child)}"
                   f" ON {qualified(part['schema'], part['table'])} ({collist})")
        if not is_partition_of(db, qualified(schema, name), qualified(part["schema"], child)):
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
# Columns whose collation is not their type's default, with it (qualified, quoted): an archive column
# compares and sorts as the live one, and a live partition can be attached to the archive.
_COLLATIONS_SQL = """
SELECT a.attname AS name, quote_ident(cn.nspname) || '.' || quote_ident(co.collname) AS collation
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_collation co ON co.oid = a.attcollation JOIN pg_namespace cn ON cn.oid = co.collnamespace
WHERE a.attrelid = to_regclass(:table) AND a.attnum > 0 AND NOT a.attisdropped AND a.attcollation <> t.typcollation"""


def _collations(db: Database, schema: str, table: str) -> dict[str, str]:
    return {r["name"]: f" COLLATE {r['collation']}" for r in db.rows(_COLLATIONS_SQL, table=qualified(schema, table))}


def _create_archive_table(db: Database, schema: str, source_table: str, name: str, source: tuple[Column, ...],
                          meta_ddl: list[str], partition_by: str | None, default_partition: str | None) -> None:
    pk = list(table_key(db, schema, source_table))
    collations = _collations(db, schema, source_table)
    default = default_partition if partition_by else None
    if default and table_exists(db, schema, default):
        raise SchemaError(f"table {schema}.{default} exists: the new archive's default partition needs its"
                          " name; rename it, then migrate again (nothing was created)")
    cols = [f"{quote(c.name)} {c.type}{collations.get(c.name, '')}" + (" NOT NULL" if c.name in pk else "")
            for c in source]
    cols += meta_ddl
    if pk:
        cols.append(f"PRIMARY KEY ({', '.join(quote(p) for p in pk)})")
    by = f" PARTITION BY RANGE ({quote(partition_by)})" if partition_by else ""
    # One transaction: a partitioned archive without its default partition would refuse the rows of the
    # ranges it has no partition for.
    with db.transaction():
        db.run(f"CREATE TABLE {qualified(schema, name)} ({', '.join(cols)}){by}")
        if default:
            db.run(f"CREATE TABLE {qualified(schema, default)} PARTITION OF {qualified(schema, name)} DEFAULT")


def _collation_warning(db: Database, schema: str, source_table: str, archive_table: str,
                       source: tuple[Column, ...], report: MigrationReport) -> None:
    """An existing partitioned archive whose columns' collations are not the live ones' any more: a live
    partition cannot be attached to it (partitions.py copies its rows instead), which the operator hears."""
    live, mine = _collations(db, schema, source_table), _collations(db, schema, archive_table)
    differ = [c.name for c in source if live.get(c.name) != mine.get(c.name)]
    if differ:
        report.warnings.append(f"archive {schema}.{archive_table}: the collation of {', '.join(differ)} is not"
                               " the live table's; its wholly-old partitions are copied, not attached")


def sync_archive_table(db: Database, schema: str, source_table: str, archive_table: str,
                       meta: tuple[str, ...], report: MigrationReport, partition_by: str | None = None,
                       default_partition: str | None = None) -> None:
    """Create ``archive_table`` from ``source_table`` or bring it up to the source's columns. A new
    archive is range-partitioned on ``partition_by``, if given, with ``default_partition`` under it
    (``archive_partitions.py``); an existing one keeps its layout.

    Raises SchemaError, before anything moves, when the archive cannot hold the source's rows.
    """
    source = columns(db, schema, source_table)
    if not source:
        raise SchemaError(f"table {schema}.{source_table} does not exist")
    meta_ddl = [f"{quote(m)} {_META_DDL[m]}" for m in meta]
    if not table_exists(db, schema, archive_table):
        _create_archive_table(db, schema, source_table, archive_table, source, meta_ddl, partition_by,
                              default_partition)
        for idx in (("archive_job_id",), ("archived_at",)):
            _ensure_index(db, schema, archive_table, idx, report)
        report.created.append(f"{schema}.{archive_table}")
        return
    have = {c.name: c for c in columns(db, schema, archive_table)}
    problems = []
    for col in source:
        mine = have.get(col.name)
        if mine is None:  # schema drift: the live table grew a column; the archive follows
            coll = _collations(db, schema, source_table).get(col.name, "")
            db.run(f"ALTER TABLE {qualified(schema, archive_table)} ADD COLUMN {quote(col.name)} {col.type}{coll}")
            report.added_columns.append(f"{archive_table}.{col.name}")
        elif mine.type != col.type:
            problems.append(f"column {col.name!r} is {mine.type} in the archive but {col.type} in the live table")
    for m in meta:
        if m not in have:
            db.run(f"ALTER TABLE {qualified(schema, archive_table)} ADD COLUMN {quote(m)} {_META_DDL[m]}")
            report.added_columns.append(f"{archive_table}.{m}")
    if partition_by and is_partitioned(db, schema, archive_table):
        _collation_warning(db, schema, source_table, archive_table, source, report)
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
    report = MigrationReport()
    with db.lock("migrate:" + policy.key):
        _migrate_log(db, policy, report)
        shape = live_shape(db, policy)
        # A live table range-partitioned on the age column gets an archive partitioned the same way: its
        # partitions wholly past the cutoff then move without a row copied (partitions.py).
        ranged = range_partitioned_on(db, qualified(policy.schema_name, policy.live_table), policy.age_column)
        sync_archive_table(db, policy.schema_name, policy.live_table, policy.archive_table,
                           ARCHIVE_META, report, policy.age_column if ranged else None, default_name(policy))
        _ensure_index(db, policy.schema_name, policy.live_table, tuple(c.name for c in shape.walk), report)
        graph = related_graph(db, policy)
        for link in graph.links:
            _ensure_index(db, link.schema, link.table, link.columns, report)
        for link in graph.self_links:  # a run looks up the rows it archived by their reference
            _ensure_index(db, policy.schema_name, policy.archive_table, link.columns, report)
        if policy.related_mode == "move":
            for schema, table in graph.tables:
                sync_archive_table(db, schema, table, related_archive_name(policy, table), RELATED_META, report)
        migrate_export_ledgers(db, policy, shape, report)
        ensure_erasure_tables(db, policy, report)
    return report
# -- the export's ledgers (cold storage) ---------------------------------------------------
# Which archive rows went into which exported file: ids and times only. Keyed rows of the archive
# table one by one (its key's columns, positionally named: ``key``, ``key_2`` ...: a key column
# can be called anything); rows of related archive tables (move mode; they may have no key) by
# the group one archive batch moved together, ``(archive_job_id, archived_at)``.
LEDGER_SUFFIX, RELATED_LEDGER_SUFFIX = "_exported", "_exported_related"


def ledger_name(policy: Policy) -> str:
    return stable_name(f"{policy.archive_table}{LEDGER_SUFFIX}")


def related_ledger_name(policy: Policy) -> str:
    return stable_name(f"{policy.archive_table}{RELATED_LEDGER_SUFFIX}")


def ledger_key_columns(width: int) -> tuple[str, ...]:
    return ("key", *(f"key_{i}" for i in range(2, width + 1)))


def migrate_export_ledgers(db: Database, policy: Policy, shape: TableShape, report: MigrationReport) -> None:
    """Create the export's ledgers (the related one in move mode), so that the export's role needs no
    CREATE. Idempotent; a ledger already there is left as it is."""
    schema = policy.schema_name
    if not table_exists(db, schema, ledger_name(policy)):
        keys = ledger_key_columns(len(shape.key))
        cols = ", ".join(f"{quote(n)} {c.type} NOT NULL" for n, c in zip(keys, shape.key, strict=True))
        name = qualified(schema, ledger_name(policy))
        db.run(f"CREATE TABLE IF NOT EXISTS {name} ({cols}, archived_at timestamptz NOT NULL, export_id uuid NOT NULL,"
               f" file text NOT NULL, PRIMARY KEY ({', '.join(quote(k) for k in keys)}, archived_at))")
        db.run(f"CREATE INDEX IF NOT EXISTS {quote(ledger_name(policy)[:50] + '_export_idx')}"
               f" ON {name} (export_id, file)")
        report.created.append(f"{schema}.{ledger_name(policy)}")
    if policy.related_mode == "move" and not table_exists(db, schema, related_ledger_name(policy)):
        name = qualified(schema, related_ledger_name(policy))
        db.run(f"CREATE TABLE IF NOT EXISTS {name} (archive_table text NOT NULL, archive_job_id uuid NOT NULL,"
               " archived_at timestamptz NOT NULL, export_id uuid NOT NULL, file text NOT NULL,"
               " PRIMARY KEY (archive_table, archive_job_id, archived_at))")
        db.run(f"CREATE INDEX IF NOT EXISTS {quote(related_ledger_name(policy)[:50] + '_export_idx')}"
               f" ON {name} (export_id, file)")
        report.created.append(f"{schema}.{related_ledger_name(policy)}")


# -- erasure (erasure.py): its records and the database's HMAC key ---------------------------------
ERASURE_SUFFIX = "_erasures"
KEY_SUFFIX = "_erasure_key"


def erasure_table(policy: Policy) -> str:
    return stable_name(f"{policy.log_table}{ERASURE_SUFFIX}")


def key_table(policy: Policy) -> str:
    return stable_name(f"{policy.log_table}{KEY_SUFFIX}")


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
