"""Restore (the seeds' rollback) and purge, on a real PostgreSQL."""

from __future__ import annotations

from archiver.engine import Archiver
from archiver.restore import Restorer, purge
from tests.helpers import add_customers, count, setup, snapshot


def archive_all(db, policy, settings):
    archiver = Archiver(db, policy, settings)
    job = archiver.start()
    return archiver.run_hop(job.id, owner="w", hop=1).job


def test_restore_round_trip_gives_back_exactly_the_original_rows(db, policy, settings):
    setup(db, policy, customers=1500)
    before = snapshot(db)
    live_before = count(db, "nic_cc_customer")
    job = archive_all(db, policy, settings)
    assert job.records_archived > 0
    run, result = Restorer(db, policy, batch_size=100).restore(job_id=job.id)
    assert result.restored == job.records_archived and result.conflict_count == 0
    assert count(db, "nic_cc_customer") == live_before and count(db, "nic_cc_customer_backup") == 0
    assert snapshot(db) == before
    assert run.kind == "restore" and run.state == "succeeded"


def test_restore_plans_its_batches_on_fresh_statistics_of_the_archive(db, policy, settings):
    setup(db, policy, customers=1500)
    db.run("ALTER TABLE nic_cc_customer_backup SET (autovacuum_enabled = false)")
    job = archive_all(db, policy, settings)
    reltuples = "SELECT reltuples FROM pg_class WHERE oid = CAST('nic_cc_customer_backup' AS regclass)"
    assert db.scalar(reltuples) < job.records_archived  # as the nightly run leaves it: not analyzed
    Restorer(db, policy, batch_size=100).restore(job_id=job.id)
    assert db.scalar(reltuples) == job.records_archived  # analyzed before the first batch


def test_restore_dry_run_changes_nothing(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70, 80])
    job = archive_all(db, policy, settings)
    before = snapshot(db)
    _, result = Restorer(db, policy).restore(job_id=job.id, dry_run=True)
    assert result.restored == 2 and snapshot(db) == before and count(db, "nic_cc_customer_backup") == 2


def test_restore_reports_ids_already_live_and_does_not_overwrite_them(db, policy, settings):
    setup(db, policy)
    a, b = add_customers(db, policy, [70, 80])
    job = archive_all(db, policy, settings)
    db.run("INSERT INTO nic_cc_customer (id, name, created_at) VALUES (:a, 'Customer New', now())", a=a)
    _, result = Restorer(db, policy).restore(job_id=job.id)
    assert result.restored == 1 and result.conflict_count == 1 and result.conflicts == [a]
    assert db.scalar("SELECT name FROM nic_cc_customer WHERE id = :a", a=a) == "Customer New"
    assert count(db, "nic_cc_customer_backup", "id = :a", a=a) == 1  # still safe in the archive


def test_restore_since_a_timestamp(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70])
    first = archive_all(db, policy, settings)
    add_customers(db, policy, [75])
    second = archive_all(db, policy, settings)
    since = db.scalar("SELECT min(archived_at) FROM nic_cc_customer_backup WHERE archive_job_id = CAST(:j AS uuid)",
                      j=second.id)
    _, result = Restorer(db, policy).restore(since=since)
    assert result.restored == 1 and result.rolled_back_jobs == [second.id]
    assert count(db, "nic_cc_customer_backup", "archive_job_id = CAST(:j AS uuid)", j=first.id) == 1


def test_purge_deletes_only_archive_rows_past_long_term_retention(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70, 80, 90])
    archive_all(db, policy, settings)
    db.run("UPDATE nic_cc_customer_backup SET archived_at = archived_at - interval '800 days'"
           " WHERE id = (SELECT min(id) FROM nic_cc_customer_backup)")
    dry = purge(db, policy, 730, dry_run=True, without_export=True)
    assert dry.as_dict()["purged"] == 1 and count(db, "nic_cc_customer_backup") == 3
    job = purge(db, policy, 730, without_export=True)
    assert job.as_dict()["purged"] == 1 and count(db, "nic_cc_customer_backup") == 2
    assert job.kind == "purge" and job.state == "succeeded"
