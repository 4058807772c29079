"""The batch as one statement, for tables whose eligibility reads nothing but the live row: it keeps
what the lock-then-move batch guarantees (the lease and cancel gate before any row is locked, the
columns signature, rows the archive holds left live)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from archiver import migration
from archiver.eligibility import pin_cutoffs
from archiver.engine import Archiver
from archiver.exceptions import SchemaError
from tests.helpers import raced_by_ddl
from tests.keyed_tables import assert_live_xor_archived, contents, create, insert, policy_for

NOW = datetime.now(UTC)
PREPARED = "SELECT statement FROM pg_prepared_statements"


@pytest.fixture
def orders(db, policy):
    create(db, "orders", "composite", "timestamptz")
    insert(db, "orders", "composite", "timestamptz", [NOW - timedelta(days=70 + i) for i in range(10)])
    pol = policy_for(policy, "orders", policy.timezone, 60)
    migration.migrate(db, pol)
    return pol


def test_a_batch_is_one_statement_when_eligibility_reads_only_the_live_row(db, orders, settings):
    archiver = Archiver(db, orders, settings)
    job = archiver.run_hop(archiver.start(fixed_batch_size=3).id, owner="w", hop=1).job
    assert job.records_archived == 10 and job.batches == 5
    batch = [s for s in (r[0] for r in db.run(PREPARED)) if "SKIP LOCKED" in s]
    assert len(batch) == 2  # first batch, then after the cursor
    assert all("DELETE FROM" in s and "batches = batches + 1" in s for s in batch)


def test_the_one_statement_batch_moves_nothing_unless_the_lease_is_its_own(db, orders, settings, connect):
    archiver = Archiver(db, orders, settings)
    job = archiver.start(fixed_batch_size=5)
    archiver.run_hop(job.id, owner="w1", hop=1, max_batches=0)
    stmts = archiver.statements(pin_cutoffs(db, orders))
    assert stmts.single
    other = connect()
    params = {"n": 5, "job": job.id, "sig": stmts.signature, "by": "t", "reason": "t", "lease": 30, **stmts.params}
    for owner, cancel, moves in (("intruder", False, 0), ("w1", True, 0), ("w1", False, 5)):
        other.run("UPDATE orders_log SET cancel_requested = :c, lease_owner = 'w1'", c=cancel)
        with db.transaction():
            row = db.row(stmts.single[0], owner=owner, **params)
        assert (row["batch_locked"], row["batch_ours"], row["batch_cancel"]) == (moves, owner == "w1", cancel)
        assert other.scalar("SELECT count(*) FROM orders_backup") == moves
        assert row["batch_moved"] == (moves if owner == "w1" and not cancel else None)


def test_a_column_added_between_two_one_statement_batches_is_archived_with_its_values(db, orders, settings, connect):
    archiver = Archiver(db, orders, settings)
    job = archiver.start(fixed_batch_size=4)
    side = connect()

    def alter_after_first_batch(_job, result):
        if result.locked and not side.scalar("SELECT count(*) FROM information_schema.columns"
                                             " WHERE column_name = 'segment'"):
            side.run("ALTER TABLE orders ADD COLUMN segment text")
            side.run("UPDATE orders SET segment = 'gold'")

    outcome = archiver.run_hop(job.id, owner="w1", hop=1, on_batch=alter_after_first_batch)
    assert outcome.status == "done" and outcome.job.records_archived == 10
    assert db.scalar("SELECT count(*) FROM orders_backup WHERE segment = 'gold'") == 6


def test_columns_changing_under_every_one_statement_batch_stop_the_run_with_nothing_moved(
        db, orders, settings, connect):
    app = connect()

    archiver = raced_by_ddl(app, "orders")(db, orders, settings)
    job = archiver.start(fixed_batch_size=1)
    before, _ = contents(db, "orders", "orders")
    with pytest.raises(SchemaError, match="changed under every batch"):
        archiver.run_hop(job.id, owner="w1", hop=1)
    assert_live_xor_archived(db, "orders", "orders_backup", before)
    assert db.scalar("SELECT count(*) FROM orders_backup") == 0


def test_a_row_whose_key_the_archive_already_holds_stays_live_and_counts_as_failed(db, orders, settings):
    db.run("INSERT INTO orders_backup (region, code, created_at) SELECT region, code, created_at FROM orders"
           " ORDER BY created_at LIMIT 2")
    archiver = Archiver(db, orders, settings)
    job = archiver.run_hop(archiver.start(fixed_batch_size=3).id, owner="w", hop=1).job
    assert job.state == "partial" and (job.records_archived, job.records_failed) == (8, 2)
    assert db.scalar("SELECT count(*) FROM orders") == 2
