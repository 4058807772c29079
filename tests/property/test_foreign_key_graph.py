"""Properties of the foreign-key graph on a real PostgreSQL (Hypothesis): for generated schemas
(0-3 related tables in chains and fans, self-references, keys on the primary key, a unique column
or two columns, every ON DELETE action, deferrable or not) and data, in every related mode, a dry
run, a run interrupted at a random point and resumed, then a restore:

* every original row, of the live table and of every related table, is live xor archived, with
  identical content;
* what is archived is exactly the eligible set the rules give (``strategies.expected``): no other
  row changed, child rows and young live rows included;
* the dry-run count equals what the run archived;
* a refused run moved nothing;
* the restore gives back the original tables.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from archiver import catalogue, migration
from archiver.config import Policy, Settings, load_policy
from archiver.db import Database, DatabaseUnavailableError
from archiver.engine import Archiver
from archiver.exceptions import SchemaError
from archiver.restore import Restorer

from .strategies import RETENTION_DAYS, Data, Schema, datasets, ddl, expected, inserts, live_key, schemas

QUICK = hypothesis_settings(max_examples=35, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CAMPAIGN = hypothesis_settings(QUICK, max_examples=400)
INTERRUPTIONS = st.sampled_from(["none", "pause", "crash", "connection"])


class Crash(Exception):
    """The worker dies after a committed batch."""


def contents(db: Database, table: str, cols: list[str]) -> dict[Any, str]:
    """Rows of ``table`` by their key (the first column) as text, each as the text of ``cols``."""
    names = ", ".join(cols)
    return {r[0]: r[1] for r in db.run(f"SELECT CAST({cols[0]} AS text), CAST(ROW({names}) AS text) FROM {table}")}


def tables_state(db: Database, schema: Schema) -> dict[str, tuple[dict[Any, str], dict[Any, str]]]:
    """Each table's live rows and archived rows (its archive, if any), by key, as text."""
    out = {}
    for table, archive in [("nic_cc_customer", "nic_cc_customer_backup"),
                           *((f"r{i}", f"r{i}_backup") for i in range(len(schema.related)))]:
        cols = [c.name for c in catalogue.columns(db, "public", table)]
        live = contents(db, table, cols)
        gone = contents(db, archive, cols) if catalogue.table_exists(db, "public", archive) else {}
        out[table] = (live, gone)
    return out


def build(db: Database, policy: Policy, schema: Schema, data: Data) -> None:
    db.close()  # a fresh session: no statement prepared against the previous example's tables
    db.run("DROP SCHEMA public CASCADE")
    db.run("CREATE SCHEMA public")
    for sql in ddl(schema):
        db.run(sql)
    with db.transaction():
        for sql, params in inserts(schema, data):
            db.run(sql, **params)
    migration.migrate(db, policy)


def run_interrupted(db: Database, policy: Policy, run_settings: Settings, connect: Any, how: str, after: int,
                    batch_size: int) -> Any:
    """A run stopped after ``after`` batches (paused, its worker crashed, or its connection cut),
    then finished by another worker."""
    archiver = Archiver(db, policy, run_settings)
    job = archiver.start(fixed_batch_size=batch_size)
    pid = db.scalar("SELECT pg_backend_pid()")

    def stop(_job: Any, _result: Any) -> None:
        nonlocal after
        after -= 1
        if after == 0 and how == "crash":
            raise Crash()
        if after == 0 and how == "connection":
            connect().run("SELECT pg_terminate_backend(:p)", p=pid)

    try:
        outcome = archiver.run_hop(job.id, owner="w1", hop=1, on_batch=stop,
                                   max_batches=after if how == "pause" else None)
    except (Crash, DatabaseUnavailableError):
        outcome = None
    if outcome is None or outcome.status != "done":
        db.run(f"UPDATE {policy.log_table} SET lease_expires_at = now() - interval '1 second'")
        outcome = Archiver(db, policy, run_settings).run_hop(job.id, owner="w2", hop=None)
    assert outcome.status == "done", outcome
    return outcome.job


def check_graph(db: Database, env: dict[str, str], run_settings: Settings, connect: Any, schema: Schema,
                data: Data, how: str, after: int, batch_size: int, restore_batch: int) -> None:
    policy = load_policy({**env, "ARCHIVER_RELATED_MODE": schema.mode,
                          "ARCHIVER_RETENTION_DAYS": str(RETENTION_DAYS)})
    build(db, policy, schema, data)
    want = expected(schema, data)
    before = tables_state(db, schema)
    if want.refused:
        with pytest.raises(SchemaError, match="constraint"):
            Archiver(db, policy, run_settings).start()
        assert tables_state(db, schema) == before
        return
    dry_archiver = Archiver(db, policy, run_settings)
    dry = dry_archiver.run_hop(dry_archiver.start(dry_run=True).id, owner="d", hop=1).job
    job = run_interrupted(db, policy, run_settings, connect, how, after, batch_size)
    assert dry.eligible == job.records_archived == len(want.live), (dry.eligible, job.records_archived)
    after_run = tables_state(db, schema)
    # live xor archived, identical content, and archived exactly the eligible set
    moving = [{str(live_key(schema, data, i)) for i in want.live},
              *({str(j) for j in rows} for rows in want.related)]
    for (table, (live0, _)), moved in zip(before.items(), moving, strict=True):
        live, gone = after_run[table]
        assert not set(live) & set(gone), f"{table}: rows both live and archived"
        assert {**live, **gone} == live0, f"{table}: a row was lost or changed"
        assert set(gone) == moved, f"{table}: archived {sorted(gone)}, eligible {sorted(moved)}"
    if job.records_archived:
        Restorer(db, policy, batch_size=restore_batch).restore(job_id=job.id)
    assert {t: live for t, (live, _) in tables_state(db, schema).items()} == {
        t: live for t, (live, _) in before.items()}


def examples() -> st.SearchStrategy[tuple[Schema, Data]]:
    return schemas().flatmap(lambda s: st.tuples(st.just(s), datasets(s)))


@QUICK
@given(case=examples(), how=INTERRUPTIONS, after=st.integers(1, 3), batch_size=st.integers(1, 3),
       restore_batch=st.integers(1, 4))
def test_the_graph_loses_no_row_changes_no_other_and_counts_what_it_archives(
        db, env, settings, connect, case, how, after, batch_size, restore_batch):
    check_graph(db, env, settings, connect, *case, how, after, batch_size, restore_batch)


@pytest.mark.slow
@pytest.mark.chaos
@CAMPAIGN
@given(case=examples(), how=INTERRUPTIONS, after=st.integers(1, 4), batch_size=st.integers(1, 5),
       restore_batch=st.integers(1, 5))
def test_campaign_the_graph_loses_no_row_changes_no_other_and_counts_what_it_archives(
        db, env, settings, connect, case, how, after, batch_size, restore_batch):
    check_graph(db, env, settings, connect, *case, how, after, batch_size, restore_batch)
