"""The foreign-key graph on a real PostgreSQL: no archive step cascades to, nulls, defaults or fails
on a row outside the batch, whatever references the live table and however (issue 19, point 1)."""

from __future__ import annotations

import pytest

from archiver import catalogue, migration
from archiver.config import load_policy
from archiver.engine import Archiver
from archiver.exceptions import SchemaError
from archiver.restore import Restorer
from tests.helpers import add_customers, count, setup

ACTIONS = ["CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT", "NO ACTION"]


def run(db, policy, settings, **start):
    archiver = Archiver(db, policy, settings)
    job = archiver.start(**start)
    outcome = archiver.run_hop(job.id, owner="w", hop=1)
    assert outcome.status == "done", outcome
    return outcome.job


def rows(db, table, where="true"):
    """Every row of ``table`` by its first column, all columns but the archive's own."""
    meta = set(migration.ARCHIVE_META)
    cols = [c.name for c in catalogue.columns(db, "public", table) if c.name not in meta]
    return {r[0]: tuple(r) for r in db.run(f"SELECT {', '.join(cols)} FROM {table} WHERE {where}")}


def live_and_archived(db, table, archive):
    """``table``'s rows wherever they are (live or archive, never both), and the archived keys."""
    live, gone = rows(db, table), rows(db, archive)
    archive_cols = {c.name for c in catalogue.columns(db, "public", archive)}
    live_cols = [c.name for c in catalogue.columns(db, "public", table)]
    assert not set(live) & set(gone), "rows both live and archived"
    if set(live_cols) <= archive_cols:
        gone = {k: tuple(v[: len(live_cols)]) for k, v in gone.items()}
    return {**live, **gone}, set(gone)


def customers_referring(db, policy, action, deferrable=""):
    """The seed's customer table with a reference to itself (``referred_by``)."""
    setup(db, policy)
    db.run("ALTER TABLE nic_cc_customer ADD COLUMN referred_by bigint DEFAULT NULL"
           f" REFERENCES nic_cc_customer (id) ON DELETE {action} {deferrable}")
    migration.migrate(db, policy)


@pytest.mark.parametrize("action", ACTIONS)
def test_self_reference_never_touches_the_young_live_row_that_references_an_old_one(db, policy, settings, action):
    customers_referring(db, policy, action)
    old_referred, old_plain = add_customers(db, policy, [90, 90])
    (young,) = add_customers(db, policy, [5])
    db.run("UPDATE nic_cc_customer SET referred_by = :a WHERE id = :y", a=old_referred, y=young)
    before = rows(db, "nic_cc_customer")
    dry = run(db, policy, settings, dry_run=True)
    job = run(db, policy, settings)
    assert job.state == "succeeded" and dry.eligible == job.records_archived == 1
    assert set(rows(db, "nic_cc_customer_backup")) == {old_plain}
    # the old row the young one references stays, and the young row keeps its reference
    assert rows(db, "nic_cc_customer") == {k: v for k, v in before.items() if k != old_plain}


@pytest.mark.parametrize("referrer_older", [True, False])
def test_old_rows_referencing_old_rows_leave_one_level_per_run_and_the_dry_run_counts_each(
        db, policy, settings, referrer_older):
    """B (old) references A (old): B goes first; A, referenced by a row this run archived, waits
    for the next run, whichever of the two the keyset walk meets first."""
    customers_referring(db, policy, "NO ACTION")
    a, b = add_customers(db, policy, [90, 100] if referrer_older else [100, 90])
    db.run("UPDATE nic_cc_customer SET referred_by = :a WHERE id = :b", a=a, b=b)
    before, _ = live_and_archived(db, "nic_cc_customer", "nic_cc_customer_backup")
    for expected in ({b}, {a}):
        dry = run(db, policy, settings, dry_run=True)
        job = run(db, policy, settings, fixed_batch_size=1)
        assert dry.eligible == job.records_archived == 1
        assert set(rows(db, "nic_cc_customer_backup", f"archive_job_id = '{job.id}'")) == expected
    after, archived = live_and_archived(db, "nic_cc_customer", "nic_cc_customer_backup")
    assert after == before and archived == {a, b}


