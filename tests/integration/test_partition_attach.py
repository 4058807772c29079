"""Whole partitions attached to a partitioned archive: a leaf of the live table wholly past the cutoff
leaves the live table and becomes the archive's partition of its range, no row copied; where it cannot
(a generated column, a role that does not own the tables, the application holding the live table, an
archive partition of the range holding more than a quarter of the leaf's rows, the archive's default
partition holding rows of the range, an unlogged leaf) the leaf's rows are copied instead, and every
row stays live xor archived with its content."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from archiver import migration
from archiver.archive_partitions import mirror, parts
from archiver.config import Policy, Settings
from archiver.db import Database
from archiver.engine import Archiver
from archiver.jobs import Job
from tests.keyed_tables import assert_live_xor_archived, contents, eligible, insert, policy_for, set_zone
from tests.partitioned_tables import CAST, as_ages

RETENTION = 60
# The live table's ranges, in days from today: four wholly past a 60-day cutoff, one straddling it,
# one young. Rows sit at noon of days well clear of the cutoff.
EDGES = (-120, -100, -90, -80, -70, -40, 30)
DAYS = {-120: (-119, -110, -101), -100: (-99, -97, -96, -94, -93, -91), -90: (-89, -85, -81), -80: (-79, -75, -71),
        -70: (-69, -65, -50, -45), -40: (-39, -10, 5)}
OFFSETS = [d for ds in DAYS.values() for d in ds]


def part(lo: int) -> str:
    """The live partition of the range starting ``lo`` days from today."""
    return f"calls_p{abs(lo)}"


def archived_part(lo: int) -> str:
    return f"calls_backup_p{abs(lo)}"


def day(offset: int) -> date:
    return datetime.now(UTC).date() + timedelta(days=offset)


def create_calls(db: Database, *, columns: str = "", note: str = "note text", key: str = "id bigint GENERATED"
                 " ALWAYS AS IDENTITY", default: bool = False, age_type: str = "timestamptz") -> None:
    """``calls`` (id, created_at of ``age_type``, note, amount, ``columns``) range-partitioned on
    created_at over ``EDGES``, with a default partition if asked."""
    extra = f", {columns}" if columns else ""
    db.run(f"CREATE TABLE calls ({key}, created_at {CAST[age_type]} NOT NULL, {note}, amount numeric(12, 2){extra},"
           " PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at)")
    for lo, hi in pairwise(EDGES):
        db.run(f"CREATE TABLE {part(lo)} PARTITION OF calls FOR VALUES FROM ('{day(lo)}') TO ('{day(hi)}')")
    if default:
        db.run("CREATE TABLE calls_default PARTITION OF calls DEFAULT")


def ages(offsets: Any = None, age_type: str = "timestamptz") -> list[Any]:
    """Noon (in UTC) of each day ``offsets`` (by default every day of ``DAYS``), as ``age_type``."""
    days = offsets if offsets is not None else OFFSETS
    return as_ages([datetime.combine(day(d), time(12)) for d in days], "UTC", age_type)


def calls(db: Database, policy: Policy, *, offsets: Any = None, key_kind: str = "identity", migrate: bool = True,
          age_type: str = "timestamptz", **table: Any) -> tuple[Policy, list[str], list[Any]]:
    """The ``calls`` table with a row at noon of each day of ``DAYS`` (or ``offsets``), migrated; its
    policy, the rows' keys and ages."""
    set_zone(db, "UTC")
    create_calls(db, age_type=age_type, **table)
    when = ages(offsets, age_type)
    keys = insert(db, "calls", key_kind, age_type, when)
    pol = policy_for(policy, "calls", "UTC", RETENTION, batch_size=3)
    if migrate:
        migration.migrate(db, pol)
    return pol, keys, when


def moved_how(job: Job) -> dict[str, str]:
    """{live partition: "attached" or "copied"} for the partitions the run moved whole."""
    return {p["partition"]: p["how"] for p in job.options.get("whole_partitions", [])}


def home(db: Database, table: str) -> dict[str, str]:
    """{row key's text: the partition it is in}."""
    return dict(db.run(f"SELECT CAST(ROW(id) AS text), CAST(CAST(tableoid AS regclass) AS text) FROM {table}"))


def run(db: Database, policy: Policy, settings: Settings) -> Job:
    archiver = Archiver(db, policy, settings)
    outcome = archiver.run_hop(archiver.start().id, owner="w", hop=None)
    assert outcome.status == "done" and outcome.job is not None
    return outcome.job


