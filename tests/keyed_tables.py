"""Live tables of every shape the archiver takes (key kinds, partitioned or plain, age types), their
rows, and the invariant: every row live xor archived, with the content it had."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from archiver.config import Policy, Settings
from archiver.db import Database
from archiver.engine import Archiver
from archiver.identifiers import quote
from archiver.jobs import Job
from archiver.restore import Restorer

# How each key kind is declared, and the columns the key is made of.
KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "identity": ("id bigint GENERATED ALWAYS AS IDENTITY", ("id",)),
    "uuid": ("id uuid", ("id",)),
    "text": ("id text", ("id",)),
    "composite": ("region int, code text", ("region", "code")),
}
AGE_TYPES = ("timestamptz", "timestamp", "date")


def create(db: Database, table: str, key: str, age_type: str, *, partitioned: bool = False,
           unique_instead: bool = False) -> None:
    """``table`` with a key of kind ``key`` and ``created_at`` of ``age_type``. Partitioned: by range of
    ``created_at`` (three partitions, one of them the default), its primary key the key plus
    ``created_at``, as PostgreSQL requires. ``unique_instead``: no primary key, a unique index on
    NOT NULL columns in its place."""
    ddl, cols = KEYS[key]
    keycols = cols + (("created_at",) if partitioned else ())
    if unique_instead:
        ddl = ", ".join(f"{part.strip()} NOT NULL" for part in ddl.split(","))
    constraint = "" if unique_instead else f", PRIMARY KEY ({', '.join(keycols)})"
    db.run(f"CREATE TABLE {table} ({ddl}, created_at {age_type} NOT NULL, note text, amount numeric(12, 2)"
           f"{constraint})" + (" PARTITION BY RANGE (created_at)" if partitioned else ""))
    if unique_instead:
        db.run(f"CREATE UNIQUE INDEX {table}_key ON {table} ({', '.join(keycols)})")
    if partitioned:
        db.run(f"CREATE TABLE {table}_old PARTITION OF {table} FOR VALUES FROM (MINVALUE) TO ('2026-07-01')")
        db.run(f"CREATE TABLE {table}_new PARTITION OF {table} FOR VALUES FROM ('2026-07-01') TO ('2026-11-15')")
        db.run(f"CREATE TABLE {table}_rest PARTITION OF {table} DEFAULT")


def insert(db: Database, table: str, key: str, age_type: str, ages: Iterable[Any]) -> list[str]:
    """One row per age, with keys drawn so that their order has nothing to do with the ages'; returns
    their keys' text, as ``contents`` has them."""
    out = []
    cast = {"timestamptz": "timestamptz", "timestamp": "timestamp without time zone", "date": "date"}[age_type]
    for n, age in enumerate(ages):
        keys: dict[str, Any] = {}
        if key == "uuid":
            keys = {"id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{table}-{n}"))}
        elif key == "text":
            keys = {"id": f"k{(n * 7919) % 10007:05d}-{n}"}
        elif key == "composite":
            keys = {"region": n % 3, "code": f"c{(n * 31) % 97}-{n}"}
        values = [f"CAST(:{k} AS uuid)" if key == "uuid" else f":{k}" for k in keys]
        out.append(db.scalar(
            f"INSERT INTO {table} ({', '.join([*keys, 'created_at', 'note', 'amount'])})"
            f" VALUES ({', '.join([*values, f'CAST(:age AS {cast})', ':note', ':amount'])})"
            f" RETURNING CAST(ROW({', '.join(KEYS[key][1])}) AS text)",
            **keys, age=age.isoformat(), note=f"row {n}", amount=n))
    return out


def order_lines_and_parts(db: Database) -> None:
    """Below ``orders (region, code)``: ``order_lines``, referencing it by both columns, and
    ``line_parts``, with no key at all, referencing the lines."""
    db.run("CREATE TABLE order_lines (region int, code text, line int, part text,"
           " PRIMARY KEY (region, code, line),"
           " FOREIGN KEY (region, code) REFERENCES orders (region, code) ON DELETE CASCADE)")
    db.run("CREATE TABLE line_parts (region int, code text, line int, qty int,"
           " FOREIGN KEY (region, code, line) REFERENCES order_lines ON DELETE RESTRICT)")


