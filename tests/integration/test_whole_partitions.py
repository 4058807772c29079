"""Whole partitions: on a live table of monthly range partitions on the age column, a leaf lying entirely
past the run's cutoff moves whole: directly under the live table, it is detached and attached to the
archive (partitioned the same way by migrate), no row copied; under a month partitioned again, its rows
are copied (one INSERT … SELECT, then TRUNCATE: it stays attached and empty). A month straddling the
cutoff, the default partition and the young months go by row batches. The dry run counts what the run
moves, every row is live xor archived with its content, and a restore puts each row back into a
partition of the name it came from, created again where it had become the archive's."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from archiver import migration
from archiver.cold_restore import restore_from
from archiver.cold_storage import LocalStorage
from archiver.config import Policy
from archiver.db import Database
from archiver.engine import Archiver
from archiver.exceptions import SchemaError
from archiver.export import export
from archiver.restore import Restorer, purge
from tests.keyed_tables import (
    archive,
    archive_exactly_the_eligible,
    assert_live_xor_archived,
    contents,
    eligible,
    policy_for,
    restore,
    set_zone,
)
from tests.partitioned_tables import (
    archive_leaf,
    as_ages,
    clear_of,
    create_monthly,
    expected_how,
    homes,
    how_moved,
    leaf_name,
    month_starts,
    month_walls,
    moved_whole,
    partitions,
    places,
    rows_in,
    seed,
    whole,
)

RETENTION = 60


def months(zone: str) -> list[date]:
    """Month starts from six months back to two months ahead of today in ``zone``."""
    today = datetime.now(ZoneInfo(zone)).date()
    return month_starts(date(today.year - 1, today.month, 1), 15)[6:]


def calls(db: Database, policy: Policy, zone: str, age_type: str, per_month: int = 4,
          hashed_month: int | None = 1) -> tuple[list[date], list[str], list]:
    """The ``calls`` table of monthly partitions (one month split by hash), with rows in every month
    and old and young rows in the default partition; its policy migrated. Returns (months, keys, ages)."""
    set_zone(db, zone)
    starts = months(zone)
    create_monthly(db, "calls", age_type, starts, hashed=None if hashed_month is None else starts[hashed_month])
    cutoff_wall = datetime.now(ZoneInfo(zone)).replace(tzinfo=None) - timedelta(days=RETENTION)
    walls = [w for lo, hi in pairwise(starts) for w in month_walls(lo, hi, per_month)]
    walls += [datetime.combine(starts[0], time()) - timedelta(days=d) for d in (1, 40, 400)]  # default, old
    walls += [datetime.combine(starts[-1], time()) + timedelta(days=d) for d in (0, 3)]  # default, young
    ages = as_ages(clear_of(walls, cutoff_wall), zone, age_type)
    keys = seed(db, "calls", age_type, ages)
    migration.migrate(db, policy_for(policy, "calls", zone, RETENTION, batch_size=3))
    return starts, keys, ages


def leaves(starts: list[date], lo: date, hashed: date | None) -> list[str]:
    return [leaf_name("calls", lo, h) for h in (0, 1)] if lo == hashed else [leaf_name("calls", lo)]


@pytest.mark.parametrize(("age_type", "zone"), [("timestamptz", "Indian/Mauritius"),
                                                 ("timestamp", "America/New_York"), ("date", "Europe/London")])
def test_wholly_old_partitions_become_archive_partitions_the_rest_go_by_batches_and_restore_brings_them_back(
        db, policy, settings, age_type, zone):
    starts, keys, ages = calls(db, policy, zone, age_type)
    pol = policy_for(policy, "calls", zone, RETENTION, batch_size=3)
    original, before, layout = contents(db, "calls", "calls")[0], homes(db, "calls"), partitions(db, "calls")
    counts = {leaf: sum(1 for h in before.values() if h == leaf) for leaf in set(before.values())}
    where = places(db, "calls")

    dry, job = archive(db, pol, settings)

    cutoff = datetime.fromisoformat(job.options["cutoffs"]["default"])
    expected = {k for k, a in zip(keys, ages, strict=True) if eligible(a, cutoff, zone)}
    assert job.state == "succeeded" and dry.eligible == job.records_archived == len(expected)
    assert set(assert_live_xor_archived(db, "calls", "calls_backup", original)) == expected  # nothing young moved
    wholes = [leaf for lo, hi in pairwise(starts) if whole(hi, cutoff, zone) for leaf in leaves(starts, lo, starts[1])]
    assert len(wholes) >= 5  # the hashed month's two leaves among them
    assert moved_whole(job) == {leaf: counts[leaf] for leaf in wholes if leaf in counts}  # empty ones: nothing
    assert how_moved(job) == {leaf: expected_how(leaf, "calls", starts[1]) for leaf in moved_whole(job)}
    attached = [leaf for leaf, how in how_moved(job).items() if how == "attached"]
    assert len(attached) >= 3
    # An attached leaf left the live table and is the archive's partition of its range, its rows where they were.
    assert not set(attached) & set(partitions(db, "calls"))
    assert all(partitions(db, "calls_backup")[archive_leaf("calls", leaf)] == layout[leaf] for leaf in attached)
    archived_homes, archived_places = homes(db, "calls_backup"), places(db, "calls_backup")
    assert all(archived_homes[k] == archive_leaf("calls", leaf) and archived_places[k] == where[k]
               for k, leaf in before.items() if leaf in attached)
    assert all(rows_in(db, leaf) == 0 for leaf, how in how_moved(job).items() if how == "copied")  # attached, empty
    assert rows_in(db, "calls_default") == 2  # the young rows; its old ones went by batches,
    assert rows_in(db, "calls_backup_default") == 3  # into the archive's default partition
    straddling = next(leaf_name("calls", lo) for lo, hi in pairwise(starts) if not whole(hi, cutoff, zone))
    assert 0 < rows_in(db, straddling) < counts[straddling]  # partly past the cutoff: by batches

    restore(db, pol, job)
    assert partitions(db, "calls") == layout  # the attached leaves' partitions created again: name and range
    assert homes(db, "calls") == before
    assert contents(db, "calls", "calls_backup") == (original, {})


def test_a_month_archived_whole_restored_and_archived_again_is_attached_again_and_comes_back_again(
        db, policy, settings):
    """The archive partition a restore emptied is the twin the month's second attach merges (no rows)
    and drops: its name is free again for the attached leaf."""
    starts, keys, ages = calls(db, policy, "UTC", "timestamptz", hashed_month=None)
    pol = policy_for(policy, "calls", "UTC", RETENTION, batch_size=3)
    original, before, layout = contents(db, "calls", "calls")[0], homes(db, "calls"), partitions(db, "calls")
    first = archive_exactly_the_eligible(db, pol, settings, keys, ages, original)[0]
    restore(db, pol, first)
    assert homes(db, "calls") == before

    second = archive_exactly_the_eligible(db, pol, settings, keys, ages, original)[0]

    assert how_moved(second) == how_moved(first) and moved_whole(second) == moved_whole(first)
    assert set(how_moved(second).values()) == {"attached"}
    archived = partitions(db, "calls_backup")
    assert all(archived[archive_leaf("calls", leaf)] == layout[leaf] for leaf in moved_whole(second))
    restore(db, pol, second)
    assert partitions(db, "calls") == layout and homes(db, "calls") == before
    assert contents(db, "calls", "calls_backup") == (original, {})


def test_a_month_the_live_default_partition_took_meanwhile_is_restored_into_the_default_partition(
        db, policy, settings):
    """A row of an attached month inserted since went to the live default partition: the month's partition
    cannot be created again beside it, so its restored rows join it there; none lost, none in both."""
    starts, keys, ages = calls(db, policy, "UTC", "timestamptz", hashed_month=None)
    pol = policy_for(policy, "calls", "UTC", RETENTION, batch_size=3)
    original, before = contents(db, "calls", "calls")[0], homes(db, "calls")
    job = archive_exactly_the_eligible(db, pol, settings, keys, ages, original)[0]
    month = leaf_name("calls", starts[0])
    assert how_moved(job)[month] == "attached"
    late = seed(db, "calls", "timestamptz", [datetime.combine(starts[0], time(12), ZoneInfo("UTC"))])[0]
    original[late] = contents(db, "calls", "calls")[0][late]
    assert homes(db, "calls")[late] == "calls_default"

    restore(db, pol, job)

    assert month not in partitions(db, "calls")
    after = homes(db, "calls")
    assert all(after[k] == ("calls_default" if leaf == month else leaf) for k, leaf in before.items())
    assert contents(db, "calls", "calls_backup") == (original, {})


def test_a_restore_whose_rows_no_live_partition_can_take_stops_with_a_clear_error_and_none_lost(
        db, policy, settings):
    """Without a default partition, an attached month's rows need their partition back: when its name is
    taken (or its lock does not come), the restore stops at the first such batch, as a failed run with a
    schema error; every row is live or archived once, and the restore runs again once the name is free."""
    starts, keys, ages = calls(db, policy, "UTC", "timestamptz", hashed_month=None)
    db.run("DROP TABLE calls_default")  # with its rows
    pol = policy_for(policy, "calls", "UTC", RETENTION, batch_size=3)
    original, before = contents(db, "calls", "calls")[0], homes(db, "calls")
    kept = [(k, a) for k, a in zip(keys, ages, strict=True) if k in original]
    job = archive_exactly_the_eligible(db, pol, settings, [k for k, _ in kept], [a for _, a in kept], original)[0]
    month = leaf_name("calls", starts[0])
    assert how_moved(job)[month] == "attached"
    # Without a default partition, the attach left an empty partition of the month's name and range in
    # the live table (a backdated insert still has a home): dropped, and its name taken by another table.
    assert rows_in(db, month) == 0 and partitions(db, "calls")[month] == partitions(db, "calls_backup")[
        archive_leaf("calls", month)]
    db.run(f"DROP TABLE {month}")
    db.run(f"CREATE TABLE {month} (x int)")

    with pytest.raises(SchemaError, match="fits no partition of the live table"):
        Restorer(db, pol, batch_size=3).restore(job_id=job.id)

    state, error = db.run("SELECT state, error_message FROM calls_log WHERE kind = 'restore'")[0]
    assert state == "failed" and "no partition" in error and "row 0" not in error  # no row's data
    assert {k for k, leaf in before.items() if leaf == month} <= set(
        assert_live_xor_archived(db, "calls", "calls_backup", original))  # the month's rows still archived
    db.run(f"DROP TABLE {month}")
    done, _ = Restorer(db, pol, batch_size=3).restore(job_id=job.id)
    assert done.state == "succeeded"
    assert homes(db, "calls") == before and contents(db, "calls", "calls_backup") == (original, {})


def attached_exported_and_purged(db: Database, policy: Policy, settings, tmp_path) -> tuple[
        Policy, LocalStorage, dict[str, str], dict[str, str], dict[str, str], str]:
    """The live table without a default partition, its oldest month attached to the archive whole,
    then every archived row exported and purged: (policy, storage, the live rows before the run, the
    archived rows, each row's live partition before the run, the oldest month's partition)."""
    starts, keys, ages = calls(db, policy, "UTC", "timestamptz", hashed_month=None)
    db.run("DROP TABLE calls_default")  # with its rows
    pol = policy_for(policy, "calls", "UTC", RETENTION, batch_size=3)
    original = contents(db, "calls", "calls")[0]
    before = homes(db, "calls")
    kept = [(k, a) for k, a in zip(keys, ages, strict=True) if k in original]
    job = archive_exactly_the_eligible(db, pol, settings, [k for k, _ in kept], [a for _, a in kept], original)[0]
    month = leaf_name("calls", starts[0])
    assert how_moved(job)[month] == "attached"
    assert rows_in(db, month) == 0  # the empty partition left in its place
    archived = contents(db, "calls", "calls_backup")[1]
    storage = LocalStorage(tmp_path)
    db.run("UPDATE calls_backup SET archived_at = archived_at - interval '800 days'")
    assert export(db, pol, storage, 730).verified
    assert purge(db, pol, 730).records_archived == len(archived)
    return pol, storage, original, archived, before, month


def test_a_cold_restore_to_live_of_an_attached_month_purged_from_the_archive_fills_the_partition_left_in_its_place(
        db, policy, settings, tmp_path):
    """A month attached to the archive whole left an empty partition of its name and range in the live
    table (no default partition): exported and purged, its rows restored to the live table go back into
    it, every row to the partition it came from."""
    pol, storage, original, archived, before, month = attached_exported_and_purged(db, policy, settings, tmp_path)

    _, result = restore_from(db, pol, storage, to="live")

    assert result.restored == len(archived)
    assert contents(db, "calls", "calls_backup") == (original, {})
    assert homes(db, "calls") == before and rows_in(db, month) > 0


def test_a_cold_restore_to_live_of_rows_no_live_partition_can_take_stops_with_a_clear_error(
        db, policy, settings, tmp_path):
    """The partition left in an attached month's place dropped: restoring the month's export to the
    live table (no default partition) stops with one line naming no row, nothing restored; restored to
    the archive instead, every row is back."""
    pol, storage, original, archived, _, month = attached_exported_and_purged(db, policy, settings, tmp_path)
    db.run(f"DROP TABLE {month}")
    live = contents(db, "calls", "calls_backup")[0]

    with pytest.raises(SchemaError, match="fits no partition of the live table") as err:
        restore_from(db, pol, storage, to="live")
    assert "Partition key" not in str(err.value) and "\n" not in str(err.value)  # no row's values, one line
    assert contents(db, "calls", "calls_backup") == (live, {})  # nothing restored
    _, result = restore_from(db, pol, storage, to="archive")
    assert result.restored == len(archived)
    assert contents(db, "calls", "calls_backup") == (live, archived)


def test_a_restore_dry_run_creates_no_partition(db, policy, settings):
    starts, keys, ages = calls(db, policy, "UTC", "timestamptz", hashed_month=None)
    pol = policy_for(policy, "calls", "UTC", RETENTION, batch_size=3)
    original = contents(db, "calls", "calls")[0]
    job = archive_exactly_the_eligible(db, pol, settings, keys, ages, original)[0]
    layout = partitions(db, "calls")

    done, result = Restorer(db, pol, batch_size=3).restore(job_id=job.id, dry_run=True)

    assert done.state == "succeeded" and result.restored == job.records_archived
    assert partitions(db, "calls") == layout
    assert_live_xor_archived(db, "calls", "calls_backup", original)


def test_an_archive_made_before_archives_were_partitioned_stays_plain_and_wholly_old_leaves_are_copied_into_it(
        db, policy, settings):
    """migrate leaves an existing archive's layout alone: the leaves cannot be attached to a plain table,
    so their rows are copied and they stay in the live table, empty, for the restore to fill again."""
    starts, keys, ages = calls(db, policy, "UTC", "timestamptz", hashed_month=None)
    pol = policy_for(policy, "calls", "UTC", RETENTION, batch_size=3)
    db.run("DROP TABLE calls_backup")
    migration.sync_archive_table(db, "public", "calls", "calls_backup", migration.ARCHIVE_META,
                                 migration.MigrationReport())  # as migrate made it before
    assert "public.calls_backup" not in migration.migrate(db, pol).created
    assert db.scalar("SELECT relkind FROM pg_class WHERE oid = CAST('calls_backup' AS regclass)") == "r"
    original, before, layout = contents(db, "calls", "calls")[0], homes(db, "calls"), partitions(db, "calls")

    job = archive_exactly_the_eligible(db, pol, settings, keys, ages, original)[0]

    assert len(moved_whole(job)) >= 4 and set(how_moved(job).values()) == {"copied"}
    assert partitions(db, "calls") == layout and all(rows_in(db, leaf) == 0 for leaf in moved_whole(job))
    assert db.scalar("SELECT relkind FROM pg_class WHERE oid = CAST('calls_backup' AS regclass)") == "r"
    restore(db, pol, job)
    assert partitions(db, "calls") == layout and homes(db, "calls") == before
    assert contents(db, "calls", "calls_backup") == (original, {})


def test_a_partition_the_application_holds_or_with_a_trigger_is_left_to_row_batches(
        db, policy, settings, connect):
    starts, keys, _ = calls(db, policy, "UTC", "timestamptz", hashed_month=None)
    pol = policy_for(policy, "calls", "UTC", RETENTION, batch_size=3)
    held, triggered = leaf_name("calls", starts[0]), leaf_name("calls", starts[1])
    db.run("CREATE FUNCTION audit_delete() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN OLD; END'")
    db.run(f"CREATE TRIGGER audit BEFORE DELETE ON {triggered} FOR EACH ROW EXECUTE FUNCTION audit_delete()")
    app = connect()
    app.run("START TRANSACTION")
    locked = app.scalar(f"SELECT CAST(ROW(id) AS text) FROM {held} ORDER BY id LIMIT 1 FOR UPDATE")
    try:
        archiver = Archiver(db, pol, settings)
        job = archiver.run_hop(archiver.start().id, owner="w", hop=1).job
    finally:
        app.run("ROLLBACK")
    assert job.state == "succeeded"
    assert held not in moved_whole(job) and triggered not in moved_whole(job)
    assert len(moved_whole(job)) >= 2  # the other wholly old months
    live, kept = contents(db, "calls", "calls_backup")
    assert locked in live and locked not in kept  # skipped by the batches, as a row the application holds
    assert rows_in(db, held) == 1 and rows_in(db, triggered) == 0  # the rest of both moved by batches


def test_a_cancel_between_two_partition_moves_ends_the_run_there(db, policy, settings, connect):
    calls(db, policy, "UTC", "timestamptz")
    pol = policy_for(policy, "calls", "UTC", RETENTION, batch_size=3)
    original = contents(db, "calls", "calls")[0]
    other = connect()
    archiver = Archiver(db, pol, settings)

    def cancel(_job, _result) -> None:
        other.run("UPDATE calls_log SET cancel_requested = true")

    outcome = archiver.run_hop(archiver.start().id, owner="w", hop=1, on_batch=cancel)
    assert outcome.job.state == "cancelled"
    assert len(moved_whole(outcome.job)) == 1 and outcome.job.batches == 1
    kept = assert_live_xor_archived(db, "calls", "calls_backup", original)
    assert len(kept) == outcome.job.records_archived == sum(moved_whole(outcome.job).values())


def test_partition_moves_count_as_batches_across_a_pause_and_a_resumed_hop(db, policy, settings):
    starts, keys, ages = calls(db, policy, "UTC", "timestamptz", hashed_month=None)
    pol = policy_for(policy, "calls", "UTC", RETENTION, batch_size=3)
    original = contents(db, "calls", "calls")[0]
    archiver = Archiver(db, pol, settings)
    first = archiver.run_hop(archiver.start().id, owner="w1", hop=1, max_batches=2)
    assert first.status == "paused" and first.job.batches == 2 and len(moved_whole(first.job)) == 2
    done = Archiver(db, pol, settings).run_hop(first.job.id, owner="w2", hop=None).job
    cutoff = datetime.fromisoformat(done.options["cutoffs"]["default"])
    assert done.state == "succeeded"
    assert done.records_archived == sum(eligible(a, cutoff, "UTC") for a in ages)
    assert len(moved_whole(done)) == sum(whole(hi, cutoff, "UTC") for _, hi in pairwise(starts))
    assert_live_xor_archived(db, "calls", "calls_backup", original)


class TightBudget:
    """A hop with only a few milliseconds left, whatever it does."""

    def remaining_ms(self) -> float:
        return 4.0


def test_a_move_that_would_outlast_its_share_of_the_hop_gives_way_to_row_batches(db, policy, settings):
    starts, _, _ = calls(db, policy, "UTC", "timestamptz", hashed_month=None)
    for lo, hi in pairwise(starts[:5]):  # every wholly old month too big to move in a few milliseconds
        db.run("INSERT INTO calls (created_at, note, amount) SELECT g, 'bulk', 0 FROM generate_series("
               "CAST(:lo AS timestamptz), CAST(:hi AS timestamptz) - interval '1 minute', (CAST(:hi AS timestamptz)"
               " - CAST(:lo AS timestamptz)) / 5000) g", lo=lo.isoformat(), hi=hi.isoformat())
    pol = policy_for(policy, "calls", "UTC", RETENTION, batch_size=1000)
    original = contents(db, "calls", "calls")[0]
    archiver = Archiver(db, pol, settings)
    outcome = archiver.run_hop(archiver.start().id, owner="w", hop=1, budget=TightBudget())
    assert moved_whole(outcome.job) == {} and outcome.job.records_archived > 0  # by batches
    assert outcome.status in ("continue", "done")
    assert_live_xor_archived(db, "calls", "calls_backup", original)


def test_no_whole_partition_moves_when_another_table_references_the_rows(db, policy, settings):
    """In skip mode (the default) a referenced row stays live: eligibility reads another table, so every
    partition goes by row batches (engine.only_the_row)."""
    starts, keys, ages = calls(db, policy, "UTC", "timestamptz", hashed_month=None)
    db.run("CREATE TABLE notes (id serial PRIMARY KEY, call_id bigint, call_at timestamptz,"
           " FOREIGN KEY (call_id, call_at) REFERENCES calls (id, created_at))")
    db.run(f"INSERT INTO notes (call_id, call_at) SELECT id, created_at FROM {leaf_name('calls', starts[0])}"
           " ORDER BY id LIMIT 1")
    pol = policy_for(policy, "calls", "UTC", RETENTION, batch_size=3)
    migration.migrate(db, pol)
    original = contents(db, "calls", "calls")[0]
    dry, job = archive(db, pol, settings)
    cutoff = datetime.fromisoformat(job.options["cutoffs"]["default"])
    assert moved_whole(job) == {}
    assert dry.eligible == job.records_archived == sum(eligible(a, cutoff, "UTC") for a in ages) - 1
    assert_live_xor_archived(db, "calls", "calls_backup", original)


def test_a_longer_retention_for_one_line_of_business_keeps_its_months_out_of_whole_moves(db, policy, settings):
    """With ``retention_by_lob`` a month moves whole only when it lies past the earliest cutoff: a month
    past the default cutoff but not past Life's may hold Life rows still young for Life."""
    starts, _, _ = calls(db, policy, "UTC", "timestamptz", hashed_month=None)
    db.run("ALTER TABLE calls ADD COLUMN lob text")
    db.run("UPDATE calls SET lob = CASE WHEN id % 2 = 0 THEN 'Life' ELSE 'Motor' END")
    pol = policy_for(policy, "calls", "UTC", RETENTION, batch_size=3).model_copy(
        update={"lob_column": "lob", "retention_by_lob": {"Life": 150}})
    migration.migrate(db, pol)
    original = contents(db, "calls", "calls")[0]
    lobs = dict(db.run("SELECT CAST(ROW(id) AS text), lob FROM calls"))

    dry, job = archive(db, pol, settings)

    cutoffs = job.options["cutoffs"]
    default, life = (datetime.fromisoformat(c) for c in (cutoffs["default"], cutoffs["by_lob"]["Life"]))
    assert moved_whole(job) and all(whole(hi, life, "UTC") for lo, hi in pairwise(starts)
                                    if leaf_name("calls", lo) in moved_whole(job))
    assert any(whole(hi, default, "UTC") and not whole(hi, life, "UTC") for _, hi in pairwise(starts))
    kept = assert_live_xor_archived(db, "calls", "calls_backup", original)
    assert dry.eligible == job.records_archived == len(kept)
    cut = {k: (life if lob == "Life" else default) for k, lob in lobs.items()}
    archived_ages = dict(db.run("SELECT CAST(ROW(id) AS text), created_at FROM calls_backup"))
    live_ages = dict(db.run("SELECT CAST(ROW(id) AS text), created_at FROM calls"))
    assert all(a < cut[k] for k, a in archived_ages.items()) and all(a >= cut[k] for k, a in live_ages.items())