def test_restore_brings_back_rows_referencing_each_other_whatever_their_key_order(db, policy, settings):
    customers_referring(db, policy, "NO ACTION")
    db.run("INSERT INTO nic_cc_customer (id, name, created_at) VALUES (100, 'A', now() - interval '90 days')")
    db.run("INSERT INTO nic_cc_customer (id, name, created_at, referred_by) VALUES"
           " (5, 'B', now() - interval '90 days', 100), (7, 'C', now() - interval '90 days', 5)")
    before = rows(db, "nic_cc_customer")
    started = db.scalar("SELECT now()")
    jobs = [run(db, policy, settings) for _ in range(3)]
    assert [j.records_archived for j in jobs] == [1, 1, 1] and count(db, "nic_cc_customer") == 0
    _, result = Restorer(db, policy, batch_size=1).restore(since=started)
    assert result.restored == 3 and result.conflict_count == 0
    assert rows(db, "nic_cc_customer") == before


def test_restore_leaves_archived_a_row_whose_referenced_row_stays_archived(db, policy, settings):
    customers_referring(db, policy, "NO ACTION")
    a, b = add_customers(db, policy, [90, 100])
    db.run("UPDATE nic_cc_customer SET referred_by = :a WHERE id = :b", a=a, b=b)
    first, second = run(db, policy, settings), run(db, policy, settings)
    assert rows(db, "nic_cc_customer_backup", f"archive_job_id = '{first.id}'").keys() == {b}
    assert second.records_archived == 1
    done, result = Restorer(db, policy).restore(job_id=first.id)
    assert done.state == "partial" and result.conflict_count == 1 and result.restored == 0
    assert count(db, "nic_cc_customer_backup") == 2


def customers_with_codes(db, policy, child_ddl):
    """Customers with a unique text code, and a child table keyed on it."""
    setup(db, policy)
    db.run("ALTER TABLE nic_cc_customer ADD COLUMN code text UNIQUE")
    db.run(f"CREATE TABLE nic_cc_contract (id serial PRIMARY KEY, {child_ddl})")
    migration.migrate(db, policy)


def test_child_keyed_on_a_unique_text_column_keeps_its_customer_in_skip_mode(db, policy, settings):
    customers_with_codes(db, policy, "customer_code text REFERENCES nic_cc_customer (code) ON DELETE CASCADE")
    held, free = add_customers(db, policy, [90, 90])
    db.run("UPDATE nic_cc_customer SET code = 'C-' || id")
    db.run("INSERT INTO nic_cc_contract (customer_code) VALUES (:c)", c=f"C-{held}")
    contracts = rows(db, "nic_cc_contract")
    dry = run(db, policy, settings, dry_run=True)
    job = run(db, policy, settings)
    assert job.state == "succeeded" and dry.eligible == job.records_archived == 1
    assert set(rows(db, "nic_cc_customer")) == {held} and rows(db, "nic_cc_contract") == contracts
    assert set(rows(db, "nic_cc_customer_backup")) == {free}


def test_multi_column_foreign_key_holds_its_customer_in_skip_mode_and_moves_with_it_in_move_mode(
        db, env, settings):
    ddl = ("lob text, policy_number text, FOREIGN KEY (lob, policy_number)"
           " REFERENCES nic_cc_customer (line_of_business, policy_number) ON DELETE SET NULL")
    policy = load_policy(env)
    setup(db, policy)
    held, free = add_customers(db, policy, [90, 90])
    db.run("UPDATE nic_cc_customer SET policy_number = 'POL-' || id")
    db.run("ALTER TABLE nic_cc_customer ADD UNIQUE (line_of_business, policy_number)")
    db.run(f"CREATE TABLE nic_cc_contract (id serial PRIMARY KEY, {ddl})")
    db.run("INSERT INTO nic_cc_contract (lob, policy_number) VALUES ('Motor', :p), (NULL, :p)", p=f"POL-{held}")
    contracts = rows(db, "nic_cc_contract")
    job = run(db, policy, settings)
    assert job.records_archived == 1 and set(rows(db, "nic_cc_customer")) == {held}
    assert rows(db, "nic_cc_contract") == contracts

    moving = load_policy({**env, "ARCHIVER_RELATED_MODE": "move"})
    migration.migrate(db, moving)
    job = run(db, moving, settings)
    assert job.records_archived == 1 and count(db, "nic_cc_customer") == 0
    assert set(rows(db, "nic_cc_contract")) == {2}  # its NULL column references nothing: it stays
    assert set(rows(db, "nic_cc_contract_backup")) == {1}
    Restorer(db, moving).restore(job_id=job.id)
    assert rows(db, "nic_cc_contract") == contracts


