"""Policy on a real PostgreSQL: retention per line of business, Phase-2 rules, related modes, names."""

from __future__ import annotations

import pytest

from archiver import migration
from archiver.config import load_policy
from archiver.engine import Archiver
from archiver.exceptions import ConfigError, SchemaError
from archiver.restore import Restorer
from tests.helpers import add_customers, count, setup, snapshot


def run(db, policy, settings, **start):
    archiver = Archiver(db, policy, settings)
    job = archiver.start(**start)
    return archiver.run_hop(job.id, owner="w", hop=1).job


def customers_with_notes_without_foreign_key(db, policy):
    """Two old customers, the first with a row in ``notes``, a table with no foreign key."""
    db.run("CREATE TABLE nic_cc_customer (id bigserial PRIMARY KEY, name text, line_of_business text,"
           " created_at timestamptz NOT NULL)")
    db.run("CREATE TABLE notes (id serial PRIMARY KEY, customer_id bigint)")
    migration.migrate(db, policy)
    ids = [r[0] for r in db.run("INSERT INTO nic_cc_customer (name, created_at) VALUES"
                                " ('A', now() - interval '90 days'), ('B', now() - interval '90 days') RETURNING id")]
    db.run("INSERT INTO notes (customer_id) VALUES (:c)", c=ids[0])
    return ids


def test_retention_per_line_of_business(db, env, settings):
    policy = load_policy({**env, "ARCHIVER_RETENTION_BY_LOB": "Life=90,Motor=60"})
    setup(db, policy)
    life_kept = add_customers(db, policy, [75], lob="Life")
    life_gone = add_customers(db, policy, [95], lob="Life")
    motor_gone = add_customers(db, policy, [75], lob="Motor")
    other_gone = add_customers(db, policy, [61], lob="Health")  # default retention: 60
    other_kept = add_customers(db, policy, [59], lob="Health")
    job = run(db, policy, settings)
    assert job.records_archived == 3
    live = {r[0] for r in db.run("SELECT id FROM nic_cc_customer")}
    assert live == {*life_kept, *other_kept}
    assert not live & {*life_gone, *motor_gone, *other_gone}


@pytest.mark.parametrize(
    ("rule", "blocker", "harmless"),
    [
        ("no_active_aod", "INSERT INTO nic_cc_aod (customer_id, status) VALUES (:c, 'active')",
         "INSERT INTO nic_cc_aod (customer_id, status) VALUES (:c, 'closed')"),
        ("no_unpaid_installment", "INSERT INTO nic_cc_installment (customer_id, status) VALUES (:c, 'pending')",
         "INSERT INTO nic_cc_installment (customer_id, status) VALUES (:c, 'paid')"),
        ("no_upcoming_follow_up",
         "INSERT INTO nic_cc_follow_up (customer_id, due_date) VALUES (:c, now() + interval '10 days')",
         "INSERT INTO nic_cc_follow_up (customer_id, due_date) VALUES (:c, now() + interval '40 days')"),
        ("no_recent_call",
         "INSERT INTO nic_cc_call_log (customer_id, called_at) VALUES (:c, now() - interval '3 days')",
         "INSERT INTO nic_cc_call_log (customer_id, called_at) VALUES (:c, now() - interval '45 days')"),
    ],
)
def test_each_phase2_rule_keeps_only_the_customers_it_protects(db, env, settings, rule, blocker, harmless):
    # Related mode "move" so that related rows alone do not keep a customer: only the rule does.
    policy = load_policy({**env, "ARCHIVER_RULES": rule, "ARCHIVER_RELATED_MODE": "move"})
    setup(db, policy)
    protected, free = add_customers(db, policy, [80, 80])
    db.run(blocker, c=protected)
    db.run(harmless, c=free)
    dry = run(db, policy, settings, dry_run=True)
    job = run(db, policy, settings)
    assert dry.eligible == job.records_archived == 1
    assert {r[0] for r in db.run("SELECT id FROM nic_cc_customer")} == {protected}


def test_skip_mode_keeps_customers_that_have_related_rows(db, policy, settings):
    setup(db, policy)
    with_calls, plain = add_customers(db, policy, [80, 80])
    db.run("INSERT INTO nic_cc_call_log (customer_id, called_at) VALUES (:c, now() - interval '70 days')",
           c=with_calls)
    job = run(db, policy, settings)
    assert job.records_archived == 1
    assert {r[0] for r in db.run("SELECT id FROM nic_cc_customer")} == {with_calls}


