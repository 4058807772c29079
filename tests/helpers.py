"""Test helpers: controlled data and the invariant every test checks (nothing lost, nothing twice)."""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult

from archiver import catalogue, migration
from archiver.config import Policy
from archiver.db import Database
from archiver.engine import Archiver
from archiver.identifiers import qualified, quote
from local import demo

ORIGINAL_COLUMNS = ("id", "name", "email", "mobile", "policy_number", "amount_due", "line_of_business",
                    "agent_id", "status", "created_at", "updated_at")


def add_customers(db: Database, policy: Policy, ages_days: list[float], lob: str = "Motor") -> list[int]:
    """Customers created ``age`` days ago (one per entry); returns their ids."""
    demo.create_tables(db, policy)
    ids = []
    for age in ages_days:
        ids.append(db.scalar(
            "INSERT INTO nic_cc_customer (name, email, mobile, policy_number, amount_due, line_of_business,"
            " created_at) VALUES ('Customer X', 'x@example.mu', '+230 5000 0000', 'POL-X', 10, :lob,"
            " now() - make_interval(secs => :s)) RETURNING id", lob=lob, s=age * 86400))
    return ids


def setup(db: Database, policy: Policy, customers: int = 0) -> None:
    demo.create_tables(db, policy)
    if customers:
        demo.seed(db, policy, customers)
        keep_clear_of_cutoff(db, policy)
    migration.migrate(db, policy)


def keep_clear_of_cutoff(db: Database, policy: Policy) -> None:
    """Move the seeded customers within two hours of the retention cutoff four hours older. Two
    runs pin their cutoffs seconds apart; a customer that crossed it in between made a dry run's
    count one short of the run's after it (seen in CI)."""
    live, age = qualified(policy.schema_name, policy.live_table), quote(policy.age_column)
    db.run(f"UPDATE {live} SET {age} = {age} - interval '4 hours' WHERE {age} BETWEEN"
           " now() - make_interval(days => :d, hours => 2) AND now() - make_interval(days => :d) + interval '2 hours'",
           d=policy.retention_days)


def checksums(db: Database, table: str) -> dict[int, str]:
    cols = ", ".join(ORIGINAL_COLUMNS)
    return {r[0]: r[1] for r in db.run(f"SELECT id, md5(row({cols})::text) FROM {table}")}


def snapshot(db: Database) -> dict[int, str]:
    """Every customer, wherever it is, with a checksum of its original columns."""
    live = checksums(db, "nic_cc_customer")
    archive = checksums(db, "nic_cc_customer_backup") if catalogue.table_exists(
        db, "public", "nic_cc_customer_backup") else {}
    both = set(live) & set(archive)
    assert not both, f"{len(both)} rows are both live and archived"
    return {**live, **archive}


def assert_counts_match_archive(db: Database) -> None:
    """The run log's archived count per job equals the archive's rows per job."""
    per_job = dict(db.run("SELECT CAST(archive_job_id AS text), count(*) FROM nic_cc_customer_backup GROUP BY 1"))
    logged = dict(db.run("SELECT CAST(job_id AS text), records_archived FROM nic_cc_archive_log"
                         " WHERE kind = 'archive' AND NOT dry_run AND records_archived > 0"
                         " AND state <> 'rolled_back'"))
    assert per_job == logged


def count(db: Database, table: str, where: str = "true", **params: Any) -> int:
    return int(db.scalar(f"SELECT count(*) FROM {table} WHERE {where}", **params))


def role_netloc(url: SplitResult, role: str) -> str:
    """The host part of a DATABASE_URL for another role (no password: the test server trusts it)."""
    return f"{role}@{url.hostname or ''}" + (f":{url.port}" if url.port else "")


def raced_by_ddl(app: Database, table: str) -> type[Archiver]:
    """An Archiver whose table gains a column (through ``app``) right after every preparation: its
    statements never match the table's columns, so every batch must roll back and the run stop."""

    class RacedByDDL(Archiver):
        def prepare(self) -> None:
            super().prepare()
            app.run(f"ALTER TABLE {quote(table)} ADD COLUMN c{app.scalar('SELECT count(*) FROM pg_attribute')} text")

    return RacedByDDL