def archived_exactly_the_eligible(db: Database, job: Job, keys: list[str], when: list[datetime],
                                  original: dict[str, str]) -> dict[str, str]:
    """The run succeeded and exactly the rows past its cutoff are archived, unchanged, the rest live."""
    cutoff = datetime.fromisoformat(job.options["cutoffs"]["default"])
    expected = {k for k, a in zip(keys, when, strict=True) if eligible(a, cutoff, "UTC")}
    assert job.state == "succeeded" and job.records_archived == len(expected)
    kept = assert_live_xor_archived(db, "calls", "calls_backup", original)
    assert set(kept) == expected
    return kept


WHOLE = EDGES[:4]  # the ranges wholly past the cutoff


@pytest.mark.parametrize("default", [False, True], ids=["no live default", "a live default"])
@pytest.mark.parametrize("age_type", ["timestamptz", "timestamp", "date"])
def test_wholly_old_leaves_become_archive_partitions_with_the_jobs_values_and_leave_empty_ones_without_a_default(
        db, policy, settings, age_type, default):
    """Without a default partition in the live table, an empty partition of each attached leaf's name and
    range takes its place (a backdated insert keeps a home); with one, nothing does (the default takes such rows)."""
    pol, keys, when = calls(db, policy, age_type=age_type, default=default)
    original = contents(db, "calls", "calls")[0]

    job = run(db, pol, settings)

    archived_exactly_the_eligible(db, job, keys, when, original)
    assert moved_how(job) == {part(lo): "attached" for lo in WHOLE}
    live_parts = {p.name: p.bound for p in parts(db, "public.calls")}
    archive_bounds = {p.name: p.bound for p in parts(db, "public.calls_backup")}
    if default:  # the attached leaves left the live table
        assert set(live_parts) == {part(lo) for lo in EDGES[4:-1]} | {"calls_default"}
    else:
        assert set(live_parts) == {part(lo) for lo in EDGES[:-1]}
        assert all(live_parts[part(lo)] == archive_bounds[archived_part(lo)] for lo in WHOLE)
        assert db.scalar("SELECT " + " + ".join(f"(SELECT count(*) FROM ONLY {part(lo)})" for lo in WHOLE)) == 0
    homes = home(db, "calls_backup")
    assert {homes[k] for k, d in zip(keys, OFFSETS, strict=True) if d < -70} == {
        archived_part(lo) for lo in WHOLE}
    meta = db.run("SELECT DISTINCT archived_by, archive_reason, CAST(archive_job_id AS text) FROM calls_backup")
    assert meta == [[pol.archived_by, pol.archive_reason, job.id]]
    # An archive partition keeps no default of the live table (a sequence's nextval) and gets the
    # archive's own for rows inserted later.
    assert db.scalar("SELECT count(*) FROM pg_attrdef WHERE adrelid = CAST('calls_backup_p120' AS regclass)") == 0
    db.run(f"INSERT INTO calls_backup (id, created_at, archive_job_id) VALUES (-1, CAST(:a AS {CAST[age_type]}),"
           " CAST(:j AS uuid))", a=ages([-118], age_type)[0].isoformat(), j=job.id)
    assert db.scalar("SELECT archived_by FROM calls_backup_p120 WHERE id = -1") == "system"


def test_a_backdated_insert_after_an_attach_lands_in_the_partition_left_in_its_place_and_the_next_run_moves_it(
        db, policy, settings):
    """Without a live default partition, a row of an attached leaf's range inserted later by the
    application is not refused: it lands in the empty partition left in the leaf's place. The next run
    passes the empty ones over; once one holds the new row, a run moves exactly that row (copied into
    the archive partition of its range, which holds more), the partition stays, empty."""
    pol, keys, when = calls(db, policy)
    original = contents(db, "calls", "calls")[0]
    first = run(db, pol, settings)
    archived_exactly_the_eligible(db, first, keys, when, original)
    assert moved_how(first)[part(-120)] == "attached"

    idle = run(db, pol, settings)
    assert (idle.records_archived, moved_how(idle)) == (0, {})

    new = insert(db, "calls", "identity", "timestamptz", ages([-115]))[0]
    assert home(db, "calls")[new] == part(-120)
    everything = {**contents(db, "calls", "calls_backup")[0], **contents(db, "calls", "calls_backup")[1]}
    before = assert_live_xor_archived(db, "calls", "calls_backup", everything)

    job = run(db, pol, settings)

    assert (job.records_archived, moved_how(job)) == (1, {part(-120): "copied"})
    assert assert_live_xor_archived(db, "calls", "calls_backup", everything) == {**before, new: everything[new]}
    assert home(db, "calls_backup")[new] == archived_part(-120)
    assert db.scalar("SELECT CAST(archive_job_id AS text) FROM calls_backup WHERE CAST(ROW(id) AS text) = :k",
                     k=new) == job.id
    assert db.scalar(f"SELECT count(*) FROM ONLY {part(-120)}") == 0
    assert part(-120) in {p.name for p in parts(db, "public.calls")}