def contents(db: Database, table: str, archive: str) -> tuple[dict[str, str], dict[str, str]]:
    """(live, archived) rows: {key's text: the original columns' text}."""
    cols = "id" if db.scalar("SELECT count(*) FROM pg_attribute WHERE attrelid = CAST(:t AS regclass)"
                             " AND attname = 'id'", t=table) else "region, code"
    row = f"CAST(ROW({cols}, created_at, note, amount) AS text)"
    live = {r[0]: r[1] for r in db.run(f"SELECT CAST(ROW({cols}) AS text), {row} FROM {table}")}
    kept = {r[0]: r[1] for r in db.run(f"SELECT CAST(ROW({cols}) AS text), {row} FROM {archive}")}
    return live, kept


def assert_live_xor_archived(db: Database, table: str, archive: str, original: dict[str, str]) -> dict[str, str]:
    """Every original row is live or archived, not both, not neither, with its content; returns the
    archived rows."""
    live, kept = contents(db, table, archive)
    assert not set(live) & set(kept), "rows both live and archived"
    assert {**live, **kept} == original
    return kept


def eligible(age: Any, cutoff: datetime, zone: str) -> bool:
    """The oracle: a row past the cutoff, its age read in the policy's time zone."""
    tz = ZoneInfo(zone)
    if isinstance(age, datetime) and age.tzinfo is not None:
        return age < cutoff
    if isinstance(age, datetime):
        return age < cutoff.astimezone(tz).replace(tzinfo=None)
    assert isinstance(age, date)
    return datetime.combine(age, time(), tz) < cutoff


def policy_for(policy: Policy, table: str, zone: str, retention_days: int, batch_size: int = 1) -> Policy:
    return policy.model_copy(update={
        "live_table": table, "archive_table": f"{table}_backup", "log_table": f"{table}_log", "timezone": zone,
        "retention_days": retention_days, "batch_size": batch_size, "lob_column": "no_such_column"})


def archive(db: Database, policy: Policy, settings: Settings, *, batch_size: int | None = None,
            max_batches: int | None = None) -> tuple[Job, Job]:
    """A dry run, then a run (stopped after ``max_batches`` and resumed when given); both jobs."""
    archiver = Archiver(db, policy, settings)
    dry = archiver.start(dry_run=True)
    dry = archiver.run_hop(dry.id, owner="dry", hop=1).job
    job = archiver.start(fixed_batch_size=batch_size or policy.batch_size)
    outcome = archiver.run_hop(job.id, owner="w1", hop=1, max_batches=max_batches)
    if outcome.status == "paused":
        outcome = Archiver(db, policy, settings).run_hop(job.id, owner="w2", hop=None)
    assert outcome.status == "done" and outcome.job is not None
    return dry, outcome.job


def archive_exactly_the_eligible(db: Database, policy: Policy, settings: Settings, keys: list[Any], ages: list[Any],
                                 original: dict[str, str], *, max_batches: int | None = None) -> tuple[Job, datetime]:
    """``archive``, then the property every run keeps: it succeeded, the dry run counted what it moved,
    and exactly the rows whose age (``ages``, beside ``keys``) is past the pinned cutoff are archived,
    unchanged, the rest live and unchanged. The run and its cutoff."""
    table = policy.live_table
    dry, job = archive(db, policy, settings, max_batches=max_batches)
    cutoff = datetime.fromisoformat(job.options["cutoffs"]["default"])
    expected = {k for k, a in zip(keys, ages, strict=True) if eligible(a, cutoff, policy.timezone)}
    assert job.state == "succeeded"
    assert dry.eligible == job.records_archived == len(expected)
    assert set(assert_live_xor_archived(db, table, f"{table}_backup", original)) == expected
    return job, cutoff


def restore(db: Database, policy: Policy, job: Job, batch_size: int = 3) -> None:
    done, result = Restorer(db, policy, batch_size=batch_size).restore(job_id=job.id)
    assert done.state == "succeeded" and result.restored == job.records_archived


def set_zone(db: Database, zone: str) -> None:
    """The session's TimeZone is the policy's (as connection.open_database sets it)."""
    db.run("SELECT set_config('TimeZone', :tz, false)", tz=zone)


def drop(db: Database, *tables: str) -> None:
    for t in tables:
        db.run(f"DROP TABLE IF EXISTS {quote(t)} CASCADE")