def test_move_mode_moves_related_rows_with_their_customer_and_restore_brings_all_back(db, env, settings):
    policy = load_policy({**env, "ARCHIVER_RELATED_MODE": "move"})
    setup(db, policy)
    old, young = add_customers(db, policy, [80, 10])
    for c in (old, young):
        db.run("INSERT INTO nic_cc_call_log (customer_id, called_at) VALUES (:c, now())", c=c)
        db.run("INSERT INTO nic_cc_aod (customer_id, status) VALUES (:c, 'closed')", c=c)
    before = snapshot(db)
    related_before = db.run("SELECT id, customer_id FROM nic_cc_call_log ORDER BY id")
    job = run(db, policy, settings)
    assert job.records_archived == 1
    assert count(db, "nic_cc_call_log_backup", "customer_id = :c", c=old) == 1
    assert count(db, "nic_cc_aod_backup", "customer_id = :c", c=old) == 1
    assert count(db, "nic_cc_call_log", "customer_id = :c", c=old) == 0
    run_, result = Restorer(db, policy).restore(job_id=job.id)
    assert result.restored == 1 and result.related_restored == 2
    assert snapshot(db) == before
    assert db.run("SELECT id, customer_id FROM nic_cc_call_log ORDER BY id") == related_before
    assert db.scalar("SELECT state FROM nic_cc_archive_log WHERE job_id = CAST(:j AS uuid)", j=job.id) == "rolled_back"


def test_move_mode_keeps_a_related_column_added_between_two_batches(db, connect, env, settings):
    policy = load_policy({**env, "ARCHIVER_RELATED_MODE": "move"})
    setup(db, policy)
    for c in add_customers(db, policy, [80 + i for i in range(6)]):
        db.run("INSERT INTO nic_cc_call_log (customer_id, called_at) VALUES (:c, now())", c=c)
    archiver = Archiver(db, policy, settings)
    job = archiver.start(fixed_batch_size=2)
    app = connect()

    def alter_after_first_batch(_job, result):
        if result.locked and not count(app, "information_schema.columns", "column_name = 'sentiment'"):
            app.run("ALTER TABLE nic_cc_call_log ADD COLUMN sentiment text")
            app.run("UPDATE nic_cc_call_log SET sentiment = 'warm'")

    outcome = archiver.run_hop(job.id, owner="w", hop=1, on_batch=alter_after_first_batch)
    assert outcome.job.records_archived == 6 and count(db, "nic_cc_call_log") == 0
    assert count(db, "nic_cc_call_log_backup", "sentiment = 'warm'") == 4


def test_keep_mode_with_a_foreign_key_is_refused_before_anything_moves(db, env, settings):
    policy = load_policy({**env, "ARCHIVER_RELATED_MODE": "keep"})
    setup(db, policy)
    add_customers(db, policy, [80])
    with pytest.raises(SchemaError, match="keep"):
        Archiver(db, policy, settings).start()
    assert count(db, "nic_cc_customer_backup") == 0


def test_keep_mode_leaves_related_rows_of_tables_without_foreign_keys(db, env, settings):
    policy = load_policy({**env, "ARCHIVER_RELATED_MODE": "keep"})
    cid, _ = customers_with_notes_without_foreign_key(db, policy)
    job = run(db, policy, settings)
    assert job.records_archived == 2 and count(db, "notes") == 1


def test_policy_listed_related_table_without_foreign_key_is_honoured_in_skip_mode(db, env, settings):
    policy = load_policy({**env, "ARCHIVER_RELATED_TABLES": "notes:customer_id"})
    with_note, _ = customers_with_notes_without_foreign_key(db, policy)
    job = run(db, policy, settings)
    assert job.records_archived == 1 and count(db, "nic_cc_customer", "id = :a", a=with_note) == 1


@pytest.mark.parametrize("deferrable", ["", "DEFERRABLE INITIALLY DEFERRED"])
def test_cascading_foreign_key_never_deletes_related_rows(db, policy, settings, deferrable):
    setup(db, policy)
    db.run("CREATE TABLE nic_cc_note (id serial PRIMARY KEY,"
           f" customer_id bigint REFERENCES nic_cc_customer (id) ON DELETE CASCADE {deferrable})")
    c, _ = add_customers(db, policy, [80, 80])
    db.run("INSERT INTO nic_cc_note (customer_id) VALUES (:c)", c=c)
    job = run(db, policy, settings)
    assert job.records_archived == 1 and count(db, "nic_cc_note") == 1


@pytest.mark.parametrize("name", ['x"; DROP TABLE t; --', "ü_table", "a" * 64, "1abc", "a b", "order;"])
def test_hostile_table_name_is_refused_with_a_clear_error(env, name):
    with pytest.raises(ConfigError, match="live_table"):
        load_policy({**env, "ARCHIVER_LIVE_TABLE": name})


def test_reserved_word_table_names_work_when_quoted(db, env, settings):
    policy = load_policy({**env, "ARCHIVER_LIVE_TABLE": "order", "ARCHIVER_ARCHIVE_TABLE": "user",
                          "ARCHIVER_LOG_TABLE": "select"})
    db.run('CREATE TABLE "order" (id bigserial PRIMARY KEY, line_of_business text, created_at timestamptz)')
    db.run("""INSERT INTO "order" (created_at) VALUES (now() - interval '90 days'), (now())""")
    migration.migrate(db, policy)
    job = run(db, policy, settings)
    assert job.records_archived == 1 and db.scalar('SELECT count(*) FROM "user"') == 1