def test_a_foreign_key_of_the_live_table_is_not_kept_on_the_archive_partition(db, policy, settings):
    db.run("CREATE TABLE agents (id int PRIMARY KEY)")
    db.run("INSERT INTO agents VALUES (1), (2)")
    pol, keys, when = calls(db, policy, columns="agent int REFERENCES agents (id)")
    db.run("UPDATE calls SET agent = CASE WHEN created_at < :c THEN 1 ELSE 2 END", c=ages([-80])[0].isoformat())
    original = contents(db, "calls", "calls")[0]

    job = run(db, pol, settings)

    archived_exactly_the_eligible(db, job, keys, when, original)
    assert moved_how(job) == {part(lo): "attached" for lo in WHOLE}
    assert db.scalar("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid IN"
                     " (SELECT relid FROM pg_partition_tree('calls_backup'))") == 0
    assert db.scalar("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid IN"
                     " (SELECT relid FROM pg_partition_tree('calls'))") > 0  # the live leaves keep theirs
    db.run("DELETE FROM agents WHERE id = 1")  # referenced by archived rows only: an archived row holds nothing up


@pytest.mark.parametrize("key", ["id bigint GENERATED ALWAYS AS IDENTITY", "id bigserial"], ids=["identity", "serial"])
def test_an_identity_or_serial_key_attaches_and_the_live_table_keeps_numbering(db, policy, settings, key):
    pol, keys, when = calls(db, policy, key=key)
    original = contents(db, "calls", "calls")[0]

    job = run(db, pol, settings)

    archived_exactly_the_eligible(db, job, keys, when, original)
    assert moved_how(job) == {part(lo): "attached" for lo in WHOLE}
    assert db.run("SELECT attidentity, atthasdef FROM pg_attribute WHERE attname = 'id'"
                  " AND attrelid = CAST('calls_backup_p120' AS regclass)") == [["", False]]
    top = max(int(k.strip("()")) for k in keys)
    new = db.scalar("INSERT INTO calls (created_at) VALUES (now()) RETURNING id")
    assert new > top


def test_a_non_default_collation_attaches_and_a_differing_one_is_copied(db, policy, settings):
    pol, keys, when = calls(db, policy, note='note text COLLATE "C"')
    original = contents(db, "calls", "calls")[0]
    assert db.scalar("SELECT collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation"
                     " WHERE attrelid = CAST('calls_backup' AS regclass) AND attname = 'note'") == "C"
    first = Archiver(db, pol, settings)
    job = first.run_hop(first.start().id, owner="w", hop=1, max_batches=1).job  # one leaf attached
    assert moved_how(job) == {part(WHOLE[0]): "attached"}
    db.run('ALTER TABLE calls_backup ALTER COLUMN note TYPE text COLLATE "POSIX"')

    done = Archiver(db, pol, settings).run_hop(job.id, owner="w2", hop=None).job

    archived_exactly_the_eligible(db, done, keys, when, original)
    assert moved_how(done) == {part(WHOLE[0]): "attached", **{part(lo): "copied" for lo in WHOLE[1:]}}


@pytest.mark.parametrize("kind", ["STORED", "VIRTUAL"])
def test_a_generated_column_copies_the_leaves(db, policy, settings, kind):
    if kind == "VIRTUAL" and int(db.scalar("SHOW server_version_num")) < 180000:
        pytest.skip("virtual generated columns came with PostgreSQL 18")
    pol, keys, when = calls(db, policy, columns=f"cents bigint GENERATED ALWAYS AS (amount * 100) {kind}")
    original = contents(db, "calls", "calls")[0]

    job = run(db, pol, settings)

    archived_exactly_the_eligible(db, job, keys, when, original)
    assert moved_how(job) == {part(lo): "copied" for lo in WHOLE}
    assert db.scalar("SELECT bool_and(cents = amount * 100) FROM calls_backup") is True


