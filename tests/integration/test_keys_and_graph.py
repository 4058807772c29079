"""The foreign-key graph on keys of any width: move mode follows a composite key's multi-column
references, and a table referencing itself never takes the one-statement batch (its eligibility
reads other live rows and the archive)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from archiver import catalogue, grants, migration
from archiver.eligibility import pin_cutoffs
from archiver.engine import Archiver
from tests.keyed_tables import (
    assert_live_xor_archived,
    contents,
    create,
    insert,
    order_lines_and_parts,
    policy_for,
    restore,
)

NOW = datetime.now(UTC)
AGES = [NOW - timedelta(days=d, minutes=i) for i, d in enumerate([90, 5, 120, 70, 1, 200, 64, 30])]


def lines(db, table: str) -> set[tuple]:
    return {tuple(r) for r in db.run(f"SELECT region, code, line, part FROM {table}")}


def test_move_mode_moves_the_children_of_a_composite_key_by_both_columns_and_restores_them(db, policy, settings):
    """``orders (region, code)``; ``order_lines`` references it by both columns, ``line_parts`` the
    lines in turn. Only the children of archived orders move (a child of a young order with the
    same ``code`` stays), and restore brings every row back."""
    create(db, "orders", "composite", "timestamptz")
    keys = insert(db, "orders", "composite", "timestamptz", AGES)
    order_lines_and_parts(db)
    # a young twin of every order: the same code in another region, which a test of the code alone
    # (or of each column apart) would take for the old order's
    db.run("INSERT INTO orders (region, code, created_at, note, amount) SELECT region + 10, code, now(), 'twin', 0"
           " FROM orders")
    db.run("INSERT INTO order_lines SELECT region, code, g, 'p' || g FROM orders, generate_series(1, 2) g")
    db.run("INSERT INTO line_parts SELECT region, code, line, 1 FROM order_lines")
    pol = policy_for(policy, "orders", policy.timezone, 60).model_copy(update={"related_mode": "move"})
    migration.migrate(db, pol)
    assert catalogue.has_index(db, "public", "order_lines", ("region", "code"))
    original, _ = contents(db, "orders", "orders_backup")
    every_line = lines(db, "order_lines")
    archiver = Archiver(db, pol, settings)
    assert not archiver.statements(pin_cutoffs(db, pol)).single  # related tables: lock, then move
    job = archiver.run_hop(archiver.start(fixed_batch_size=2).id, owner="w", hop=1).job
    assert job.state == "succeeded" and job.records_archived == 5
    kept = assert_live_xor_archived(db, "orders", "orders_backup", original)
    assert set(kept) == {k for k, a in zip(keys, AGES, strict=True) if a < NOW - timedelta(days=60)}
    live_orders = {tuple(r) for r in db.run("SELECT region, code FROM orders")}
    moved, stayed = lines(db, "order_lines_backup"), lines(db, "order_lines")
    assert moved | stayed == every_line and not moved & stayed
    assert all((r, c) in live_orders for r, c, _, _ in stayed)
    assert not any((r, c) in live_orders for r, c, _, _ in moved)
    assert db.scalar("SELECT count(*) FROM line_parts_backup") == len(moved)
    restore(db, pol, job)
    assert contents(db, "orders", "orders_backup") == (original, {})
    assert lines(db, "order_lines") == every_line and not lines(db, "order_lines_backup")
    assert db.scalar("SELECT count(*) FROM line_parts") == len(every_line)


def referring_customers(db, policy, action: str = "CASCADE"):
    db.run("CREATE TABLE nic_cc_customer (id bigserial PRIMARY KEY, name text, created_at timestamptz NOT NULL,"
           f" referred_by bigint REFERENCES nic_cc_customer (id) ON DELETE {action})")
    db.run("INSERT INTO nic_cc_customer (name, created_at)"
           " SELECT 'c' || g, now() - interval '90 days' + g * interval '1 minute' FROM generate_series(1, 6) g")
    migration.migrate(db, policy)


def test_a_table_referencing_itself_takes_the_two_statement_batch(db, policy, settings):
    referring_customers(db, policy)
    first = db.scalar("SELECT min(id) FROM nic_cc_customer")
    db.run("INSERT INTO nic_cc_customer (name, created_at, referred_by) VALUES ('young', now(), :r)", r=first)
    archiver = Archiver(db, policy, settings)
    assert not archiver.statements(pin_cutoffs(db, policy)).single
    job = archiver.run_hop(archiver.start(fixed_batch_size=4).id, owner="w", hop=1).job
    assert job.state == "succeeded" and job.records_archived == 5
    assert db.scalar("SELECT count(*) FROM nic_cc_customer WHERE id = :r OR referred_by = :r", r=first) == 2
    batch = [s[0] for s in db.run("SELECT statement FROM pg_prepared_statements") if "SKIP LOCKED" in s[0]]
    assert any("DELETE FROM" not in s for s in batch)  # a lock statement of its own


def test_a_partitioned_table_referencing_itself_by_two_columns_keeps_referenced_rows(db, policy, settings):
    """Range-partitioned, key ``(id, created_at)``, a row referencing another by both columns: the
    referenced old row stays while a young row references it; the rest is archived and restored."""
    create(db, "events", "identity", "timestamptz", partitioned=True)
    keys = insert(db, "events", "identity", "timestamptz", AGES)
    db.run("ALTER TABLE events ADD COLUMN ref_id bigint, ADD COLUMN ref_at timestamptz,"
           " ADD FOREIGN KEY (ref_id, ref_at) REFERENCES events (id, created_at) ON DELETE CASCADE")
    oldest = db.run("SELECT id, created_at FROM events ORDER BY created_at LIMIT 1")[0]
    db.run("UPDATE events SET ref_id = :i, ref_at = :t WHERE created_at = (SELECT max(created_at) FROM events)",
           i=oldest[0], t=oldest[1])
    pol = policy_for(policy, "events", policy.timezone, 60)
    migration.migrate(db, pol)
    original, _ = contents(db, "events", "events_backup")
    archiver = Archiver(db, pol, settings)
    assert not archiver.statements(pin_cutoffs(db, pol)).single
    job = archiver.run_hop(archiver.start(fixed_batch_size=2).id, owner="w", hop=1).job
    old = {k for k, a in zip(keys, AGES, strict=True) if a < NOW - timedelta(days=60)}
    kept = assert_live_xor_archived(db, "events", "events_backup", original)
    assert set(kept) == old - {f"({oldest[0]})"} and job.records_archived == len(old) - 1
    restore(db, pol, job)
    assert contents(db, "events", "events_backup") == (original, {})


def test_move_mode_needs_grants_on_every_table_of_the_graph_and_update_where_rows_are_locked(db, policy):
    db.run("CREATE TABLE nic_cc_customer (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL,"
           " referred_by bigint REFERENCES nic_cc_customer (id))")
    db.run("CREATE TABLE notes (customer_id bigint REFERENCES nic_cc_customer, n int UNIQUE)")  # no primary key
    db.run("CREATE TABLE note_tags (n int REFERENCES notes (n))")
    pol = policy.model_copy(update={"related_mode": "move"})
    migration.migrate(db, pol)
    run = {n.table: n for n in grants.needs(db, pol, "run")}
    assert run['"public"."notes"'].privileges == ("SELECT", "DELETE") and run['"public"."notes"'].any_column == "UPDATE"
    assert run['"public"."note_tags"'].any_column is None and '"public"."note_tags_backup"' in run
    assert db.scalar(grants._KEY_COLUMNS_SQL, t='"public"."notes"') == "customer_id"
    dry = {n.table: n.privileges for n in grants.needs(db, pol, "dry-run")}
    assert dry['"public"."nic_cc_customer_backup"'] == ("SELECT",)  # the self-reference's hold
