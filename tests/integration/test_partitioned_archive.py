"""migrate's archive of a live table range-partitioned on the age column alone: partitioned the same way,
with a default partition for the rows of ranges it has no partition for (archive_partitions.py); the
archive's columns have the live columns' collations (an attached leaf must match them). The archive of
any other live table is a plain table; an archive that exists keeps its layout."""

from __future__ import annotations

from datetime import date, datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from archiver import catalogue, migration
from archiver.db import Database
from archiver.exceptions import SchemaError
from tests.keyed_tables import AGE_TYPES, archive_exactly_the_eligible, contents, policy_for, restore, set_zone
from tests.partitioned_tables import (
    as_ages,
    create_monthly,
    homes,
    how_moved,
    month_starts,
    month_walls,
    partitions,
    seed,
)


def partition_key(db: Database, table: str) -> str | None:
    """How ``table`` is partitioned (``RANGE (created_at)``), None for a plain table."""
    return db.scalar("SELECT pg_get_partkeydef(CAST(:t AS regclass))", t=table)


def collations(db: Database, table: str) -> dict[str, str]:
    """{column: its collation} for the columns of a collatable type."""
    return {r[0]: r[1] for r in db.run(
        "SELECT attname, CAST(CAST(attcollation AS regcollation) AS text) FROM pg_attribute"
        " WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped AND attcollation <> 0", t=table)}


def year_ago(zone: str, count: int) -> list[date]:
    """``count`` + 1 month starts from a year back: ``count`` months wholly past a 60-day retention."""
    today = datetime.now(ZoneInfo(zone)).date()
    return month_starts(date(today.year - 1, today.month, 1), count + 1)


@pytest.mark.parametrize("age_type", AGE_TYPES)
def test_the_archive_of_a_table_ranged_on_the_age_column_is_ranged_on_it_with_a_default_partition(
        db, policy, age_type):
    create_monthly(db, "calls", age_type, year_ago("UTC", 3))
    pol = policy_for(policy, "calls", "UTC", 60)

    report = migration.migrate(db, pol)

    assert "public.calls_backup" in report.created
    assert partition_key(db, "calls_backup") == "RANGE (created_at)"
    assert partitions(db, "calls_backup") == {"calls_backup_default": "DEFAULT"}  # mirror() adds the ranges
    assert catalogue.table_key(db, "public", "calls_backup") == ("id", "created_at")
    assert all(catalogue.has_index(db, "public", "calls_backup", (c,)) for c in ("archive_job_id", "archived_at"))
    again = migration.migrate(db, pol)
    assert again.created == again.added_columns == again.indexes == []
    assert partitions(db, "calls_backup") == {"calls_backup_default": "DEFAULT"}


def test_a_table_of_the_default_partitions_name_stops_migrate_before_the_archive_is_created(db, policy):
    create_monthly(db, "calls", "timestamptz", year_ago("UTC", 2))
    db.run("CREATE TABLE calls_backup_default (x int)")

    with pytest.raises(SchemaError, match=r"public\.calls_backup_default exists"):
        migration.migrate(db, policy_for(policy, "calls", "UTC", 60))

    assert db.scalar("SELECT to_regclass('calls_backup') IS NULL")


@pytest.mark.parametrize("ddl", [
    "PARTITION BY HASH (id)",
    "PARTITION BY RANGE (id)",
    "PARTITION BY RANGE (created_at, id)",
    "PARTITION BY LIST (created_at)",
    "",
], ids=["hash", "range on another column", "range on two columns", "list", "not partitioned"])
def test_the_archive_of_any_other_table_is_a_plain_table(db, policy, ddl):
    db.run("CREATE TABLE calls (id bigint GENERATED ALWAYS AS IDENTITY, created_at timestamptz NOT NULL,"
           f" note text, PRIMARY KEY (id, created_at)) {ddl}")

    migration.migrate(db, policy_for(policy, "calls", "UTC", 60))

    assert partition_key(db, "calls_backup") is None
    assert db.scalar("SELECT relkind FROM pg_class WHERE oid = CAST('calls_backup' AS regclass)") == "r"


def test_the_archive_columns_have_the_live_columns_collations_and_a_wholly_old_month_is_attached(
        db, policy, settings):
    """A column of another collation than its type's default keeps it in the archive, also when the live
    table grows it later: an archive column of the default collation would refuse the month's ATTACH (the
    move would copy its rows instead)."""
    set_zone(db, "UTC")
    starts = year_ago("UTC", 3)
    create_monthly(db, "calls", "timestamptz", starts)
    db.run('ALTER TABLE calls ALTER COLUMN note TYPE text COLLATE "C"')
    ages = as_ages([w for lo, hi in pairwise(starts) for w in month_walls(lo, hi, 2)], "UTC", "timestamptz")
    keys = seed(db, "calls", "timestamptz", ages)
    pol = policy_for(policy, "calls", "UTC", 60, batch_size=3)
    migration.migrate(db, pol)
    db.run('ALTER TABLE calls ADD COLUMN tag text COLLATE "POSIX"')
    migration.migrate(db, pol)  # schema drift: the archive follows, with the collation

    assert collations(db, "calls_backup")["note"] == '"C"' and collations(db, "calls_backup")["tag"] == '"POSIX"'
    assert {c: collations(db, "calls_backup")[c] for c in collations(db, "calls")} == collations(db, "calls")
    original, before, layout = contents(db, "calls", "calls")[0], homes(db, "calls"), partitions(db, "calls")
    job = archive_exactly_the_eligible(db, pol, settings, keys, ages, original)[0]
    assert how_moved(job) and set(how_moved(job).values()) == {"attached"}
    restore(db, pol, job)
    assert partitions(db, "calls") == layout and homes(db, "calls") == before


def test_migrate_warns_when_a_live_column_changed_collation_since_the_archive_was_made(db, policy):
    """The archive keeps the collation it was made with: the operator learns that whole partitions are
    copied from then on."""
    create_monthly(db, "calls", "timestamptz", year_ago("UTC", 2))
    pol = policy_for(policy, "calls", "UTC", 60)
    assert migration.migrate(db, pol).warnings == []
    db.run('ALTER TABLE calls ALTER COLUMN note TYPE text COLLATE "C"')

    assert migration.migrate(db, pol).warnings == [
        "archive public.calls_backup: the collation of note is not the live table's; its wholly-old partitions"
        " are copied, not attached"]
