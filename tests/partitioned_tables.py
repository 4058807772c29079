"""Live tables of monthly range partitions on the age column (a default partition, a month split by hash
into two leaves), their rows, where each row lives, and the oracle of the partitions a run moves whole:
a wholly-old leaf directly under the live table is attached to the (partitioned) archive and renamed
for it; a leaf under a month partitioned again stays attached to the live table and is copied."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from archiver.db import Database
from archiver.jobs import Job
from tests.keyed_tables import insert

CAST = {"timestamptz": "timestamptz", "timestamp": "timestamp without time zone", "date": "date"}


def month_starts(first: date, count: int) -> list[date]:
    """``count`` first days of consecutive months from ``first``'s month on."""
    out, year, month = [], first.year, first.month
    for _ in range(count):
        out.append(date(year, month, 1))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def leaf_name(table: str, lo: date, hashed: int | None = None) -> str:
    return f"{table}_{lo:%Y%m}" + (f"_h{hashed}" if hashed is not None else "")


def create_monthly(db: Database, table: str, age_type: str, starts: list[date], *, default: bool = True,
                   hashed: date | None = None) -> None:
    """``table`` (id, created_at of ``age_type``, note, amount), a partition per month between
    consecutive ``starts``, the month starting ``hashed`` partitioned again by hash of id into two
    leaves, and a default partition for every other age."""
    db.run(f"CREATE TABLE {table} (id bigint GENERATED ALWAYS AS IDENTITY, created_at {CAST[age_type]} NOT NULL,"
           " note text, amount numeric(12, 2), PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at)")
    for lo, hi in pairwise(starts):
        sub = " PARTITION BY HASH (id)" if lo == hashed else ""
        db.run(f"CREATE TABLE {leaf_name(table, lo)} PARTITION OF {table} FOR VALUES FROM ('{lo}') TO ('{hi}'){sub}")
        if sub:
            for h in (0, 1):
                db.run(f"CREATE TABLE {leaf_name(table, lo, h)} PARTITION OF {leaf_name(table, lo)}"
                       f" FOR VALUES WITH (MODULUS 2, REMAINDER {h})")
    if default:
        db.run(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")


def month_walls(lo: date, hi: date, per_month: int) -> list[datetime]:
    """``per_month`` wall-clock times spread over the month [lo, hi), the first at its very start, and
    one in its last minute."""
    start, end = datetime.combine(lo, time()), datetime.combine(hi, time())
    return [start + (end - start) * k / per_month for k in range(per_month)] + [end - timedelta(minutes=1)]


def as_ages(walls: list[datetime], zone: str, age_type: str) -> list[Any]:
    """Wall-clock times in ``zone`` as values of an age column of ``age_type``."""
    if age_type == "date":
        return [w.date() for w in walls]
    if age_type == "timestamp":
        return list(walls)
    return [w.replace(tzinfo=ZoneInfo(zone)) for w in walls]


def seed(db: Database, table: str, age_type: str, ages: list[Any]) -> list[str]:
    return insert(db, table, "identity", age_type, ages)


def homes(db: Database, table: str) -> dict[str, str]:
    """{row key's text: the leaf partition it lives in}."""
    return {r[0]: r[1] for r in db.run(f"SELECT CAST(ROW(id) AS text), CAST(CAST(tableoid AS regclass) AS text)"
                                       f" FROM {table}")}


def rows_in(db: Database, leaf: str) -> int:
    return int(db.scalar(f"SELECT count(*) FROM ONLY {leaf}"))


def whole(hi: date, cutoff: datetime, zone: str) -> bool:
    """The oracle: a month ending at ``hi`` lies entirely past the cutoff when its end, midnight in the
    policy's zone, is not after it (every age in it is earlier than its end; for a ``timestamp`` column
    the wall clocks compare the same way, for a ``date`` column the day's midnight)."""
    return datetime.combine(hi, time(), ZoneInfo(zone)) <= cutoff


def moved_whole(job: Job) -> dict[str, int]:
    """{leaf: rows} the run moved as whole partitions (its notes in the run log)."""
    return {p["partition"]: int(p["rows"]) for p in job.options.get("whole_partitions", [])}


def how_moved(job: Job) -> dict[str, str]:
    """{leaf: "attached" or "copied"} for the partitions the run moved whole."""
    return {p["partition"]: p["how"] for p in job.options.get("whole_partitions", [])}


def expected_how(leaf: str, table: str, hashed: date | None) -> str:
    """The oracle of how a wholly-old leaf moves: attached when it lies directly under the live table,
    copied when it lies under the month partitioned again by hash (only a partition directly under the
    live table can be detached from it)."""
    return "copied" if hashed is not None and leaf.startswith(leaf_name(table, hashed) + "_h") else "attached"


def archive_leaf(table: str, leaf: str) -> str:
    """The name an attached leaf of ``table`` has in its archive ``<table>_backup``: the live table's name
    in it becomes the archive's (``calls_202606`` → ``calls_backup_202606``)."""
    assert leaf.startswith(table)
    return f"{table}_backup{leaf[len(table):]}"


def partitions(db: Database, parent: str) -> dict[str, str]:
    """{name: bound, as PostgreSQL renders it} of the partitions directly under ``parent``."""
    return {r[0]: r[1] for r in db.run(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c"
        " ON c.oid = i.inhrelid WHERE i.inhparent = CAST(:p AS regclass)", p=parent)}


def places(db: Database, table: str) -> dict[str, str]:
    """{row key's text: its row's physical place (ctid)}: unchanged when a partition moves without a
    row copied."""
    return {r[0]: r[1] for r in db.run(f"SELECT CAST(ROW(id) AS text), CAST(ctid AS text) FROM {table}")}


def clear_of(walls: list[datetime], cutoff_wall: datetime, margin: timedelta = timedelta(minutes=6)) -> list[datetime]:
    """Ages moved a few minutes off the cutoff: the dry run and the run pin theirs seconds apart."""
    return [w + margin if abs(w - cutoff_wall) < margin else w for w in walls]
