"""Batch-time targets against live traffic, to choose the default target. Not part of `make bench`.

For each target in ``TARGETS`` (ms, default 25,10,7), the live-traffic scenario of `make bench`
(``bench.live.run_live``: traffic alone, then beside the default job) on a fresh clone of one
seeded table (``ROWS``, default 1,000,000), in interleaved rounds (``ROUNDS``, default 4; the order
reverses every round), so the drift of a shared machine falls on every target alike. Prints each
round and, per target, the median p99 ratio, its p95 during the job and the job's rows/s against
the single statement, which runs once per round. Writes results/live_sweep.json.
"""

from __future__ import annotations

import os
import statistics
import sys
from functools import partial
from typing import Any

from archiver.config import load_policy, load_settings
from archiver.observability import logger

from . import report
from .harness import Bench, env_int, env_ints, say
from .live import BASELINE_S, run_live
from .report import percentile
from .scenarios import DEFAULT_RUN, run_limit
from .server import open_server

TARGETS = (25, 10, 7)


def main() -> int:
    logger.setLevel("WARNING")
    rows, rounds = env_int("ROWS", 1_000_000), env_int("ROUNDS", 4)
    targets = env_ints("TARGETS", TARGETS)
    policy = load_policy({})
    server = open_server(os.environ, policy.timezone)
    bench = Bench(server, policy, load_settings({}), rows, templates=("arrival",))
    bench.seed()
    url = server.url(bench.clone_name("live"))
    runs: list[dict[str, Any]] = []
    try:
        for r in range(1, rounds + 1):
            limit = bench.scenario("limit", "arrival", partial(run_limit, policy=policy, settings=bench.settings))
            for target in targets if r % 2 else list(reversed(targets)):
                settings = load_settings({"ARCHIVER_TARGET_BATCH_MS": str(target)})
                live = bench.scenario("live", "arrival", partial(
                    run_live, url=url, policy=policy, settings=settings, batch_size=DEFAULT_RUN, baseline_s=BASELINE_S,
                    rate=env_int("LIVE_RATE", 200)))
                s = live.summary()
                runs.append({"round": r, "target_ms": target, "p99_ratio": s["p99_ratio"],
                             "p99_without_ms": s["p99_without_ms"], "p99_during_ms": s["p99_during_ms"],
                             "p95_without_ms": round(percentile(live.without, 95), 2),
                             "p95_during_ms": round(percentile(live.during, 95), 2),
                             "rows_per_s": round(live.job.rows_per_s),
                             "limit_ratio": round(live.job.rows_per_s / limit.rows_per_s, 3),
                             "mean_batch_ms": round(live.job.mean_ms, 1), "lost_updates": live.lost_updates})
                say(str(runs[-1]))
    finally:
        bench.cleanup()
    summary = [[t, *(statistics.median(x[k] for x in runs if x["target_ms"] == t)
                     for k in ("p99_ratio", "p95_during_ms", "rows_per_s", "limit_ratio")),
                ", ".join(f"{x['p99_ratio']:g}" for x in runs if x["target_ms"] == t)] for t in targets]
    print(f"\nlive traffic beside the default job, by batch-time target; {rows:,} customers, {rounds} rounds,"
          f" nproc {os.cpu_count()} (medians over rounds)")
    print(report.table(["target ms", "p99 ratio", "p95 during ms", "rows/s", "vs limit", "p99 ratio by round"],
                       summary))
    report.write_json({"rows": rows, "rounds": rounds, "runs": runs}, "live_sweep.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
