"""`python -m bench.breakdown`: where the time of a batch goes. Runs the engine's batches at a few
fixed sizes (``SIZES``, default 10 and 1000) on a fresh clone of the plain arrival layout and times
every statement the batch sends, so the fixed cost per batch (what a 10-row batch costs) and the cost
per row can be read apart. ``ROWS`` customers (default 1,000,000), ``BATCHES`` per size (300).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from archiver.config import load_policy, load_settings
from archiver.db import Database
from archiver.engine import Archiver
from archiver.observability import logger

from . import report
from .harness import Bench, env_int, env_ints, say
from .server import open_server


@contextmanager
def timed_statements(times: dict[str, list[float]]) -> Iterator[None]:
    """Time every ``Database.run`` call, keyed by the statement's first words."""
    original = Database.run

    def run(self: Database, sql: str, **params: Any) -> list[list[Any]]:
        started = time.perf_counter()
        try:
            return original(self, sql, **params)
        finally:
            times[_label(sql)].append((time.perf_counter() - started) * 1000)

    Database.run = run  # type: ignore[method-assign]
    try:
        yield
    finally:
        Database.run = original  # type: ignore[method-assign]


def _label(sql: str) -> str:
    words = " ".join(sql.split())
    for key, label in (("DELETE FROM", "move (re-check, delete, insert, count)"),
                       ("SKIP LOCKED", "lock the job row, then the batch's rows"),
                       ("UPDATE", "count a batch that moved nothing")):
        if key in words:
            return label
    return words[:40]


def measure(bench: Bench, size: int, batches: int) -> tuple[float, dict[str, list[float]]]:
    policy, settings = bench.policy, bench.settings  # an explicit batch size: the run does not adapt
    times: dict[str, list[float]] = defaultdict(list)

    def scenario(db: Database) -> float:
        archiver = Archiver(db, policy, settings)
        job = archiver.start(batch_size=size, trigger="bench")
        with timed_statements(times):
            outcome = archiver.run_hop(job.id, owner="bench", hop=None, max_batches=batches)
        return statistics.median(outcome.batch_ms)  # each batch's transaction, BEGIN to COMMIT

    per_batch = bench.scenario(f"breakdown_{size}", "arrival", scenario)
    return per_batch, times


def main() -> int:
    logger.setLevel("WARNING")
    rows = env_int("ROWS", 1_000_000)
    sizes = env_ints("SIZES", (10, 1000))
    batches = env_int("BATCHES", 300)
    policy = load_policy({})
    bench = Bench(open_server(os.environ, policy.timezone), policy, load_settings({}), rows, templates=("arrival",))
    bench.seed()
    try:
        results = {size: measure(bench, size, batches) for size in sizes}
    finally:
        bench.cleanup()
    labels = sorted({k for _, t in results.values() for k in t if len(t[k]) >= batches},
                    key=lambda k: -statistics.median(results[sizes[-1]][1].get(k, [0.0])))
    rows_out: list[list[object]] = [
        [label, *(round(statistics.median(results[s][1].get(label, [0.0])), 2) for s in sizes)] for label in labels]
    rows_out.append(["whole batch (its transaction)", *(round(results[s][0], 2) for s in sizes)])
    print(f"\n{rows:,} customers, arrival layout, {batches} batches per size, nproc {os.cpu_count()};"
          " median ms per statement")
    print(report.table(["statement", *(f"batch {s}" for s in sizes)], rows_out))
    if len(sizes) >= 2:
        small, big = sizes[0], sizes[-1]
        per_row = (results[big][0] - results[small][0]) / (big - small)
        fixed = results[small][0] - small * per_row
        print(f"fixed cost per batch ~{fixed:.1f} ms, then ~{per_row * 1000:.1f} us a row")
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