def test_a_role_that_does_not_own_the_tables_copies_without_locking_the_live_table(
        db, policy, settings, server_params, dbname, log_lines):
    pol, keys, when = calls(db, policy)
    original = contents(db, "calls", "calls")[0]
    role = f"archiver_attach_{uuid.uuid4().hex[:8]}"
    for sql in [f'CREATE ROLE "{role}" LOGIN', f'GRANT USAGE ON SCHEMA public TO "{role}"',
                f'GRANT SELECT, DELETE ON calls TO "{role}"', f'GRANT UPDATE (id) ON calls TO "{role}"',
                f'GRANT SELECT, INSERT ON calls_backup TO "{role}"',
                f'GRANT SELECT, INSERT, UPDATE ON calls_log TO "{role}"',
                f'GRANT USAGE ON SEQUENCE calls_log_id_seq TO "{role}"',
                *(f'GRANT SELECT, TRUNCATE ON {part(lo)} TO "{role}"' for lo in EDGES[:-1])]:
        db.run(sql)
    as_role = Database(replace(server_params, database=dbname, user=role, password=None, timezone="UTC"))
    try:
        job = run(as_role, pol, settings)
    finally:
        as_role.close()
        db.run(f'DROP OWNED BY "{role}"')
        db.run(f'DROP ROLE "{role}"')

    archived_exactly_the_eligible(db, job, keys, when, original)
    assert moved_how(job) == {part(lo): "copied" for lo in WHOLE}
    assert "copied, not attached" not in log_lines.getvalue()  # never tried: no lock on the live table


def test_the_application_holding_the_live_table_gets_the_leaves_copied_and_others_wait_no_longer_than_the_lock_wait(
        db, policy, settings, connect):
    pol, keys, when = calls(db, policy)
    original = contents(db, "calls", "calls")[0]
    app, reader = connect(), connect()
    app.run("START TRANSACTION")
    young = ages([-20])[0].isoformat()
    app.run("SELECT count(*) FROM calls WHERE created_at > :y", y=young)  # the live table and its young leaf
    reader.run("SET lock_timeout = '2s'")  # a query queued behind the move's lock request gives up past it
    done = threading.Event()
    reads = 0
    try:
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(run, db, pol, settings)
            future.add_done_callback(lambda _: done.set())
            while not done.is_set():
                reader.run("SELECT count(*) FROM calls")
                reads += 1
            job = future.result()
        assert app.scalar("SELECT count(*) FROM calls WHERE created_at > :y", y=young) == 2  # it went on
    finally:
        app.run("ROLLBACK")

    archived_exactly_the_eligible(db, job, keys, when, original)
    assert moved_how(job) == {part(lo): "copied" for lo in WHOLE}
    assert reads > 0


@pytest.mark.parametrize(("first_retention", "how", "twin_rows", "hashed"),
                         [(98, "attached", 1, False), (95, "copied", 3, False), (92, "copied", 5, False),
                          (92, "copied", 5, True)],
                         ids=["twin a fifth of the leaf: merged", "twin as big as the leaf: copied into it",
                              "twin bigger: copied into it", "twin partitioned in turn, bigger: copied into it"])
def test_a_leaf_whose_archive_partition_already_holds_rows_is_merged_or_copied_by_size(
        db, policy, settings, first_retention, how, twin_rows, hashed):
    pol, keys, when = calls(db, policy)
    original = contents(db, "calls", "calls")[0]
    if hashed:
        db.run(f"CREATE TABLE {archived_part(-100)} PARTITION OF calls_backup FOR VALUES FROM ('{day(-100)}')"
               f" TO ('{day(-90)}') PARTITION BY HASH (id)")
        for h in (0, 1):
            db.run(f"CREATE TABLE {archived_part(-100)}_h{h} PARTITION OF {archived_part(-100)}"
                   f" FOR VALUES WITH (MODULUS 2, REMAINDER {h})")
    first = run(db, pol.model_copy(update={"retention_days": first_retention}), settings)  # -100 straddles
    assert db.scalar(f"SELECT count(*) FROM {archived_part(-100)}") == twin_rows
    assert part(-100) not in moved_how(first)

    job = run(db, pol, settings)

    assert moved_how(job)[part(-100)] == how
    cutoff = datetime.fromisoformat(job.options["cutoffs"]["default"])
    expected = {k for k, a in zip(keys, when, strict=True) if eligible(a, cutoff, "UTC")}
    assert set(assert_live_xor_archived(db, "calls", "calls_backup", original)) == expected
    assert first.records_archived + job.records_archived == len(expected)
    by_job = dict(db.run("SELECT CAST(archive_job_id AS text), count(*) FROM calls_backup GROUP BY 1"))
    assert by_job == {first.id: first.records_archived, job.id: job.records_archived}
    assert db.scalar(f"SELECT count(*) FROM {archived_part(-100)}") == len(DAYS[-100])  # one partition, every row
    assert [p.name for p in parts(db, "public.calls_backup")].count(archived_part(-100)) == 1
    # Either way the live table (no default partition) keeps an empty partition of the range: the leaf
    # copied, or the one left in the attached leaf's place.
    assert part(-100) in {p.name for p in parts(db, "public.calls")}
    assert db.scalar(f"SELECT count(*) FROM ONLY {part(-100)}") == 0


