"""`python -m bench.export`: the export's rows/s (writing Parquet, then verifying it) beside the
archive job's rows/s, on the bench's data (``arrival`` layout, ROWS customers, default 200,000),
one run on one server. Writes results/export.json.

Verification is timed twice: inside the export (as it always runs) and once more on its own,
which is the figure reported; writing = the export's time minus that.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from archiver.cold_storage import LocalStorage
from archiver.config import load_policy, load_settings
from archiver.export import Exporter
from archiver.identifiers import qualified

from . import data
from .harness import env_int, say
from .scenarios import DEFAULT_RUN, run_job
from .server import ROOT, open_server


def main() -> int:
    rows = env_int("ROWS", 200_000)
    policy, settings = load_policy({}), load_settings({})
    server = open_server(os.environ, policy.timezone)
    name = "bench_export"
    db = server.create(name)
    try:
        say(f"seeding {rows:,} customers")
        data.seed(db, policy, rows, "arrival")
        job = run_job(db, policy, settings, DEFAULT_RUN)
        archive = qualified(policy.schema_name, policy.archive_table)
        db.run(f"UPDATE {archive} SET archived_at = archived_at - interval '800 days'")
        db.run(f"VACUUM ANALYZE {archive}")
        with tempfile.TemporaryDirectory() as tmp:
            exporter = Exporter(db, policy, LocalStorage(Path(tmp)))
            started = time.perf_counter()
            run, owner = exporter.begin(policy.purge_after_days)
            result = exporter.run(run, owner)
            export_s = time.perf_counter() - started
            started = time.perf_counter()
            problems = exporter.verify(run.id)
            verify_s = time.perf_counter() - started
            size = sum(p.stat().st_size for p in Path(tmp).rglob("*.parquet"))
    finally:
        db.close()
        server.drop(name)
    assert result.verified and not problems
    out = {"rows": rows, "archived": job.archived, "archive_rows_per_s": round(job.archived / job.seconds),
           "exported": result.exported, "files": result.files, "parquet_mb": round(size / 2**20, 1),
           "export_rows_per_s": round(result.exported / max(export_s - verify_s, 1e-9)),
           "verify_rows_per_s": round(result.exported / verify_s),
           "export_with_verify_rows_per_s": round(result.exported / export_s)}
    (ROOT / "bench" / "results" / "export.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
