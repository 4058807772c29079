"""`make bench-scale`: the job at 250,000, 1,000,000 and 4,000,000 customers (``SCALE_ROWS`` to
change), each in a process of its own so that its peak memory is its own: time per archived row
and peak resident memory at each size; then the restore of that run, time per restored row (not a
target: a restore should cost what its rows cost, whatever the size). Writes results/scale.json.

Run as ``python -m bench.scale --worker URL BATCH`` it is that process: it runs the job once, then
its restore, and prints one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

from archiver.config import load_policy, load_settings
from archiver.observability import logger
from archiver.restore import Restorer

from . import data, report
from .harness import env_ints, say
from .report import Target
from .scenarios import DEFAULT_RUN, batch_label, run_job
from .server import ROOT, open_server

SIZES = (250_000, 1_000_000, 4_000_000)
PER_ROW_BOUND = 1.3
MEMORY_BOUND = 1.1


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker(url: str, batch_size: int) -> None:
    from dataclasses import replace

    from archiver.db import Database, params_from_url

    logger.setLevel("WARNING")
    policy, settings = load_policy({}), load_settings({})
    db = Database(replace(params_from_url(url), timezone=policy.timezone))
    db.run("SELECT 1")
    before = _peak_mb()
    run = run_job(db, policy, settings, batch_size)
    peak = _peak_mb()
    started = time.perf_counter()
    _, restored = Restorer(db, policy).restore(job_id=run.job_id)
    restore_s = time.perf_counter() - started
    print(json.dumps({**run.summary(), "rss_before_job_mb": round(before, 1), "peak_rss_mb": round(peak, 1),
                      "restored": restored.restored, "restore_seconds": round(restore_s, 2)}))


def measure(rows: int, batch_size: int) -> dict[str, Any]:
    policy = load_policy({})
    server = open_server(os.environ, policy.timezone)
    name = "bench_scale"
    try:
        db = server.create(name)
        try:
            data.seed(db, policy, rows, "arrival")
        finally:
            db.close()
        server.checkpoint()
        os.sync()  # the seed's files, written back during the job, would be charged to it
        proc = subprocess.run([sys.executable, "-m", "bench.scale", "--worker", server.url(name), str(batch_size)],
                              cwd=ROOT, capture_output=True, text=True, check=True)
    finally:
        server.drop(name)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["rows"] = rows
    out["us_per_row"] = round(out["seconds"] / max(out["archived"], 1) * 1e6, 1)
    out["restore_us_per_row"] = round(out["restore_seconds"] / max(out["restored"], 1) * 1e6, 1)
    say(f"{rows:>10,} customers: {out['archived']:,} archived in {out['seconds']} s, {out['us_per_row']} us/row, "
        f"peak RSS {out['peak_rss_mb']} MB; {out['restored']:,} restored in {out['restore_seconds']} s")
    return out


def main() -> int:
    sizes = env_ints("SCALE_ROWS", SIZES)
    batch_size = DEFAULT_RUN  # the run as the schedule starts it: adaptive batch size
    runs = [measure(n, batch_size) for n in sizes]
    small, big = runs[0], runs[-1]

    def big_over_small(key: str) -> float:
        return round(big[key] / max(small[key], 1e-9), 3)

    checks = [
        Target(f"time per row at {big['rows']:,} / at {small['rows']:,}", big_over_small("us_per_row"),
               PER_ROW_BOUND, at_most=True),
        Target(f"peak memory at {big['rows']:,} / at {small['rows']:,}", big_over_small("peak_rss_mb"),
               MEMORY_BOUND, at_most=True),
    ]
    print(f"\nscale, job {batch_label(batch_size)}, nproc {os.cpu_count()}")
    print(report.table(["customers", "archived", "seconds", "us/row", "rows/s", "mean ms", "worst ms", "flatness",
                        "RSS before MB", "peak RSS MB", "restore s", "restore us/row"],
                       [[r["rows"], r["archived"], r["seconds"], r["us_per_row"], r["rows_per_s"], r["mean_batch_ms"],
                         r["worst_batch_ms"], r["flatness"], r["rss_before_job_mb"], r["peak_rss_mb"],
                         r["restore_seconds"], r["restore_us_per_row"]] for r in runs]))
    for t in checks:
        d = t.as_dict()
        print(f"{d['result']}  {d['name']}: {d['value']:g} (target {d['target']})")
    restore_ratio = big_over_small("restore_us_per_row")
    print(f"      restore, time per row at {big['rows']:,} / at {small['rows']:,}: {restore_ratio:g} (not a target)")
    path = report.write_json({"batch_size": batch_size, "nproc": os.cpu_count(), "runs": runs,
                              "restore_per_row_ratio": restore_ratio,
                              "targets": [t.as_dict() for t in checks]}, "scale.json")
    say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main())
