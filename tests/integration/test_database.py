"""The connection wrapper on a real PostgreSQL: statements a batch repeats run prepared, once per session."""

from __future__ import annotations

from dataclasses import replace

import pytest

from archiver.db import Database
from archiver.engine import Archiver
from tests.helpers import add_customers, setup

PREPARED = "SELECT statement FROM pg_prepared_statements"


def test_a_marked_statement_is_prepared_once_per_session_and_again_after_a_reconnect(db):
    sql = "SELECT CAST(:n AS int) + 1 AS next"
    db.prepare(sql)
    assert [db.row(sql, n=n) for n in (1, 2)] == [{"next": 2}, {"next": 3}]
    assert len(db.run(PREPARED)) == 1
    db.close()
    assert db.scalar(sql, n=41) == 42 and len(db.run(PREPARED)) == 1


def test_preparing_leaves_the_plan_cache_of_foreign_key_triggers_alone(db):
    db.prepare("SELECT CAST(:n AS int)")
    assert db.scalar("SELECT CAST(:n AS int)", n=1) == 1
    assert db.scalar("SHOW plan_cache_mode") == "auto"  # forced custom plans re-plan every trigger query


def test_prepared_statements_can_be_switched_off_for_a_pooler(db):
    plain = Database(replace(db.params), prepared_statements=False)
    try:
        sql = "SELECT CAST(:n AS int)"
        plain.prepare(sql)
        assert plain.scalar(sql, n=7) == 7 and plain.run(PREPARED) == []
    finally:
        plain.close()


def test_row_count_after_a_prepared_statement_is_refused_not_wrong(db):
    db.run("CREATE TABLE t (n int)")
    sql = "INSERT INTO t SELECT generate_series(1, :n)"
    db.prepare(sql)
    db.run(sql, n=3)
    with pytest.raises(RuntimeError, match="RETURNING"):
        db.row_count  # noqa: B018 - the property is the behaviour under test


def test_a_run_prepares_the_statements_of_its_batches(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70 + i for i in range(6)])
    archiver = Archiver(db, policy, settings)
    job = archiver.start(batch_size=2)
    outcome = archiver.run_hop(job.id, owner="w1", hop=1)
    assert outcome.job.records_archived == 6
    prepared = [r[0] for r in db.run(PREPARED)]
    for what, found, times in (
            ("lock the job row, then the rows: first batch, then after the cursor",
             lambda s: "SKIP LOCKED" in s and "archive_log" in s and "FOR UPDATE)" in s, 2),
            ("move and count the batch: first batch, then after the cursor",
             lambda s: "DELETE FROM" in s and "batches = batches + 1" in s, 2),
            ("count a batch that moved nothing", lambda s: s.startswith("UPDATE") and "batches = batches + 1" in s, 1)):
        assert sum(map(found, prepared)) == times, what