@pytest.mark.parametrize("on_partitions", [False, True], ids=["grants on the parent only", "and on each partition"])
def test_a_role_granted_the_parent_only_moves_every_partition_by_row_batches(
        db, policy, settings, server_params, dbname, on_partitions):
    """docs/security.md: whole moves need SELECT and TRUNCATE on each partition; without them the rows
    go by batches, through the parent."""
    starts, _, ages = calls(db, policy, "UTC", "timestamptz")
    pol = policy_for(policy, "calls", "UTC", RETENTION, batch_size=3)
    original = contents(db, "calls", "calls")[0]
    role = f"archiver_part_{uuid.uuid4().hex[:8]}"
    grants = [f'CREATE ROLE "{role}" LOGIN', f'GRANT USAGE ON SCHEMA public TO "{role}"',
              f'GRANT SELECT, DELETE ON calls TO "{role}"', f'GRANT UPDATE (id) ON calls TO "{role}"',
              f'GRANT SELECT, INSERT ON calls_backup TO "{role}"',
              f'GRANT SELECT, INSERT, UPDATE ON calls_log TO "{role}"',
              f'GRANT USAGE ON SEQUENCE calls_log_id_seq TO "{role}"']
    if on_partitions:
        grants += [f'GRANT SELECT, TRUNCATE ON {r[0]} TO "{role}"' for r in db.run(
            "SELECT CAST(relid AS regclass) FROM pg_partition_tree('calls') WHERE level > 0")]
    for sql in grants:
        db.run(sql)
    as_role = Database(replace(server_params, database=dbname, user=role, password=None, timezone="UTC"))
    try:
        archiver = Archiver(as_role, pol, settings)
        job = archiver.run_hop(archiver.start().id, owner="w", hop=1).job
    finally:
        as_role.close()
        db.run(f'DROP OWNED BY "{role}"')
        db.run(f'DROP ROLE "{role}"')
    cutoff = datetime.fromisoformat(job.options["cutoffs"]["default"])
    assert job.state == "succeeded" and job.records_archived == sum(eligible(a, cutoff, "UTC") for a in ages)
    assert (len(moved_whole(job)) >= 4) if on_partitions else moved_whole(job) == {}
    assert set(how_moved(job).values()) <= {"copied"}  # only the tables' owner may detach and attach
    assert_live_xor_archived(db, "calls", "calls_backup", original)
