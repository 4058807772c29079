"""A prototype of the one-statement batch (issue 20, point 2), timed beside the engine's batch of four
round trips (begin, lock, move and count, commit) on the same data: the lock, the ``DELETE`` of
the locked set, the ``INSERT`` into the archive and the job row's update in one statement, one
implicit transaction, one round trip; the locked ids never cross the wire, the cursor comes back.

Not the engine: it leaves out the lease gate, the columns signature and the re-check of the rules
under a fresh snapshot (docs/decisions/one-statement-batch.md); what it measures is what the
round trips and the ids' trip cost.
"""

from __future__ import annotations

import time

from archiver.catalogue import live_shape
from archiver.config import Policy, Settings
from archiver.db import Database
from archiver.eligibility import pin_cutoffs
from archiver.engine import Archiver
from archiver.identifiers import qualified, quote
from archiver.migration import ARCHIVE_META

from .scenarios import Batch, JobRun


def statement(db: Database, policy: Policy, settings: Settings, first: bool) -> tuple[str, dict[str, object]]:
    stmts = Archiver(db, policy, settings).statements(pin_cutoffs(db, policy))
    shape = live_shape(db, policy)
    live, archive = qualified(policy.schema_name, policy.live_table), qualified(policy.schema_name,
                                                                                policy.archive_table)
    log = qualified(policy.schema_name, policy.log_table)
    age, pk = quote(policy.age_column), quote(shape.pk)
    cols = ", ".join(quote(c) for c in shape.names)
    after = "" if first else (f"(l.{age}, l.{pk}) > (CAST(:cur_ts AS timestamptz),"
                              f" CAST(:cur_key AS {shape.pk_type})) AND ")
    sql = (f"WITH b AS (SELECT l.{pk} AS k, l.{age} AS t FROM {live} l WHERE {after}{stmts.elig.sql}"
           f" ORDER BY l.{age}, l.{pk} LIMIT :n FOR UPDATE OF l SKIP LOCKED),"
           # By = ANY of an array, not a join: a prepared statement's generic plan (LIMIT unknown) joined
           # by hash over a full scan of the live table.
           f" m AS (DELETE FROM {live} x WHERE x.{pk} = ANY(ARRAY(SELECT k FROM b))"
           f" RETURNING {', '.join('x.' + quote(c) for c in shape.names)}),"
           f" i AS (INSERT INTO {archive} ({cols}, {', '.join(quote(c) for c in ARCHIVE_META)})"
           f" SELECT {cols}, now(), :by, :reason, CAST(:job AS uuid) FROM m RETURNING 1),"
           " c AS (SELECT count(*) AS n, max(t) AS t, (array_agg(k ORDER BY t DESC, k DESC))[1] AS k FROM b),"
           f" u AS (UPDATE {log} SET records_archived = records_archived + (SELECT count(*) FROM i),"
           " batches = batches + 1, cursor_ts = COALESCE(c.t, cursor_ts),"
           " cursor_key = COALESCE(CAST(c.k AS text), cursor_key),"
           " heartbeat_at = now() FROM c WHERE job_id = CAST(:job AS uuid)"
           " RETURNING c.n, cursor_ts, cursor_key) SELECT * FROM u")
    return sql, stmts.params


def run_one_statement(db: Database, policy: Policy, settings: Settings, batch_size: int) -> JobRun:
    """Every eligible row, ``batch_size`` at a time, one statement a batch; the run's time is its
    batches' (as the engine's side of the comparison, ``scenarios.run_batches``)."""
    job = Archiver(db, policy, settings).start(fixed_batch_size=batch_size, trigger="bench-one-statement")
    first, params = statement(db, policy, settings, first=True)
    following, _ = statement(db, policy, settings, first=False)
    db.prepare(first, following)
    values = {"n": batch_size, "by": policy.archived_by, "reason": policy.archive_reason, "job": job.id, **params}
    batches: list[Batch] = []
    archived, cursor = 0, None
    while True:
        started = time.perf_counter()
        if cursor is None:
            n, ts, key = db.run(first, **values)[0]
        else:
            n, ts, key = db.run(following, cur_ts=cursor[0], cur_key=cursor[1], **values)[0]
        ms = (time.perf_counter() - started) * 1000
        batches.append(Batch(0.0, ms, int(n), int(n)))
        if not n:
            break
        archived, cursor = archived + int(n), (ts, key)
    return JobRun(batch_size, archived, sum(b.ms for b in batches) / 1000, 1, "succeeded", batches, job.id)


def main() -> int:
    """`python -m bench.onestatement`: only this comparison, ROUNDS rounds at SIZES on the stock server."""
    import os
    import statistics
    from functools import partial

    from archiver.config import load_policy, load_settings
    from archiver.observability import logger

    from . import report
    from .harness import Bench, env_int, env_ints, say
    from .scenarios import run_batches
    from .server import open_stock_server

    logger.setLevel("WARNING")
    rows, rounds, sizes = env_int("ROWS", 1_000_000), env_int("ROUNDS", 3), env_ints("SIZES", (1000, 5000))
    policy, settings = load_policy({}), load_settings({})
    bench = Bench(open_stock_server(policy.timezone), policy, settings, rows, templates=("arrival",))
    bench.seed()
    found: dict[tuple[str, int], list[float]] = {}
    try:
        for r in range(rounds):
            for n in sizes:
                pair = [("engine", run_batches), ("one statement", run_one_statement)]
                for name, fn in pair if r % 2 == 0 else pair[::-1]:
                    run = bench.scenario(f"{name.replace(' ', '_')}_{n}", "arrival",
                                         partial(fn, policy=policy, settings=settings, batch_size=n))
                    found.setdefault((name, n), []).append(run.rows_per_s)
    finally:
        bench.cleanup()
    print(f"\n{rows:,} customers, stock server over TCP, {rounds} rounds, nproc {os.cpu_count()}; rows/s of the"
          f" batches (median, rounds); command: ROWS={rows} ROUNDS={rounds} python -m bench.onestatement")
    print(report.table(["batch", "engine", "one statement", "ratio", "ratio by round"],
                       [[n, statistics.median(found[("engine", n)]), statistics.median(found[("one statement", n)]),
                         round(statistics.median(o / e for o, e in zip(found[("one statement", n)],
                                                                    found[("engine", n)], strict=True)), 2),
                         ", ".join(f"{o / e:.2f}" for o, e in zip(found[("one statement", n)], found[("engine", n)],
                                                                   strict=True))]
                        for n in sizes]))
    say("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
