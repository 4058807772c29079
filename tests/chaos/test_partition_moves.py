"""A whole-partition move killed inside its transaction (the worker's connection terminated just before
one of its statements) leaves everything as it was: the partition's rows live, none archived, the job
row uncounted. The run, taken up again, moves every eligible row once."""

from __future__ import annotations

from datetime import datetime

import pytest

from archiver.engine import Archiver
from archiver.exceptions import DatabaseUnavailableError
from tests.integration.test_whole_partitions import RETENTION, calls
from tests.keyed_tables import assert_live_xor_archived, contents, eligible, policy_for
from tests.partitioned_tables import moved_whole

from .support import ScriptedDatabase

# Where the kill lands, as the statement about to run: the lock, the INSERT … SELECT with the job row,
# the TRUNCATE, the run log's note, and the COMMIT of that transaction.
KILL_POINTS = ("LOCK TABLE", "WITH i AS (INSERT", "TRUNCATE", "UPDATE", "COMMIT")


@pytest.mark.chaos
@pytest.mark.parametrize("before", KILL_POINTS)
def test_a_partition_move_killed_before_any_of_its_statements_leaves_every_row_in_place(
        db, policy, settings, connect, before):
    _, keys, ages = calls(db, policy, "UTC", "timestamptz")
    pol = policy_for(policy, "calls", "UTC", RETENTION, batch_size=3)
    original = contents(db, "calls", "calls")[0]
    job = Archiver(db, pol, settings).start()
    killer = connect()
    worker = ScriptedDatabase(db)
    pid = worker.scalar("SELECT pg_backend_pid()")
    moving: list[str] = []  # set once the move's transaction has locked its partition

    def kill(sql: str) -> None:
        if sql.startswith("LOCK TABLE"):
            moving.append(sql)
        if moving and sql.startswith(before):
            killer.run("SELECT pg_terminate_backend(:p, 5000)", p=pid)  # waits until it is gone

    worker.before = kill
    with pytest.raises(DatabaseUnavailableError):
        Archiver(worker, pol, settings).run_hop(job.id, owner="w", hop=1)
    worker.close()

    assert contents(db, "calls", "calls_backup") == (original, {})
    killed = Archiver(db, pol, settings).jobs.get(job.id)
    assert (killed.records_archived, killed.batches, moved_whole(killed)) == (0, 0, {})

    done = Archiver(db, pol, settings).run_hop(job.id, owner="w", hop=None).job  # its own lease: taken up again
    cutoff = datetime.fromisoformat(done.options["cutoffs"]["default"])
    assert done.state == "succeeded" and len(moved_whole(done)) >= 4
    assert done.records_archived == sum(eligible(a, cutoff, "UTC") for a in ages)
    assert_live_xor_archived(db, "calls", "calls_backup", original)
