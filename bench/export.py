"""`python -m bench.export`: the export's rows/s (writing Parquet, then verifying it) beside the
archive job's rows/s on the same data, as ratios, over ROUNDS rounds (default 3) on the bench's data
(``arrival`` layout, ROWS customers, default 200,000). Each round clones the seeded template,
runs the archive job (the default run), ages the archive past the purge retention, then exports
it to a local directory. Writes results/export.json.

Verification is timed twice: inside the export (as it always runs) and once more on its own,
which is the figure reported; writing = the export's time minus that. The machine is shared:
read the ratios (each round's sides run back to back), median and spread over rounds.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from archiver.cold_storage import LocalStorage
from archiver.config import load_policy, load_settings
from archiver.db import Database
from archiver.export import Exporter
from archiver.identifiers import qualified

from .harness import Bench, env_int, say
from .scenarios import DEFAULT_RUN, run_job
from .server import ROOT, open_server


def one_round(bench: Bench, db: Database) -> dict[str, Any]:
    policy = bench.policy
    job = run_job(db, policy, bench.settings, DEFAULT_RUN)
    archive = qualified(policy.schema_name, policy.archive_table)
    db.run(f"UPDATE {archive} SET archived_at = archived_at - interval '800 days'")
    db.run(f"VACUUM ANALYZE {archive}")
    with tempfile.TemporaryDirectory() as tmp:
        exporter = Exporter(db, policy, LocalStorage(Path(tmp)))
        started = time.perf_counter()
        run, owner = exporter.begin(policy.purge_after_days or 730)
        result = exporter.run(run, owner)
        export_s = time.perf_counter() - started
        started = time.perf_counter()
        problems = exporter.verify(run.id)
        verify_s = time.perf_counter() - started
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*.parquet"))
    assert result.verified and not problems and result.exported == job.archived
    archive_rate = job.archived / job.seconds
    write_rate = result.exported / max(export_s - verify_s, 1e-9)
    verify_rate = result.exported / verify_s
    both_rate = result.exported / export_s
    return {"archived": job.archived, "files": result.files, "parquet_mb": round(size / 2**20, 1),
            "archive_rows_per_s": round(archive_rate), "export_rows_per_s": round(write_rate),
            "verify_rows_per_s": round(verify_rate), "export_with_verify_rows_per_s": round(both_rate),
            "export_vs_archive": round(write_rate / archive_rate, 2),
            "verify_vs_archive": round(verify_rate / archive_rate, 2),
            "export_with_verify_vs_archive": round(both_rate / archive_rate, 2)}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def main() -> int:
    rows, rounds = env_int("ROWS", 200_000), env_int("ROUNDS", 3)
    policy, settings = load_policy({}), load_settings({})
    bench = Bench(open_server(os.environ, policy.timezone), policy, settings, rows, templates=("arrival",))
    say(f"seeding {rows:,} customers")
    bench.seed()
    results = []
    try:
        for i in range(rounds):
            results.append(bench.scenario(f"export_{i}", "arrival", lambda db: one_round(bench, db)))
            say(f"round {i + 1}: {json.dumps(results[-1])}")
    finally:
        bench.cleanup()
    keys = [k for k in results[0] if k.endswith("_per_s") or k.endswith("_vs_archive")]
    out = {"rows": rows, "rounds": rounds, **{k: spread([r[k] for r in results]) for k in keys}, "each": results}
    (ROOT / "bench" / "results" / "export.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"{'':34} median    (min-max over {rounds} rounds)")
    for k in keys:
        s = out[k]
        print(f"{k:34} {s['median']:>9,}  ({s['min']:,}-{s['max']:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
