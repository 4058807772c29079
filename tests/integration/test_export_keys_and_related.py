"""Export on every key the engine takes (single column of any type, composite, a unique index in
place of a primary key), and, in move mode, of the related archive rows: archive -> export ->
verify -> purge -> restore from the export gives every row back, parents and children identical."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from archiver import migration
from archiver.alerts import RecordingSink
from archiver.cold_restore import restore_from
from archiver.cold_storage import LocalStorage
from archiver.exceptions import ConfigError
from archiver.export import export, verify_export
from archiver.restore import purge
from tests.helpers import count
from tests.keyed_tables import (
    archive,
    assert_live_xor_archived,
    contents,
    create,
    insert,
    order_lines_and_parts,
    policy_for,
)

pytest.importorskip("pyarrow")

NOW = datetime.now(UTC)
AGES = [NOW - timedelta(days=d, minutes=i) for i, d in enumerate([90, 5, 120, 70, 1, 200, 64, 30, 61, 150])]
AGED = "archived_at = archived_at - interval '800 days'"


@pytest.mark.parametrize(("key", "unique_instead"), [("identity", False), ("uuid", False), ("text", False),
                                                     ("composite", False), ("composite", True)])
def test_round_trip_on_every_key_kind(db, policy, settings, tmp_path, key, unique_instead):
    create(db, "orders", key, "timestamptz", unique_instead=unique_instead)
    insert(db, "orders", key, "timestamptz", AGES)
    pol = policy_for(policy, "orders", policy.timezone, 60)
    migration.migrate(db, pol)
    original, _ = contents(db, "orders", "orders_backup")
    job = archive(db, pol, settings, batch_size=2)[1]
    assert job.records_archived == 7
    db.run(f"UPDATE orders_backup SET {AGED}")
    archived = contents(db, "orders", "orders_backup")[1]
    storage = LocalStorage(tmp_path)
    result = export(db, pol, storage, 730, rows_per_file=4)
    assert result.verified and result.exported == 7 and result.files == 2
    assert not verify_export(db, pol, storage, result.export_id)
    assert export(db, pol, storage, 730).exported == 0  # each row exported once, whatever its key
    assert purge(db, pol, 730).as_dict()["purged"] == 7 and count(db, "orders_backup") == 0
    _, restored = restore_from(db, pol, storage)
    assert restored.restored == 7 and restored.conflict_count == 0
    assert contents(db, "orders", "orders_backup")[1] == archived
    assert_live_xor_archived(db, "orders", "orders_backup", original)
    # A second restore meets every key in the archive: conflicts, reported by key, nothing overwritten.
    _, again = restore_from(db, pol, storage, to="live")
    assert again.restored == 0 and again.conflict_count == 7 and len(set(again.conflicts)) == 7


def test_a_composite_key_row_changed_in_the_archive_fails_verification(db, policy, settings, tmp_path):
    create(db, "orders", "composite", "timestamptz")
    insert(db, "orders", "composite", "timestamptz", AGES)
    pol = policy_for(policy, "orders", policy.timezone, 60)
    migration.migrate(db, pol)
    archive(db, pol, settings, batch_size=5)
    db.run(f"UPDATE orders_backup SET {AGED}")
    storage = LocalStorage(tmp_path)
    result = export(db, pol, storage, 730)
    db.run("UPDATE orders_backup SET note = 'changed' WHERE (region, code) IN"
           " (SELECT region, code FROM orders_backup ORDER BY region, code LIMIT 1)")
    sink = RecordingSink()
    assert verify_export(db, pol, storage, result.export_id, sink=sink) and sink.alerts
    assert purge(db, pol, 730).as_dict()["purged"] == 0


# -- move mode: related archive rows ----------------------------------------------------------------
RELATED = ("order_lines_backup", "line_parts_backup")


def family(db, policy):
    """``orders (region, code)``, its lines and their parts (``line_parts`` has no key), two of each
    a row; move mode. Returns the policy."""
    create(db, "orders", "composite", "timestamptz")
    insert(db, "orders", "composite", "timestamptz", AGES)
    order_lines_and_parts(db)
    db.run("INSERT INTO order_lines SELECT region, code, g, 'p' || g FROM orders, generate_series(1, 2) g")
    db.run("INSERT INTO line_parts SELECT region, code, line, q FROM order_lines, generate_series(1, 2) q")
    pol = policy_for(policy, "orders", policy.timezone, 60).model_copy(update={"related_mode": "move"})
    migration.migrate(db, pol)
    return pol


def rows_of(db, table: str) -> Counter:
    """Every row with every column (archive columns included), as a multiset: line_parts has no key."""
    return Counter(r[0] for r in db.run(f"SELECT CAST(ROW(t.*) AS text) FROM {table} t"))


def archived_family(db, policy, settings):
    pol = family(db, policy)
    job = archive(db, pol, settings, batch_size=2)[1]
    assert job.records_archived == 7
    for table in ("orders_backup", *RELATED):  # the whole batch ages together: groups stay whole
        db.run(f"UPDATE {table} SET {AGED}")
    return pol, {t: rows_of(db, t) for t in ("orders_backup", *RELATED)}


def test_migrate_creates_both_ledgers_in_move_mode(db, policy):
    family(db, policy)
    tables = {r[0] for r in db.run("SELECT tablename FROM pg_tables WHERE tablename LIKE 'orders_backup_exported%'")}
    assert tables == {"orders_backup_exported", "orders_backup_exported_related"}


def test_move_mode_round_trip_brings_parents_and_children_back_identical(db, policy, settings, tmp_path):
    pol, before = archived_family(db, policy, settings)
    assert sum(before["line_parts_backup"].values()) == 28
    assert purge(db, pol, 730).as_dict()["purged"] == 0  # nothing exported yet: nothing purged, related rows too
    storage = LocalStorage(tmp_path)
    result = export(db, pol, storage, 730, rows_per_file=5)
    assert result.verified and result.exported == 7
    assert result.related == {"order_lines_backup": 14, "line_parts_backup": 28}
    assert {p.parent.parent.parent.name for p in tmp_path.rglob("*.parquet")} == {"orders_backup", *RELATED}
    assert not verify_export(db, pol, storage, result.export_id)
    assert export(db, pol, storage, 730).files == 0  # exporting twice writes nothing new
    assert purge(db, pol, 730).as_dict()["purged"] == 7 + 14 + 28
    assert all(count(db, t) == 0 for t in ("orders_backup", *RELATED))
    _, restored = restore_from(db, pol, storage)
    assert restored.restored == 7 and restored.related_restored == 42 and restored.conflict_count == 0
    assert {t: rows_of(db, t) for t in before} == before
    # Back in the archive, the rows are held by their verified export again: a restore to the live
    # tables goes through the archive's own restore, rows and related rows together.
    with pytest.raises(ConfigError, match="related rows"):
        restore_from(db, pol, storage, to="live")


def test_purge_leaves_related_rows_no_verified_export_holds(db, policy, settings, tmp_path):
    pol, before = archived_family(db, policy, settings)
    storage = LocalStorage(tmp_path)
    result = export(db, pol, storage, 730, rows_per_file=5)
    # One related file damaged afterwards: verification is revoked, nothing at all is purged.
    victim = next((tmp_path / "line_parts_backup").rglob("*.parquet"))
    victim.write_bytes(victim.read_bytes()[:-40])
    sink = RecordingSink()
    assert verify_export(db, pol, storage, result.export_id, sink=sink) and sink.alerts
    assert purge(db, pol, 730).as_dict()["purged"] == 0
    assert {t: rows_of(db, t) for t in before} == before
    # The next export repairs the file from the archive, verifies, and the purge takes everything.
    again = export(db, pol, storage, 730, rows_per_file=5)
    assert again.export_id == result.export_id and again.verified
    assert purge(db, pol, 730).as_dict()["purged"] == 49


def test_related_rows_archived_after_the_export_stay_until_exported(db, policy, settings, tmp_path):
    pol, _ = archived_family(db, policy, settings)
    storage = LocalStorage(tmp_path)
    assert export(db, pol, storage, 730).verified
    # A related row added to the archive afterwards, in a group no export holds.
    db.run("INSERT INTO line_parts_backup (region, code, line, qty, archived_at, archive_job_id)"
           " SELECT region, code, line, 99, archived_at - interval '1 second', archive_job_id"
           " FROM line_parts_backup LIMIT 1")
    assert purge(db, pol, 730).as_dict()["purged"] == 49
    assert count(db, "line_parts_backup") == 1


def test_a_row_already_archived_conflicts_and_its_missing_children_come_back(db, policy, settings, tmp_path):
    pol, before = archived_family(db, policy, settings)
    storage = LocalStorage(tmp_path)
    export(db, pol, storage, 730)
    purge(db, pol, 730)
    # One order is in the archive already: it conflicts, and its lines and parts (their group is not
    # in the archive) still come back, their parent archived in the same batch.
    first = sorted(before["orders_backup"])[0]
    db.run("INSERT INTO orders_backup SELECT (CAST(:r AS orders_backup)).*", r=first)
    _, restored = restore_from(db, pol, storage)
    assert restored.restored == 6 and restored.conflict_count == 1 and restored.related_restored == 42
    assert {t: rows_of(db, t) for t in before} == before
