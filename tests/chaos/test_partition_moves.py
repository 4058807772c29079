"""A whole-partition move killed at any statement of its transaction (the worker's connection terminated
just before it) leaves every row live or archived exactly once, with its content: before the COMMIT,
everything as it was (the leaf in the live table, the archive partition it was merging intact, the job
row uncounted); after it, the move whole. The run, taken up again, moves every eligible row once.

Both ways are killed at each of their statements: the attach (the leaf detached, given the archive's
columns, merged with the small archive partition of its range and attached) and the copy that follows
an attach given up (the archive partition of the range holding more than a quarter of the leaf's rows)."""

from __future__ import annotations

from datetime import datetime

import pytest

from archiver.config import Policy
from archiver.db import Database
from archiver.engine import Archiver
from archiver.exceptions import DatabaseUnavailableError
from archiver.jobs import Job
from tests.integration.test_partition_attach import DAYS, archived_part, calls, moved_how, part, run
from tests.keyed_tables import assert_live_xor_archived, contents, eligible

from .support import ScriptedDatabase

# What the move runs, from its first statement on (after the probe that the leaf holds rows), as each
# statement's beginning: the attach of a leaf with a foreign key, a grant and an archive partition of
# its range holding a fifth of its rows (merged into it), the live table having no default partition
# (an empty partition of the leaf's name and range takes its place) ...
ATTACH = (
    "START TRANSACTION", "WITH j AS", "SELECT set_config('lock_timeout'", "LOCK TABLE ONLY", "LOCK TABLE",
    "WITH ranged AS", "SELECT (", "SELECT pg_get_expr", "SELECT c.oid", "SELECT count(*) >",
    "ALTER TABLE \"public\".\"calls\" DETACH", "WITH i AS (SELECT 1", "SELECT 'DROP CONSTRAINT ", "ALTER TABLE",
    "SELECT DISTINCT CASE", "REVOKE ALL", "SELECT set_config('archiver.archived_by'", "SELECT", "SELECT",
    "ALTER TABLE", "ALTER TABLE", "ALTER TABLE \"public\".\"calls_backup\" DETACH", "INSERT INTO", "DROP TABLE",
    "ALTER TABLE \"public\".\"calls_backup\" ATTACH", "SELECT to_regclass", "ALTER TABLE", "SELECT partdefid",
    "CREATE TABLE \"public\".\"calls_p100\" PARTITION OF", "UPDATE", "COMMIT")
# ... and the copy after an attach given up for an archive partition holding more rows than the leaf.
COPY = (
    "START TRANSACTION", "WITH j AS", "SELECT set_config('lock_timeout'", "LOCK TABLE ONLY", "LOCK TABLE",
    "WITH ranged AS", "SELECT (", "SELECT pg_get_expr", "SELECT c.oid", "SELECT count(*) >",
    "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table", "WITH live AS MATERIALIZED",  # its range mirrored
    "START TRANSACTION", "WITH j AS", "SELECT set_config('lock_timeout'", "LOCK TABLE", "WITH ranged AS",
    "SELECT (", "WITH i AS (INSERT", "TRUNCATE", "UPDATE", "COMMIT")
# The first run's retention (days): the range starting 100 days back straddles its cutoff, and the
# archive partition of that range gets one of the range's six rows (merged later) or five (copied into).
WAYS = {"attach": (98, ATTACH), "copy": (92, COPY)}
KILLS = [(way, n) for way, (_, statements) in WAYS.items() for n in range(len(statements) + 1)]


def kill_id(kill: tuple[str, int]) -> str:
    way, n = kill
    statements = WAYS[way][1]
    return f"{way}-{n:02d}-" + (statements[n].split(" (")[0][:30] if n < len(statements) else "after COMMIT")


def prepared(db: Database, policy: Policy, settings, way: str) -> tuple[Policy, Job, dict[str, str], list, list]:
    """The table, a first run that leaves the straddling range's rows partly in its archive partition,
    and a second run started (not run): its policy and job, every row's content, the keys and ages."""
    db.run("CREATE TABLE agents (id int PRIMARY KEY)")
    db.run("INSERT INTO agents VALUES (1)")
    pol, keys, ages = calls(db, policy, columns="agent int REFERENCES agents (id)")
    db.run("UPDATE calls SET agent = 1")
    db.run(f"GRANT SELECT ON {part(-100)} TO PUBLIC")
    first = run(db, pol.model_copy(update={"retention_days": WAYS[way][0]}), settings)
    assert first.state == "succeeded" and part(-100) not in moved_how(first)
    original = {**contents(db, "calls", "calls")[0], **contents(db, "calls", "calls_backup")[1]}
    return pol, Archiver(db, pol, settings).start(), original, keys, ages