def test_a_leaf_whose_range_the_archive_default_partition_holds_rows_of_is_copied(db, policy, settings):
    """Rows of a range the live table had no partition for went by batches into the archive's default
    partition; the range's new live partition cannot become the archive's (nor get a twin): it is copied."""
    pol, keys, when = calls(db, policy, default=True, offsets=[d for lo, ds in DAYS.items() if lo != -90 for d in ds])
    db.run(f"ALTER TABLE calls DETACH PARTITION {part(-90)}")
    db.run(f"DROP TABLE {part(-90)}")
    insert(db, "calls", "identity", "timestamptz", ages([-89, -88]))  # into the live default partition
    first = run(db, pol, settings)
    assert db.scalar("SELECT count(*) FROM calls_backup_default") == 2  # the two rows of the missing range
    db.run(f"CREATE TABLE {part(-90)} PARTITION OF calls FOR VALUES FROM ('{day(-90)}') TO ('{day(-80)}')")
    late = [ages([d])[0] for d in (-85, -81)]
    late_keys = insert(db, "calls", "identity", "timestamptz", late)
    original = {**contents(db, "calls", "calls")[0], **contents(db, "calls", "calls_backup")[1]}
    cutoff = datetime.now(UTC) - timedelta(days=RETENTION)
    assert mirror(db, pol, "timestamp with time zone", cutoff) == []  # gives way: no twin for the range

    job = run(db, pol, settings)

    assert moved_how(job) == {part(-90): "copied"}
    assert db.scalar("SELECT count(*) FROM calls_backup_default") == 4
    kept = assert_live_xor_archived(db, "calls", "calls_backup", original)
    assert set(late_keys) <= set(kept) and job.records_archived == 2 and first.state == "succeeded"


def test_a_live_default_partition_moves_by_batches_and_its_lock_makes_the_leaves_copied(
        db, policy, settings, connect):
    pol, keys, when = calls(db, policy, default=True, offsets=[d for ds in DAYS.values() for d in ds] + [-400, 45])
    original = contents(db, "calls", "calls")[0]
    app = connect()
    app.run("START TRANSACTION")
    app.run("SELECT id FROM calls_default WHERE created_at > now() FOR UPDATE")  # the default only, not the parent
    try:
        held = run(db, pol, settings)
    finally:
        app.run("ROLLBACK")
    archived_exactly_the_eligible(db, held, keys, when, original)
    # DETACH locks the live default partition (its range grows): held by the application, the leaves are copied.
    assert moved_how(held) == {part(lo): "copied" for lo in WHOLE}
    assert db.scalar("SELECT count(*) FROM calls_default") == 1 and db.scalar(
        "SELECT count(*) FROM calls_backup_default") == 1  # the -400 row, by batches


def test_a_live_default_partition_does_not_keep_the_leaves_from_being_attached(db, policy, settings):
    pol, keys, when = calls(db, policy, default=True, offsets=[d for ds in DAYS.values() for d in ds] + [-400, 45])
    original = contents(db, "calls", "calls")[0]
    job = run(db, pol, settings)
    archived_exactly_the_eligible(db, job, keys, when, original)
    assert moved_how(job) == {part(lo): "attached" for lo in WHOLE}
    db.run("INSERT INTO calls (created_at) VALUES (:a)", a=ages([-115])[0].isoformat())  # its range left the table
    assert db.scalar("SELECT CAST(tableoid AS regclass) FROM calls WHERE created_at = :a",
                     a=ages([-115])[0].isoformat()) == "calls_default"


