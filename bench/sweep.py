"""Batch size against throughput and batch time, to choose the default. Not part of `make bench`.

Each batch size works on its own fresh clone of one seeded table (``ROWS``, default 1,000,000;
``SIZES``, default 250,500,1000,2000,5000), and the runs take turns batch by batch: one batch
of each size in rotation, so the drift of a shared machine falls on every size alike. A size's
throughput is its rows over the sum of its own batch times. The single-statement limit runs
before and after the rotation; both are shown. Writes results/sweep.json.
"""

from __future__ import annotations

import os
import sys
import threading
from functools import partial

from archiver.config import Policy, Settings, load_policy, load_settings
from archiver.db import Database
from archiver.engine import Archiver, BatchResult
from archiver.jobs import Job
from archiver.observability import logger

from . import report
from .harness import Bench, env_int, env_ints, say
from .scenarios import Batch, JobRun, run_limit
from .server import open_server

SIZES = (250, 500, 1000, 2000, 5000)


class Rotation:
    """One worker at a time, in a fixed order; a finished worker leaves the rotation."""

    def __init__(self, names: list[int]) -> None:
        self.order = list(names)
        self.at = 0
        self.cond = threading.Condition()

    def wait(self, name: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.order[self.at] == name)

    def pass_on(self, name: int, leave: bool = False) -> None:
        with self.cond:
            i = self.order.index(name)
            if leave:
                self.order.pop(i)
                self.at = i % len(self.order) if self.order else 0
            else:
                self.at = (i + 1) % len(self.order)
            self.cond.notify_all()


def _worker(db: Database, policy: Policy, settings: Settings, size: int, turns: Rotation,
            out: dict[int, JobRun], errors: list[BaseException]) -> None:
    batches: list[Batch] = []

    def on_batch(_job: Job, result: BatchResult) -> None:
        batches.append(Batch(0.0, result.ms, result.locked, result.moved))
        turns.pass_on(size)
        turns.wait(size)

    try:
        turns.wait(size)
        archiver = Archiver(db, policy, settings)
        job = archiver.start(batch_size=size, trigger="bench-sweep")
        outcome = archiver.run_hop(job.id, owner="bench-sweep", hop=1, on_batch=on_batch)
        seconds = sum(b.ms for b in batches) / 1000
        state = outcome.job.state if outcome.job else "unknown"
        out[size] = JobRun(size, outcome.archived, seconds, 1, state, batches)
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        errors.append(exc)
    finally:
        turns.pass_on(size, leave=True)


def rotate(bench: Bench, sizes: list[int]) -> dict[int, JobRun]:
    names = {n: f"bench_sweep_{n}" for n in sizes}
    dbs = {n: bench.server.create(names[n], template=bench.template("arrival")) for n in sizes}
    bench.server.checkpoint()
    turns = Rotation(sizes)
    out: dict[int, JobRun] = {}
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_worker, args=(dbs[n], bench.policy, bench.settings, n, turns, out, errors))
               for n in sizes]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for n, db in dbs.items():
            db.close()
            bench.server.drop(names[n])
    if errors:
        raise errors[0]
    return out


def main() -> int:
    logger.setLevel("WARNING")
    rows = env_int("ROWS", 1_000_000)
    sizes = env_ints("SIZES", SIZES)
    policy, settings = load_policy({}), load_settings({})
    bench = Bench(open_server(os.environ, policy.timezone), policy, settings, rows, templates=("arrival",))
    bench.seed()
    limit_run = partial(run_limit, policy=policy, settings=settings)
    try:
        before = bench.scenario("limit", "arrival", limit_run)
        runs = rotate(bench, sizes)
        say(f"rotation of batch sizes {', '.join(map(str, sizes))} done")
        after = bench.scenario("limit", "arrival", limit_run)
    finally:
        bench.cleanup()
    limit = (before.rows_per_s + after.rows_per_s) / 2
    out = []
    for n in sizes:
        run = runs[n]
        times = sorted(b.ms for b in run.working)
        out.append({**run.summary(), "limit_ratio": round(run.rows_per_s / limit, 3),
                    "p99_batch_ms": round(report.percentile(times, 99), 1),
                    "ms_per_1000_rows": round(run.mean_ms / run.batch_size * 1000, 1)})
    print(f"\nbatch size sweep, {rows:,} customers, arrival layout, nproc {os.cpu_count()}; batches in rotation; "
          f"limit {before.rows_per_s:,.0f} rows/s before, {after.rows_per_s:,.0f} after")
    print(report.table(["batch", "rows/s", "vs limit", "mean ms", "p99 ms", "worst ms", "ms/1000 rows", "flatness"],
                       [[r["batch_size"], r["rows_per_s"], r["limit_ratio"], r["mean_batch_ms"], r["p99_batch_ms"],
                         r["worst_batch_ms"], r["ms_per_1000_rows"], r["flatness"]] for r in out]))
    path = report.write_json({"rows": rows, "nproc": os.cpu_count(), "runs": out,
                              "limit_rows_per_s_before": round(before.rows_per_s),
                              "limit_rows_per_s_after": round(after.rows_per_s)}, "sweep.json")
    say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
