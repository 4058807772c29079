"""The batch statements' builders and the rows the engine reads back by name (no database: what
the statements do on PostgreSQL, tests/integration/test_engine.py and test_one_statement_batch.py
prove; here, that builders and rows agree on their names)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from archiver.catalogue import Column, TableShape
from archiver.config import Policy
from archiver.eligibility import Cutoffs
from archiver.related import Related, RelatedGraph
from archiver.statements import BatchSql, Columns, Locked, OneStatementBatch, Rechecked, Statements

LIVE = ("public", "nic_cc_customer")
NOW = datetime(2026, 12, 4, tzinfo=UTC)


class RunLogSql:
    """The two pieces of the run log's SQL the batch statements embed (``JobStore``'s), as markers."""

    lease_gate = "j AS (SELECT true AS ours, false AS cancel)"

    def record_from(self, moved: str | None, failed: str | None = None, *, cursor: str = "", guard: str = "") -> str:
        return f"SELECT 'recorded {moved} {failed}'"


def column(name: str, type_: str = "bigint") -> Column:
    return Column(name, type_, True, False)


def shape(*key: str, partitioned: bool = False) -> TableShape:
    age = column("created_at", "timestamp")
    return TableShape((*(column(k) for k in key), column("name", "text"), age), tuple(column(k) for k in key), age,
                      partitioned)


def statements(policy: Policy, table: TableShape, graph: RelatedGraph | None = None) -> Statements:
    graph = graph or RelatedGraph(LIVE, (), ())
    related_columns = {t: ("id", "customer_id") for t in graph.tables}
    return Statements(policy, table, graph, Cutoffs(NOW, NOW), related_columns, Columns([1], "sig"),
                      RunLogSql(), "job")  # type: ignore[arg-type]


def selected(sql: str) -> list[str]:
    """The names of the columns a statement's outer SELECT returns."""
    return re.findall(r" AS (\w+)(?=,| FROM \w+$)", sql[sql.rindex(" SELECT "):])


def test_the_lock_statement_returns_every_column_of_its_named_row_by_name():
    stmts = statements(Policy(), shape("id"))

    for sql in (stmts.lock_first, stmts.lock_next):
        assert selected(sql) == list(Locked._fields)


def test_a_locked_row_is_read_by_its_columns_names_not_their_order():
    row = {"cancel": False, "ours": True, "signature": "sig", "last": ["2026-01-01 00:00:00", "7"], "locked": 5}

    found = Locked.from_row(row)

    assert found == Locked(locked=5, last=["2026-01-01 00:00:00", "7"], signature="sig", ours=True, cancel=False)


def test_only_the_batches_after_the_first_compare_with_the_cursor():
    stmts = statements(Policy(related_mode="keep"), shape("id"))

    assert ":cur" not in stmts.lock_first and ":cur" in stmts.lock_next
    assert ":cur" not in stmts.single[0] and ":cur" in stmts.single[1]
    assert ":cur" not in stmts.move_first and ":cur" in stmts.move_next


def test_the_cursor_is_compared_as_a_row_of_the_walks_columns_each_cast_to_its_type():
    sql = BatchSql(Policy(), shape("a", "b"), "true", RunLogSql())  # type: ignore[arg-type]

    assert sql.after_cursor() == (
        '(l."created_at", l."a", l."b") > (CAST((CAST(:cur AS text[]))[1] AS timestamp),'
        " CAST((CAST(:cur AS text[]))[2] AS bigint), CAST((CAST(:cur AS text[]))[3] AS bigint))")


def test_the_recheck_returns_its_keys_under_the_names_the_move_statements_take_them_by():
    graph = RelatedGraph(LIVE, (Related("public", "claim", ("customer_id",), LIVE, ("id",), "claim_fk", "a"),),
                         (("public", "claim"),))
    stmts = statements(Policy(related_mode="move"), shape("a", "b"), graph)

    for sql in stmts.recheck:
        assert selected(sql) == ["k0", "k1", "held"]
    for sql in (stmts.move_first, *stmts.move_related):
        assert ":k0" in sql and ":k1" in sql and ":k2" not in sql


def test_a_rechecked_row_names_its_keys_as_the_move_statements_parameters():
    checked = Rechecked.from_row({"k0": ["1", "2"], "k1": ["x", "y"], "held": 3})

    assert checked.keys == {"k0": ["1", "2"], "k1": ["x", "y"]} and checked.held == 3 and checked.moving
    assert not Rechecked.from_row({"k0": None, "held": 2}).moving  # every row held: nothing to move


def test_the_one_statement_batch_returns_its_findings_beside_the_job_row():
    stmts = statements(Policy(related_mode="keep"), shape("id"))

    for sql in stmts.single:
        assert [f"batch_{name}" for name in OneStatementBatch._fields] == re.findall(r" AS (batch_\w+)", sql)


def test_taking_the_one_statement_batchs_findings_leaves_the_job_row():
    row = {"batch_locked": 4, "batch_same": True, "batch_ours": True, "batch_cancel": False,
           "job_id": "j", "batch_moved": 4, "batch_failed": 0}

    found = OneStatementBatch.take(row)

    assert found == OneStatementBatch(locked=4, same=True, ours=True, cancel=False)
    assert row == {"job_id": "j", "batch_moved": 4, "batch_failed": 0}


def test_a_partitioned_table_s_rows_are_picked_by_partition_and_ctid():
    plain = BatchSql(Policy(), shape("id"), "true", RunLogSql())  # type: ignore[arg-type]
    partitioned = BatchSql(Policy(), shape("id", partitioned=True), "true", RunLogSql())  # type: ignore[arg-type]

    assert "tableoid" not in plain.pick("r")
    assert "(x.tableoid, x.ctid) IN" in partitioned.pick("r")
