"""The archive's partitions, kept in step with the live table's.

When the live table is range-partitioned on the age column alone, ``migrate`` creates its archive
partitioned the same way (with a default partition for rows no range takes). Then a live partition
wholly past the cutoff can *become* an archive partition: detached from the live table and attached to
the archive, no row copied (``partitions.py``). For that, the archive's ranges follow the live
table's: before a run's batches, every live partition that may hold eligible rows gets an archive
partition with the same bounds (``mirror``), so batches never fill the default partition with rows a
later attach would have to scan or move; and before a restore, an archive partition's range that no
live partition takes any more gets its live partition back (``recreate_live``).

Bounds are compared as PostgreSQL renders them (``pg_get_expr(relpartbound)``) for the same key type
in the same session: two partitions with the same text have the same range.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Policy
from .db import Database, expecting
from .eligibility import age_bound
from .exceptions import (
    CheckViolationError,
    DuplicateTableError,
    LockNotAvailableError,
    PartitionLayoutError,
    PermissionDeniedError,
    ServerError,
)
from .identifiers import qualified, stable_name
from .observability import logger

# How long creating a partition waits for the partitioned table's lock (the export or an erasure may
# hold the archive's): past it, the range waits for the next hop.
CREATE_LOCK_TIMEOUT_MS = 2000
# Why a partition is not created: nothing changed when they happen; rows of its range go to the
# partition that takes them (the default one), as they would without it.
_NOT_CREATED = (PartitionLayoutError, CheckViolationError, DuplicateTableError, LockNotAvailableError,
                PermissionDeniedError)

_RANGED_ON_SQL = """
SELECT EXISTS (SELECT 1 FROM pg_partitioned_table pt
               JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
               WHERE pt.partrelid = to_regclass(:table) AND pt.partstrat = 'r' AND pt.partnatts = 1
                 AND a.attname = :column)"""

_PARTS_SQL = """
SELECT c.oid, n.nspname AS schema, c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = CAST(:parent AS regclass) ORDER BY c.relname"""

# The live table's partitions that may hold rows past the cutoff (their range starts before it, or at
# MINVALUE) and whose range the archive has no partition for. The bounds are read first (materialized),
# then cast: only this table's bounds are ever cast to the age column's type.
_TO_MIRROR_SQL = r"""
WITH live AS MATERIALIZED (
  SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  WHERE i.inhparent = CAST(:live AS regclass)),
arch AS MATERIALIZED (
  SELECT pg_get_expr(c.relpartbound, c.oid) AS bound
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  WHERE i.inhparent = CAST(:archive AS regclass)),
lower AS MATERIALIZED (
  SELECT name, bound, substring(bound FROM '^FOR VALUES FROM \(''([^'']*)''\) TO ') AS lower FROM live
  WHERE bound LIKE 'FOR VALUES FROM (%' AND bound NOT IN (SELECT bound FROM arch))
SELECT name, bound FROM lower
WHERE bound LIKE 'FOR VALUES FROM (MINVALUE)%' OR CAST(lower AS {age_type}) < {cutoff}
ORDER BY name"""


@dataclass(frozen=True)
class Part:
    """A partition directly under a partitioned table, and its bound as PostgreSQL renders it."""

    oid: int
    schema: str
    name: str
    bound: str

    @property
    def table(self) -> str:
        return qualified(self.schema, self.name)


def range_partitioned_on(db: Database, table: str, column: str) -> bool:
    """Whether ``table`` (qualified) is range-partitioned on ``column`` alone."""
    return bool(db.scalar(_RANGED_ON_SQL, table=table, column=column))


def parts(db: Database, parent: str) -> list[Part]:
    """The partitions directly under ``parent`` (qualified), by name."""
    return [Part(int(r["oid"]), r["schema"], r["name"], r["bound"]) for r in db.rows(_PARTS_SQL, parent=parent)]


def archive_name(policy: Policy, live_part: str) -> str:
    """The archive partition's name for a live partition's: the live table's name in it becomes the
    archive's (``nic_cc_customer_202601`` → ``nic_cc_customer_backup_202601``)."""
    rest = live_part[len(policy.live_table):] if live_part.startswith(policy.live_table) else f"_{live_part}"
    return stable_name(policy.archive_table + rest)