class TestMirror:
    """``mirror`` gives each live range the run may move rows of an archive partition, once."""

    def test_is_idempotent_and_leaves_young_ranges_and_the_default_alone(self, db, policy):
        pol, _, _ = calls(db, policy, default=True)
        cutoff = datetime.now(UTC) - timedelta(days=RETENTION)
        made = mirror(db, pol, "timestamp with time zone", cutoff)
        assert sorted(made) == sorted(archived_part(lo) for lo in EDGES[:5])  # the straddling one too
        before = parts(db, "public.calls_backup")
        assert mirror(db, pol, "timestamp with time zone", cutoff) == []
        assert parts(db, "public.calls_backup") == before
        live = {p.bound for p in parts(db, "public.calls") if p.name != "calls_default"}
        assert {p.bound for p in before if p.name != "calls_backup_default"} == live - {
            p.bound for p in parts(db, "public.calls") if p.name == part(-40)}

    def test_gives_way_where_the_range_cannot_have_its_partition(self, db, policy, connect, log_lines):
        pol, _, _ = calls(db, policy)
        db.run(f"CREATE TABLE {archived_part(-120)} (x int)")  # the name is taken
        db.run(f"CREATE TABLE calls_backup_q PARTITION OF calls_backup FOR VALUES FROM ('{day(-100)}')"
               f" TO ('{day(-80)}')")  # overlaps two ranges
        db.run("INSERT INTO calls_backup_default (id, created_at) VALUES (1, :a)", a=ages([-75])[0].isoformat())
        holder = connect()
        cutoff = datetime.now(UTC) - timedelta(days=RETENTION)
        assert mirror(db, pol, "timestamp with time zone", cutoff) == [archived_part(-70)]
        db.run(f"DROP TABLE {archived_part(-120)}")
        db.run("DROP TABLE calls_backup_q")
        holder.run("START TRANSACTION")
        holder.run("SELECT count(*) FROM calls_backup")  # e.g. the export reading the archive
        log_lines.seek(0)
        log_lines.truncate(0)
        try:
            assert mirror(db, pol, "timestamp with time zone", cutoff) == []  # its lock did not come
        finally:
            holder.run("ROLLBACK")
        assert log_lines.getvalue().count("55P03") == 1  # one wait for the lock, not one per range
        made = mirror(db, pol, "timestamp with time zone", cutoff)
        assert sorted(made) == sorted(archived_part(lo) for lo in (-120, -100, -90))

    def test_does_nothing_for_a_plain_archive(self, db, policy):
        pol, _, _ = calls(db, policy, migrate=False)
        db.run("CREATE TABLE calls_backup (LIKE calls)")
        migration.migrate(db, pol)
        assert mirror(db, pol, "timestamp with time zone", datetime.now(UTC)) == []


def test_an_archive_partition_keeps_none_of_the_grants_of_the_live_partition(db, policy, settings):
    pol, keys, when = calls(db, policy)
    app = f"app_{uuid.uuid4().hex[:8]}"
    db.run(f'CREATE ROLE "{app}"')
    try:
        for lo in EDGES[:-1]:
            db.run(f'GRANT SELECT, UPDATE, DELETE ON {part(lo)} TO "{app}", PUBLIC')
            db.run(f'GRANT UPDATE (note) ON {part(lo)} TO "{app}"')
        job = run(db, pol, settings)
        assert moved_how(job) == {part(lo): "attached" for lo in WHOLE}
        granted = db.run(
            "SELECT CAST(relid AS text) FROM pg_partition_tree('calls_backup') WHERE has_table_privilege(:r, relid,"
            " 'SELECT, UPDATE, DELETE') OR has_column_privilege(:r, relid, 'note', 'UPDATE')", r=app)
        assert granted == []
        assert db.scalar(f"SELECT has_table_privilege(:r, '{part(-70)}', 'UPDATE')", r=app) is True  # live: kept
    finally:
        db.run(f'DROP OWNED BY "{app}"')
        db.run(f'DROP ROLE "{app}"')


def test_a_reader_of_the_archive_gets_the_leaves_copied_not_waited_for(db, policy, settings, connect):
    """ATTACH locks the archive's default partition (its range shrinks): a long read of the archive (the
    export) holds it, and the leaves are copied."""
    pol, keys, when = calls(db, policy)
    original = contents(db, "calls", "calls")[0]
    export = connect()
    export.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    export.run("SELECT count(*) FROM calls_backup")
    try:
        job = run(db, pol, settings)
        assert export.scalar("SELECT count(*) FROM calls_backup") == 0  # its snapshot, undisturbed
    finally:
        export.run("ROLLBACK")
    archived_exactly_the_eligible(db, job, keys, when, original)
    assert moved_how(job) == {part(lo): "copied" for lo in WHOLE}


def test_a_key_the_archive_already_holds_leaves_its_range_to_row_batches(db, policy, settings):
    """Merging, then copying, would put a second row of that key in the archive: both give way, and the
    batches leave that one row live (counted as failed) and move the rest."""
    pol, keys, when = calls(db, policy)
    first = run(db, pol.model_copy(update={"retention_days": 98}), settings)  # one row of -100 archived
    twin = contents(db, "calls", "calls_backup")[1]
    db.run(f"INSERT INTO {part(-100)} (id, created_at, note, amount) OVERRIDING SYSTEM VALUE"
           f" SELECT id, created_at, 'again', 0 FROM {archived_part(-100)}")  # as if restored by hand
    clash = next(iter(db.run(f"SELECT CAST(ROW(id) AS text) FROM {archived_part(-100)}")))[0]
    original = contents(db, "calls", "calls")[0]

    job = run(db, pol, settings)

    assert part(-100) not in moved_how(job) and job.state == "partial" and job.records_failed == 1
    live, kept = contents(db, "calls", "calls_backup")
    assert set(live) & set(kept) == {clash} and live[clash] == original[clash] and kept[clash] == twin[clash]
    assert {**kept, **live} == {**twin, **original}
    assert first.records_archived + job.records_archived == len(kept)