class Moves:
    """The statements a worker runs from the probe of the straddling range's leaf on (the older leaf,
    attached by the first run, left an empty partition in its place: probed and passed over before);
    ``kill_before`` the n-th of them (0: the first), the worker's connection is terminated from another one."""

    def __init__(self, worker: ScriptedDatabase, killer: Database, kill_before: int | None = None) -> None:
        self.worker, self.killer, self.kill_before = worker, killer, kill_before
        self.pid = worker.scalar("SELECT pg_backend_pid()")
        self.seen: list[str] | None = None
        self.killed_at: str | None = None
        worker.before = self

    def __call__(self, sql: str) -> None:
        if self.seen is None:
            if sql.startswith(f'SELECT EXISTS (SELECT 1 FROM ONLY "public"."{part(-100)}")'):
                self.seen = []
            return
        if len(self.seen) == self.kill_before and self.killed_at is None:
            self.killed_at = sql
            self.killer.run("SELECT pg_terminate_backend(:p, 5000)", p=self.pid)  # waits until it is gone
        self.seen.append(sql.lstrip())


def assert_each_row_once(db: Database, original: dict[str, str]) -> None:
    """Live xor archived with its content, and every run counted exactly the rows archived with its id."""
    assert_live_xor_archived(db, "calls", "calls_backup", original)
    counted = dict(db.run("SELECT CAST(job_id AS text), records_archived FROM calls_log WHERE NOT dry_run"))
    archived = dict(db.run("SELECT CAST(archive_job_id AS text), count(*) FROM calls_backup GROUP BY 1"))
    assert {j: n for j, n in counted.items() if n} == archived


@pytest.mark.chaos
@pytest.mark.parametrize("way", list(WAYS))
def test_the_moves_statements_are_those_the_kills_land_before(db, policy, settings, connect, way):
    pol, job, original, _, _ = prepared(db, policy, settings, way)
    worker = ScriptedDatabase(db)
    moves = Moves(worker, connect())
    outcome = Archiver(worker, pol, settings).run_hop(job.id, owner="w", hop=1, max_batches=1)
    worker.close()
    statements = WAYS[way][1]
    assert moves.seen is not None and len(moves.seen) > len(statements)
    assert [s for s, head in zip(moves.seen, statements, strict=False) if not s.startswith(head)] == []
    assert moves.seen[len(statements) - 1] == "COMMIT" and statements.count("COMMIT") == 1
    assert moved_how(outcome.job) == {part(-100): "attached" if way == "attach" else "copied"}
    assert_each_row_once(db, original)


@pytest.mark.chaos
@pytest.mark.parametrize("kill", KILLS, ids=kill_id)
def test_a_partition_move_killed_at_any_statement_leaves_every_row_live_or_archived_once(
        db, policy, settings, connect, kill):
    way, n = kill
    pol, job, original, keys, ages = prepared(db, policy, settings, way)
    twin_before = dict(db.run(f"SELECT CAST(ROW(id) AS text), archive_job_id FROM {archived_part(-100)}"))
    worker = ScriptedDatabase(db)
    moves = Moves(worker, connect(), kill_before=n)
    with pytest.raises(DatabaseUnavailableError):
        Archiver(worker, pol, settings).run_hop(job.id, owner="w", hop=1)
    worker.close()
    statements = WAYS[way][1]
    assert moves.killed_at is not None and (n == len(statements) or moves.killed_at.lstrip().startswith(statements[n]))

    assert_each_row_once(db, original)
    killed = Archiver(db, pol, settings).jobs.get(job.id)
    if n < len(statements):  # before the COMMIT: as it was
        assert (killed.records_archived, killed.batches, moved_how(killed)) == (0, 0, {})
        assert part(-100) in dict(db.run("SELECT relname, 1 FROM pg_class WHERE relispartition"))
        assert dict(db.run(f"SELECT CAST(ROW(id) AS text), archive_job_id FROM {archived_part(-100)}")) == twin_before
    else:
        assert killed.records_archived == len(DAYS[-100]) - len(twin_before) and killed.batches == 1
    # Either way, committed or not, the live table has a partition of the range's name: the leaf, or
    # after an attach the empty one in its place (a backdated insert has a home).
    assert db.scalar("SELECT CAST(inhparent AS regclass) = CAST('calls' AS regclass) FROM pg_inherits"
                     " WHERE inhrelid = CAST(:p AS regclass)", p=part(-100)) is True

    done = Archiver(db, pol, settings).run_hop(job.id, owner="w", hop=None).job  # its own lease: taken up again
    cutoff = datetime.fromisoformat(done.options["cutoffs"]["default"])
    expected = {k for k, a in zip(keys, ages, strict=True) if eligible(a, cutoff, "UTC")}
    assert done.state == "succeeded" and moved_how(done)[part(-100)] == ("attached" if way == "attach" else "copied")
    assert set(assert_live_xor_archived(db, "calls", "calls_backup", original)) == expected
    assert_each_row_once(db, original)