def live_name(policy: Policy, archive_part: str) -> str:
    """The live partition's name for an archive partition's (``archive_name`` the other way round)."""
    rest = (archive_part[len(policy.archive_table):] if archive_part.startswith(policy.archive_table)
            else f"_{archive_part}")
    return stable_name(policy.live_table + rest)


def default_name(policy: Policy) -> str:
    """The archive's default partition: rows of ranges the live table has no partition for."""
    return stable_name(f"{policy.archive_table}_default")


def archive_partitioned(db: Database, policy: Policy) -> bool:
    """Whether the archive is partitioned like the live table (on the age column): older archives of a
    partitioned live table are plain tables, and their whole moves copy rows."""
    return range_partitioned_on(db, qualified(policy.schema_name, policy.archive_table), policy.age_column)


def _create(db: Database, table: str, parent: str, bound: str) -> ServerError | None:
    """``CREATE TABLE table PARTITION OF parent bound`` in its own transaction; None when created, else
    why not (nothing changed): the range overlaps another, a default partition holds rows of it, the
    name is taken, the parent's lock did not come or the role may not."""
    try:
        with expecting(*_NOT_CREATED), db.transaction():
            db.run("SELECT set_config('lock_timeout', :t, true)", t=f"{CREATE_LOCK_TIMEOUT_MS}ms")
            db.run(f"CREATE TABLE {table} PARTITION OF {parent} {bound}")
    except ServerError as exc:
        if not isinstance(exc, _NOT_CREATED):
            raise
        logger.info("partition not created", extra={"partition": table, "sqlstate": exc.sqlstate})
        return exc
    return None


def _create_each(db: Database, schema: str, parent: str, wanted: list[tuple[str, str]]) -> list[str]:
    """Create the partitions ``wanted`` (name, bound) of ``schema.parent`` in order; the names created.
    Once the parent's lock did not come, the rest wait for the next call too: the table is in use, and
    each would queue for it again."""
    created = []
    for name, bound in wanted:
        why = _create(db, qualified(schema, name), qualified(schema, parent), bound)
        if why is None:
            created.append(name)
        elif isinstance(why, LockNotAvailableError):
            break
    return created


def mirror(db: Database, policy: Policy, age_type: str, cutoff: object,
           leave_out: frozenset[str] = frozenset()) -> list[str]:
    """Give every live partition that may hold rows past ``cutoff`` an archive partition with the same
    range, where the archive has none, but those named in ``leave_out`` (about to be attached whole);
    the names created. Nothing when the archive is not partitioned."""
    if not archive_partitioned(db, policy):
        return []
    archive = qualified(policy.schema_name, policy.archive_table)
    sql = _TO_MIRROR_SQL.format(age_type=age_type, cutoff=age_bound(age_type).format(":cut"))
    rows = db.rows(sql, live=qualified(policy.schema_name, policy.live_table), archive=archive, cut=cutoff)
    return _create_each(db, policy.schema_name, policy.archive_table,
                        [(archive_name(policy, r["name"]), r["bound"]) for r in rows if r["name"] not in leave_out])


def recreate_live(db: Database, policy: Policy, archive_oids: list[int]) -> list[str]:
    """Give the archive partitions ``archive_oids`` (those holding rows a restore brings back) their live
    partition again where the live table has none with their range (it became the archive's whole):
    the restored rows go back into a partition of their own, not the default one or none. The names
    created."""
    live = qualified(policy.schema_name, policy.live_table)
    if not archive_oids or not range_partitioned_on(db, live, policy.age_column):
        return []
    have = {p.bound for p in parts(db, live)}
    wanted = {p.bound: live_name(policy, p.name) for p in parts(db, qualified(policy.schema_name, policy.archive_table))
              if p.oid in archive_oids and p.bound.startswith("FOR VALUES FROM (") and p.bound not in have}
    return _create_each(db, policy.schema_name, policy.live_table, [(name, bound) for bound, name in wanted.items()])


def mirror_of(db: Database, policy: Policy, bound: str) -> Part | None:
    """The archive partition with exactly this range, if any."""
    return next((p for p in parts(db, qualified(policy.schema_name, policy.archive_table)) if p.bound == bound),
                None)