def policies_and_claims(db, env, claim_action="RESTRICT", deferrable=""):
    """Customer <- policy (CASCADE) <- claim (``claim_action``), claims answering claims: per
    customer, a claim on the policy, two answers in a chain, and a claim on the policy answering
    the last answer (it references a row that moved only through the chain)."""
    policy = load_policy({**env, "ARCHIVER_RELATED_MODE": "move"})
    setup(db, policy)
    db.run("CREATE TABLE nic_cc_policy (id serial PRIMARY KEY, number text UNIQUE,"
           " customer_id bigint REFERENCES nic_cc_customer (id) ON DELETE CASCADE)")
    db.run("CREATE TABLE nic_cc_claim (id serial PRIMARY KEY,"
           f" policy_number text REFERENCES nic_cc_policy (number) ON DELETE {claim_action} {deferrable},"
           " answers integer REFERENCES nic_cc_claim (id) ON DELETE CASCADE)")
    migration.migrate(db, policy)
    old, young = add_customers(db, policy, [90, 5])
    for c in (old, young):
        db.run("INSERT INTO nic_cc_policy (number, customer_id) VALUES (:n, :c)", n=f"P-{c}", c=c)
        first = db.scalar("INSERT INTO nic_cc_claim (policy_number) VALUES (:n) RETURNING id", n=f"P-{c}")
        second = db.scalar("INSERT INTO nic_cc_claim (answers) VALUES (:f) RETURNING id", f=first)
        third = db.scalar("INSERT INTO nic_cc_claim (answers) VALUES (:s) RETURNING id", s=second)
        db.run("INSERT INTO nic_cc_claim (policy_number, answers) VALUES (:n, :t)", n=f"P-{c}", t=third)
    return policy, old, young


@pytest.mark.parametrize("deferrable", ["", "DEFERRABLE INITIALLY DEFERRED"])
def test_grandchildren_move_with_their_customer_and_restore_parents_first(db, env, settings, deferrable):
    policy, old, young = policies_and_claims(db, env, deferrable=deferrable)
    tables = ("nic_cc_customer", "nic_cc_policy", "nic_cc_claim")
    before = {t: rows(db, t) for t in tables}
    dry = run(db, policy, settings, dry_run=True)
    job = run(db, policy, settings)
    assert dry.eligible == job.records_archived == 1
    assert count(db, "nic_cc_policy_backup") == 1 and count(db, "nic_cc_claim_backup") == 4
    assert count(db, "nic_cc_claim") == 4 and count(db, "nic_cc_policy", "customer_id = :y", y=young) == 1
    assert count(db, "nic_cc_claim_backup", "archive_job_id = CAST(:j AS uuid)", j=job.id) == 4
    _, result = Restorer(db, policy).restore(job_id=job.id)
    assert result.restored == 1 and result.related_restored == 5
    assert {t: rows(db, t) for t in tables} == before


def test_move_mode_is_refused_before_anything_moves_when_the_live_table_references_a_related_table(
        db, env, settings):
    policy, old, _ = policies_and_claims(db, env)
    db.run("ALTER TABLE nic_cc_customer ADD COLUMN main_policy integer"
           " CONSTRAINT customer_main_policy_fk REFERENCES nic_cc_policy (id)")
    with pytest.raises(SchemaError, match="customer_main_policy_fk"):
        run(db, policy, settings)
    assert count(db, "nic_cc_customer_backup") == 0 and count(db, "nic_cc_claim") == 8


def test_move_mode_is_refused_naming_a_constraint_of_a_cycle_between_related_tables(db, env, settings):
    policy, _, _ = policies_and_claims(db, env)
    db.run("ALTER TABLE nic_cc_policy ADD COLUMN main_claim integer"
           " CONSTRAINT policy_main_claim_fk REFERENCES nic_cc_claim (id)")
    with pytest.raises(SchemaError, match=r"cycle") as refused:
        run(db, policy, settings)
    assert "policy_main_claim_fk" in str(refused.value) or "nic_cc_claim_policy_number_fkey" in str(refused.value)
    assert count(db, "nic_cc_customer_backup") == 0


def test_keep_mode_refusal_names_the_constraint(db, env, settings):
    policy = load_policy({**env, "ARCHIVER_RELATED_MODE": "keep"})
    db.run("CREATE TABLE nic_cc_customer (id bigserial PRIMARY KEY, code text UNIQUE, line_of_business text,"
           " created_at timestamptz NOT NULL)")
    db.run("CREATE TABLE nic_cc_contract (id serial PRIMARY KEY, customer_code text CONSTRAINT contract_customer_fk"
           " REFERENCES nic_cc_customer (code) ON DELETE SET NULL)")
    migration.migrate(db, policy)
    db.run("INSERT INTO nic_cc_customer (code, created_at) VALUES ('A', now() - interval '90 days')")
    with pytest.raises(SchemaError, match="contract_customer_fk.*ON DELETE SET NULL"):
        run(db, policy, settings)
    assert count(db, "nic_cc_customer_backup") == 0