def test_a_column_the_live_table_dropped_is_null_in_the_attached_rows(db, policy, settings):
    pol, keys, when = calls(db, policy, columns="legacy text")
    db.run("UPDATE calls SET legacy = 'x'")
    db.run("ALTER TABLE calls DROP COLUMN legacy")  # the archive keeps its column
    original = contents(db, "calls", "calls")[0]

    job = run(db, pol, settings)

    archived_exactly_the_eligible(db, job, keys, when, original)
    assert moved_how(job) == {part(lo): "attached" for lo in WHOLE}
    assert db.scalar("SELECT count(legacy) FROM calls_backup") == 0


@pytest.mark.parametrize("taken", [False, True], ids=["name free", "name taken there"])
def test_a_leaf_in_another_schema_is_attached_and_renamed_in_its_own_schema(db, policy, settings, taken):
    pol, keys, when = calls(db, policy, migrate=False)
    db.run("CREATE SCHEMA old")
    db.run(f"ALTER TABLE {part(-120)} SET SCHEMA old")
    if taken:
        db.run(f"CREATE TABLE old.{archived_part(-120)} (x int)")
    migration.migrate(db, pol)
    original = contents(db, "calls", "calls")[0]

    job = run(db, pol, settings)

    archived_exactly_the_eligible(db, job, keys, when, original)
    assert moved_how(job) == {part(lo): "attached" for lo in WHOLE}
    names = {(p.schema, p.name) for p in parts(db, "public.calls_backup")}
    assert ("old", part(-120) if taken else archived_part(-120)) in names


def test_an_unlogged_leaf_is_copied_into_the_logged_archive(db, policy, settings):
    """An unlogged table is emptied by crash recovery: archived rows must not live in one."""
    pol, keys, when = calls(db, policy)
    db.run(f"ALTER TABLE {part(-120)} SET UNLOGGED")
    original = contents(db, "calls", "calls")[0]

    job = run(db, pol, settings)

    archived_exactly_the_eligible(db, job, keys, when, original)
    assert moved_how(job) == {part(-120): "copied", **{part(lo): "attached" for lo in WHOLE[1:]}}
    assert db.scalar("SELECT count(*) FROM pg_class WHERE relpersistence <> 'p' AND oid IN"
                     " (SELECT relid FROM pg_partition_tree('calls_backup'))") == 0


def test_an_archive_partition_answers_to_the_archives_rules_not_to_the_live_tables_checks(db, policy, settings):
    """Rows of the archive partition were archived before the live column became NOT NULL and gained a
    check: they join the leaf all the same, which keeps neither (nor would later batches' rows meet them)."""
    pol, keys, when = calls(db, policy, default=True)
    db.run("UPDATE calls SET note = NULL, amount = -1 WHERE created_at < :a", a=ages([-98])[0].isoformat())
    original = contents(db, "calls", "calls")[0]
    first = run(db, pol.model_copy(update={"retention_days": 98}), settings)  # one row of -100 archived
    db.run("UPDATE calls SET note = 'n', amount = 0 WHERE note IS NULL")
    original.update(contents(db, "calls", "calls")[0])
    db.run("ALTER TABLE calls ALTER COLUMN note SET NOT NULL")
    db.run("ALTER TABLE calls ADD CONSTRAINT positive CHECK (amount >= 0)")

    job = run(db, pol, settings)

    assert moved_how(job)[part(-100)] == "attached" and job.state == "succeeded"
    kept = assert_live_xor_archived(db, "calls", "calls_backup", original)
    assert first.records_archived + job.records_archived == len(kept)
    assert db.run("SELECT conname FROM pg_constraint WHERE contype = 'c' AND conrelid IN"
                  " (SELECT relid FROM pg_partition_tree('calls_backup'))") == []
    assert db.run("SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attnum > 0"
                  " AND attnotnull ORDER BY attname", t=archived_part(-100)) == [
        ["archive_reason"], ["archived_at"], ["archived_by"], ["created_at"], ["id"]]
    db.run("ALTER TABLE calls DROP CONSTRAINT positive")  # the live table's rules relax again:
    late = insert(db, "calls", "identity", "timestamptz", ages([-95]))  # a late row of a range now archived
    db.run("UPDATE calls SET amount = -5 WHERE id = CAST(:k AS bigint)", k=late[0].strip("()"))
    original.update(contents(db, "calls", "calls")[0])
    again = run(db, pol, settings)  # by batches, from the live default partition into that archive partition
    assert again.state == "succeeded" and again.records_archived == 1
    assert home(db, "calls_backup")[late[0]] == archived_part(-100)
    assert_live_xor_archived(db, "calls", "calls_backup", original)


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, list[int], bool]:
    """A first run's retention (its cutoff anywhere in the old ranges), the days rows sit on (none on
    either run's cutoff day), and whether the live table has a default partition (then with rows)."""
    first = draw(st.integers(61, 125))
    days = [d for lo, hi in pairwise(EDGES[:-1]) for d in range(lo, hi) if d not in (-first, -RETENTION)]
    offsets = draw(st.lists(st.sampled_from(days), max_size=24))
    return first, offsets, draw(st.booleans())


