"""Real table shapes: keys of any width (primary or unique not-null), partitioned live tables, and
age columns of every supported type, across daylight-saving gaps and overlaps."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from archiver import catalogue, migration
from archiver.config import load_policy
from archiver.db import Database
from archiver.engine import Archiver
from archiver.exceptions import SchemaError
from archiver.restore import purge
from tests.keyed_tables import (
    archive,
    assert_live_xor_archived,
    contents,
    create,
    eligible,
    insert,
    policy_for,
    restore,
    set_zone,
)

NOW = datetime.now(UTC)
OLD_AND_YOUNG = [NOW - timedelta(days=d, minutes=7 * i) for i, d in enumerate([90, 61, 1, 200, 75, 30, 64, 2, 365, 100,
                                                                               59, 120, 70, 3, 80])]


def archive_and_restore(db, policy, settings, table, keys, ages, *, batch_size=3):
    """Dry run, run, then restore: every step accounted for against the oracle."""
    original, _ = contents(db, table, table)
    dry, job = archive(db, policy, settings, batch_size=batch_size)
    cutoff = datetime.fromisoformat(job.options["cutoffs"]["default"])
    expected = {k for k, a in zip(keys, ages, strict=True) if eligible(a, cutoff, policy.timezone)}
    assert job.state == "succeeded" and dry.eligible == job.records_archived == len(expected) > 0
    kept = assert_live_xor_archived(db, table, f"{table}_backup", original)
    assert set(kept) == expected
    restore(db, policy, job)
    assert contents(db, table, f"{table}_backup") == (original, {})
    return job


def test_composite_primary_key_table_is_archived_and_restored_whole(db, policy, settings):
    create(db, "orders", "composite", "timestamptz")
    keys = insert(db, "orders", "composite", "timestamptz", OLD_AND_YOUNG)
    pol = policy_for(policy, "orders", policy.timezone, 60)
    migration.migrate(db, pol)
    assert catalogue.table_key(db, "public", "orders_backup") == ("region", "code")  # the archive mirrors the key
    assert catalogue.has_index(db, "public", "orders", ("created_at", "region", "code"))
    archive_and_restore(db, pol, settings, "orders", keys, OLD_AND_YOUNG)


def test_range_partitioned_table_with_primary_key_on_id_and_created_at(db, policy, settings):
    create(db, "events", "identity", "timestamptz", partitioned=True)
    ages = [*OLD_AND_YOUNG, datetime(2026, 6, 30, 23, 59, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)]
    keys = insert(db, "events", "identity", "timestamptz", ages)
    pol = policy_for(policy, "events", policy.timezone, 60)
    report = migration.migrate(db, pol)
    # The walk's index on the partitioned parent, built partition by partition, and valid.
    assert catalogue.has_index(db, "public", "events", ("created_at", "id")) and report.indexes
    assert db.scalar("SELECT relkind FROM pg_class WHERE relname = 'events_backup'") == "p"  # ranged like it
    assert catalogue.table_key(db, "public", "events_backup") == ("id", "created_at")
    assert migration.migrate(db, pol).indexes == []  # idempotent
    archive_and_restore(db, pol, settings, "events", keys, ages, batch_size=2)


def test_purge_deletes_old_archive_rows_of_a_composite_key_partitioned_table(db, policy, settings):
    create(db, "ledger", "composite", "timestamptz", partitioned=True)
    keys = insert(db, "ledger", "composite", "timestamptz", OLD_AND_YOUNG)
    pol = policy_for(policy, "ledger", policy.timezone, 60)
    migration.migrate(db, pol)
    _, job = archive(db, pol, settings, batch_size=4)
    db.run("UPDATE ledger_backup SET archived_at = archived_at - interval '800 days' WHERE region = 1")
    old = int(db.scalar("SELECT count(*) FROM ledger_backup WHERE region = 1"))
    assert 0 < old < job.records_archived
    assert purge(db, pol, 730, batch_size=2, without_export=True).records_archived == old
    assert db.scalar("SELECT count(*) FROM ledger_backup") == job.records_archived - old
    assert len(contents(db, "ledger", "ledger_backup")[0]) == len(keys) - job.records_archived


def test_table_with_only_a_unique_not_null_key_is_archived_by_it(db, policy, settings):
    create(db, "tickets", "text", "timestamptz", unique_instead=True)
    keys = insert(db, "tickets", "text", "timestamptz", OLD_AND_YOUNG)
    pol = policy_for(policy, "tickets", policy.timezone, 60)
    migration.migrate(db, pol)
    assert catalogue.table_key(db, "public", "tickets_backup") == ("id",)
    archive_and_restore(db, pol, settings, "tickets", keys, OLD_AND_YOUNG)


def test_table_without_a_key_is_refused_saying_why(db, policy, env):
    db.run("CREATE TABLE notes (id bigint, created_at timestamptz NOT NULL, note text)")
    db.run("CREATE UNIQUE INDEX notes_id ON notes (id)")  # unique, but id may be NULL: not a key
    pol = policy_for(policy, "notes", policy.timezone, 60)
    with pytest.raises(SchemaError, match="no primary key and no unique index on NOT NULL columns"):
        migration.migrate(db, pol)
    cli_env = {**os.environ, **env, "ARCHIVER_LIVE_TABLE": "notes", "ARCHIVER_ARCHIVE_TABLE": "notes_backup"}
    proc = subprocess.run([str(Path(sys.executable).parent / "archiver"), "migrate"], env=cli_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no primary key and no unique index on NOT NULL columns" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_age_column_of_another_type_is_refused(db, policy):
    db.run("CREATE TABLE counters (id bigint PRIMARY KEY, created_at bigint NOT NULL)")
    with pytest.raises(SchemaError, match="must be one of timestamp with time zone"):
        migration.migrate(db, policy_for(policy, "counters", policy.timezone, 60))


# (zone, the last wall-clock minute before the spring-forward gap, the first of the autumn overlap)
DST = [("America/New_York", datetime(2026, 3, 8, 1, 59), datetime(2026, 11, 1, 1, 0)),
       ("Europe/London", datetime(2026, 3, 29, 0, 59), datetime(2026, 10, 25, 1, 0))]


@pytest.mark.parametrize(("zone", "gap", "overlap"), DST, ids=[d[0] for d in DST])
def test_timestamp_age_column_keeps_every_row_across_the_spring_gap_and_autumn_overlap(
        db, policy, settings, zone, gap, overlap):
    """Before the fix, the row just after the gap was skipped: eligible 3, archived 2."""
    set_zone(db, zone)
    minute = timedelta(minutes=1)
    ages = [gap - minute, gap, gap + 31 * minute, gap + 61 * minute, gap + 71 * minute,  # 02:30 does not exist
            overlap - minute, overlap + 10 * minute, overlap + 30 * minute, overlap + 50 * minute,
            overlap + 70 * minute]  # 01:xx happens twice
    create(db, "visits", "identity", "timestamp")
    keys = insert(db, "visits", "identity", "timestamp", ages)
    pol = policy_for(policy, "visits", zone, 7, batch_size=1)
    migration.migrate(db, pol)
    job = archive_and_restore(db, pol, settings, "visits", keys, ages, batch_size=1)
    assert job.records_archived == len(ages)


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London"])
def test_date_age_column_archives_exactly_the_days_before_the_cutoff(db, policy, settings, zone):
    set_zone(db, zone)
    today = NOW.astimezone().date()
    ages = [today - timedelta(days=d) for d in (58, 59, 60, 60, 61, 62, 90, 1, 0, 250, 229, 218)]
    ages += [date(2026, 3, 8), date(2026, 3, 29), date(2026, 11, 1), date(2026, 10, 25)]
    create(db, "payments", "composite", "date", partitioned=True)
    keys = insert(db, "payments", "composite", "date", ages)
    pol = policy_for(policy, "payments", zone, 60)
    migration.migrate(db, pol)
    archive_and_restore(db, pol, settings, "payments", keys, ages, batch_size=2)


class PausingDatabase(Database):
    """A database connection that, right after a batch's lock statement, lets ``between`` act
    (another session committing), as a busy application would."""

    def __init__(self, *args, between, **kwargs):
        super().__init__(*args, **kwargs)
        self.between = between

    def run(self, sql, **params):
        result = super().run(sql, **params)
        if "SKIP LOCKED" in sql and "LIMIT :n" in sql:  # the lock statement (pg8000 keeps :names here)
            self.between()
        return result


@pytest.mark.parametrize("mode", ["skip", "move"])
def test_a_related_row_committed_between_lock_and_move_is_seen_by_the_move(
        server_params, dbname, env, settings, connect, mode):
    """The move statement re-checks under a snapshot taken after the rows were locked: one
    statement for both would not see the related row (skip: it would archive the row the note
    keeps live; move: it would leave the note behind)."""
    policy = load_policy({**env, "ARCHIVER_RELATED_TABLES": "notes:customer_id", "ARCHIVER_RELATED_MODE": mode})
    other = connect()
    noted: list[int] = []

    def add_a_note_once() -> None:  # to the first row of the batch just locked
        if not noted:
            noted.append(other.scalar("INSERT INTO notes (customer_id) SELECT min(id) FROM nic_cc_customer"
                                      " RETURNING customer_id"))

    db = PausingDatabase(replace(server_params, database=dbname, timezone=policy.timezone), between=add_a_note_once)
    try:
        other.run("CREATE TABLE nic_cc_customer (id bigserial PRIMARY KEY, name text, created_at timestamptz NOT NULL)")
        other.run("CREATE TABLE notes (id serial PRIMARY KEY, customer_id bigint)")
        other.run("INSERT INTO nic_cc_customer (name, created_at)"
                  " SELECT 'c' || g, now() - interval '90 days' + g * interval '1 minute' FROM generate_series(1, 6) g")
        migration.migrate(other, policy)
        archiver = Archiver(db, policy, settings)
        job = archiver.run_hop(archiver.start(fixed_batch_size=3).id, owner="w", hop=1).job
        if mode == "skip":  # the note keeps its row live
            assert job.state == "succeeded" and job.records_archived == 5
            assert other.scalar("SELECT count(*) FROM nic_cc_customer WHERE id = :n", n=noted[0]) == 1
        else:  # the note moves with its row
            assert job.state == "succeeded" and job.records_archived == 6
            assert other.scalar("SELECT count(*) FROM notes_backup") == 1
            assert other.scalar("SELECT count(*) FROM notes") == 0
    finally:
        db.close()