def test_keep_mode_works_beside_a_reference_of_the_live_table_to_itself(db, env, settings):
    policy = load_policy({**env, "ARCHIVER_RELATED_MODE": "keep"})
    db.run("CREATE TABLE nic_cc_customer (id bigserial PRIMARY KEY, name text, line_of_business text,"
           " created_at timestamptz NOT NULL, referred_by bigint REFERENCES nic_cc_customer (id) ON DELETE CASCADE)")
    migration.migrate(db, policy)
    a = db.scalar("INSERT INTO nic_cc_customer (name, created_at) VALUES ('A', now() - interval '90 days')"
                  " RETURNING id")
    db.run("INSERT INTO nic_cc_customer (name, created_at, referred_by) VALUES ('B', now(), :a),"
           " ('C', now() - interval '90 days', NULL)", a=a)
    job = run(db, policy, settings)
    assert job.records_archived == 1 and count(db, "nic_cc_customer") == 2


def notes_answering_notes(db, env):
    """Customer <- note (CASCADE), notes answering notes: ``a`` on customer ``c1``, ``b`` on ``c2``
    answering ``a`` (it moves with ``c1``), ``c`` on ``c1`` answering ``d`` on ``c2``."""
    policy = load_policy({**env, "ARCHIVER_RELATED_MODE": "move"})
    setup(db, policy)
    db.run("CREATE TABLE nic_cc_note (id serial PRIMARY KEY, ref bigint REFERENCES nic_cc_customer (id)"
           " ON DELETE CASCADE, answers integer REFERENCES nic_cc_note (id) ON DELETE CASCADE)")
    migration.migrate(db, policy)
    c1, c2 = add_customers(db, policy, [90, 5])
    a = db.scalar("INSERT INTO nic_cc_note (ref) VALUES (:c) RETURNING id", c=c1)
    db.run("INSERT INTO nic_cc_note (ref, answers) VALUES (:c, :a)", c=c2, a=a)
    d = db.scalar("INSERT INTO nic_cc_note (ref) VALUES (:c) RETURNING id", c=c2)
    db.run("INSERT INTO nic_cc_note (ref, answers) VALUES (:c, :d)", c=c1, d=d)
    return policy, c1, c2


@pytest.mark.parametrize("batch_size", [1, 2])
def test_restore_brings_back_a_related_row_reached_through_its_table_s_own_reference_once_its_customer_is_live(
        db, env, settings, batch_size):
    policy, c1, c2 = notes_answering_notes(db, env)
    db.run("UPDATE nic_cc_customer SET created_at = created_at - interval '90 days' WHERE id = :c", c=c2)
    tables = ("nic_cc_customer", "nic_cc_note")
    before = {t: rows(db, t) for t in tables}
    job = run(db, policy, settings, fixed_batch_size=1)
    assert job.records_archived == 2 and count(db, "nic_cc_note_backup") == 4
    done, result = Restorer(db, policy, batch_size=batch_size).restore(job_id=job.id)
    assert done.state == "succeeded" and result.restored == 2 and result.related_restored == 4
    assert {t: rows(db, t) for t in tables} == before


def test_restore_leaves_archived_a_related_row_whose_customer_stays_archived(db, env, settings):
    policy, c1, c2 = notes_answering_notes(db, env)
    first = run(db, policy, settings)
    assert first.records_archived == 1 and count(db, "nic_cc_note_backup") == 3  # a, b answering it, c
    db.run("UPDATE nic_cc_customer SET created_at = created_at - interval '90 days' WHERE id = :c", c=c2)
    second = run(db, policy, settings)
    assert second.records_archived == 1 and count(db, "nic_cc_note_backup") == 4
    done, result = Restorer(db, policy).restore(job_id=first.id)
    assert done.state == "partial" and result.restored == 1 and result.related_restored == 1
    assert result.conflict_count == 2 and count(db, "nic_cc_note_backup") == 3  # b, c wait for c2, d
    everything, _ = live_and_archived(db, "nic_cc_note", "nic_cc_note_backup")
    assert len(everything) == 4