@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories())
def test_two_runs_archive_each_row_once_attaching_or_copying_each_range_as_its_rows_say(
        db, policy, settings, history):
    """Whatever a first run (an older cutoff) left in the archive partitions, a second run archives
    exactly the rows past its cutoff, each once; a range wholly past it is attached unless its archive
    partition holds more than a quarter of its rows (then copied), or left alone when it holds none."""
    first_retention, offsets, default = history
    db.run("DROP SCHEMA public CASCADE")
    db.run("CREATE SCHEMA public")
    extra = [-400, 45] if default else []
    pol, keys, when = calls(db, policy, offsets=offsets + extra, default=default)
    original = contents(db, "calls", "calls")[0]
    first = run(db, pol.model_copy(update={"retention_days": first_retention}), settings)
    assert first.state == "succeeded"
    assert_live_xor_archived(db, "calls", "calls_backup", original)

    job = run(db, pol, settings)

    assert job.state == "succeeded"
    cutoff = datetime.fromisoformat(job.options["cutoffs"]["default"])
    kept = assert_live_xor_archived(db, "calls", "calls_backup", original)
    assert set(kept) == {k for k, a in zip(keys, when, strict=True) if eligible(a, cutoff, "UTC")}
    assert first.records_archived + job.records_archived == len(kept)
    by_job = dict(db.run("SELECT CAST(archive_job_id AS text), count(*) FROM calls_backup GROUP BY 1"))
    assert by_job == {r.id: r.records_archived for r in (first, job) if r.records_archived}
    expected = {}
    for lo, hi in pairwise(EDGES[:5]):  # the ranges wholly past the second run's cutoff
        if hi <= -first_retention:
            continue  # wholly past the first run's cutoff: gone with it
        twin = sum(lo <= d < -first_retention for d in offsets)
        leaf = sum(max(lo, -first_retention) <= d < hi for d in offsets)
        if leaf:
            expected[part(lo)] = "copied" if twin > 0.25 * leaf else "attached"
    assert moved_how(job) == expected


def test_a_leaf_left_half_detached_by_the_user_is_left_alone(db, policy, settings, connect):
    """A ``DETACH … CONCURRENTLY`` that did not finish leaves the leaf pending: the live table's queries no
    longer see it, and DETACH refuses it. The run moves the others and leaves it to the user's FINALIZE."""
    pol, keys, when = calls(db, policy)
    reader, user = connect(), connect()
    reader.run("START TRANSACTION")
    reader.run("SELECT count(*) FROM calls")  # the detach's second step waits for this snapshot
    user.run("SET lock_timeout = '200ms'")
    with pytest.raises(Exception, match="lock timeout"):
        user.run(f"ALTER TABLE calls DETACH PARTITION {part(-120)} CONCURRENTLY")
    reader.run("ROLLBACK")
    assert db.scalar("SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = CAST(:t AS regclass)", t=part(-120))
    original = contents(db, "calls", "calls")[0]
    pending = dict(db.run(f"SELECT CAST(ROW(id) AS text), 1 FROM {part(-120)}"))

    job = run(db, pol, settings)

    assert job.state == "succeeded" and moved_how(job) == {part(lo): "attached" for lo in WHOLE[1:]}
    assert set(assert_live_xor_archived(db, "calls", "calls_backup", original)).isdisjoint(pending)
    assert db.scalar(f"SELECT count(*) FROM {part(-120)}") == len(pending) == len(DAYS[-120])
