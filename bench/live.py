"""Live traffic beside the job: a second process updates and reads random customers at a fixed
rate, before and while the job runs; its latency with and without the job, and a proof that no
committed update was lost.

Each update adds 1.00 to ``amount_due`` and commits on its own. The process counts the updates
that found their row; after the run the sum of ``amount_due`` over the live table and the archive
must have grown by exactly that much. Half of the operations go to customers past the cutoff (the
rows the job moves and locks), half to younger ones. Latency is measured from each operation's
scheduled time, so a stall also delays the operations queued behind it.

The same traffic also runs beside a control, ``disk_writer``: a plain process that writes the job's
WAL bytes to a file at the job's cadence, with no database work at all. What the control costs the
traffic is what this machine's disk makes of those bytes, whoever writes them.

Run as a module (``python -m bench.live --url ...``) this is the traffic process itself: it
prints ``ready``, works until its stdin closes, then writes its measurements as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from archiver.config import Policy, Settings
from archiver.db import Database, params_from_url
from archiver.identifiers import qualified, quote

from .cpus import SELF, CpuSplit, as_text, parse, pinned
from .report import percentile
from .scenarios import JobRun, run_job
from .server import ROOT

WARMUP_S = 2.0
# The traffic alone before the job (the first WARMUP_S left out): long enough that the baseline
# p99 is not one stall's.
BASELINE_S = 20.0
# The control writes in steps of this many ms, each step's bytes then one fdatasync: the job
# commits (and so syncs its WAL) about as often at its 10 ms target.
CONTROL_STEP_MS = 10
CONTROL_FILE_BYTES = 256 << 20  # the control's file, overwritten round and round


@dataclass
class LiveRun:
    job: JobRun
    rate: int
    without: list[float]  # latencies (ms) of operations scheduled before the job
    during: list[float]  # ... and while it ran
    applied: int  # committed updates that found their row
    grown: Decimal  # growth of the sum of amount_due, live and archive together
    rows_before: int
    rows_after: int
    errors: int
    wal_bytes: int = 0  # WAL the server wrote while the job ran (the traffic's own included)

    @property
    def lost_updates(self) -> int:
        return self.applied - int(self.grown)

    def summary(self) -> dict[str, Any]:
        def pct(xs: list[float], q: int) -> float:
            return round(percentile(xs, q), 2)

        return {"rate_ops_per_s": self.rate, **pooled([self]),
                "p50_without_ms": pct(self.without, 50), "p50_during_ms": pct(self.during, 50),
                "updates_applied": self.applied, "lost_updates": self.lost_updates,
                "rows_before": self.rows_before, "rows_after": self.rows_after, "errors": self.errors,
                "job": self.job.summary()}


def pooled(runs: list[LiveRun]) -> dict[str, float]:
    """p99 of every operation of every round during the job, over that of every operation without it.

    One round's window holds ~1,000 operations during the job (the job takes ~5 s at 1M rows), so
    its p99 is its ~10th slowest operation: with nothing changed, rounds' ratios spread x1.5-3.5.
    The rounds run the same load beside the same job; pooled, the p99 rests on ~50 operations of
    ~5,000, and a disk stall that queues ~20 operations in one round no longer decides it alone.
    """
    without = [lat for run in runs for lat in run.without]
    during = [lat for run in runs for lat in run.during]
    p99_without, p99_during = round(percentile(without, 99), 2), round(percentile(during, 99), 2)
    return {"ops_without_job": len(without), "ops_during_job": len(during), "p99_without_ms": p99_without,
            "p99_during_ms": p99_during, "p99_ratio": round(p99_during / max(p99_without, 1e-9), 2),
            "p99_added_ms": round(p99_during - p99_without, 2)}


def wal_rate(runs: list[LiveRun]) -> float:
    """WAL bytes a second while the job ran, in the median round: what the control writes."""
    return statistics.median(run.wal_bytes / run.job.seconds for run in runs if run.job.seconds)


def _totals(db: Database, policy: Policy) -> tuple[Decimal, int]:
    """Sum of amount_due (exact) and row count over the live table and the archive together."""
    parts = [qualified(policy.schema_name, t) for t in (policy.live_table, policy.archive_table)]
    union = " UNION ALL ".join(f"SELECT amount_due FROM {t}" for t in parts)
    total, rows = db.run(f"SELECT COALESCE(sum(amount_due), 0), count(*) FROM ({union}) u")[0]
    return Decimal(total), int(rows)


@contextmanager
def disk_writer(directory: Path, bytes_per_s: float, seconds: float,
                file_bytes: int = CONTROL_FILE_BYTES) -> Iterator[Callable[[Database], JobRun]]:
    """The control beside the traffic: ``bytes_per_s`` written to a file in ``directory`` for
    ``seconds``, in steps of CONTROL_STEP_MS each closed by an fdatasync; no database work.

    The file is written in full and synced first, so the measured writes overwrite blocks, as the
    WAL's recycled segments do (a write that extends a file also commits the file system's journal)."""
    path = directory / f"control-writer-{os.getpid()}"
    # Whole 8 kB pages, as PostgreSQL writes its WAL.
    step = max(1, round(bytes_per_s * CONTROL_STEP_MS / 1000 / 8192)) * 8192
    span = max(file_bytes, step)
    with path.open("wb") as f:
        for _ in range(0, span, 1 << 20):
            f.write(bytes(1 << 20))
        f.flush()
        os.fsync(f.fileno())

    def write(_db: Database) -> JobRun:
        chunk, slots = os.urandom(step), span // step
        fd = os.open(path, os.O_WRONLY)
        started, i = time.perf_counter(), 0
        try:
            while time.perf_counter() - started < seconds:
                wait = started + i * CONTROL_STEP_MS / 1000 - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                os.pwrite(fd, chunk, (i % slots) * step)
                os.fdatasync(fd)
                i += 1
        finally:
            os.close(fd)
        return JobRun(0, 0, time.perf_counter() - started, 0, "control")

    try:
        yield write
    finally:
        path.unlink(missing_ok=True)


def run_live(db: Database, url: str, policy: Policy, settings: Settings, batch_size: int, baseline_s: float,
             rate: int, beside: Callable[[Database], JobRun] | None = None, cpus: CpuSplit | None = None) -> LiveRun:
    """Traffic alone for ``baseline_s``, then the job (or ``beside``, a control) beside it; ``url``
    reaches ``db`` from the traffic process. With ``cpus``, the job's thread and backend run on
    ``cpus.job`` and the traffic's process and backend on ``cpus.traffic``, for the whole round."""
    live, age = qualified(policy.schema_name, policy.live_table), quote(policy.age_column)
    cutoff_days = policy.retention_days
    old = db.run(f"SELECT min(id), max(id) FROM {live} WHERE {age} < now() - make_interval(days => :d)",
                 d=cutoff_days + 1)[0]
    young = db.run(f"SELECT min(id), max(id) FROM {live} WHERE {age} > now() - make_interval(days => :d)",
                   d=cutoff_days - 1)[0]
    grown_from, rows_before = _totals(db, policy)
    job_side = pinned(cpus.job, SELF, int(db.scalar("SELECT pg_backend_pid()"))) if cpus else nullcontext()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "traffic.json"
        cmd = [sys.executable, "-m", "bench.live", "--url", url, "--rate", str(rate),
               "--old", f"{old[0]}:{old[1]}", "--young", f"{young[0]}:{young[1]}", "--table", live, "--out", str(out)]
        if cpus:
            cmd += ["--cpus", as_text(cpus.traffic)]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            with job_side:
                assert proc.stdout is not None and proc.stdin is not None
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError("the traffic process did not start")
                time.sleep(baseline_s)
                lsn_from = db.scalar("SELECT pg_current_wal_lsn()::text")
                job_from = time.time()
                job = beside(db) if beside is not None else run_job(db, policy, settings, batch_size)
                job_to = time.time()
                wal = int(db.scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), CAST(:a AS pg_lsn))", a=lsn_from))
                time.sleep(1.0)
                proc.stdin.close()
                proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        report = json.loads(out.read_text())
    first = report["started"] + WARMUP_S
    without = [lat for due, lat in report["ops"] if first <= due < job_from]
    during = [lat for due, lat in report["ops"] if job_from <= due <= job_to]
    grown_to, rows_after = _totals(db, policy)
    return LiveRun(job, rate, without, during, int(report["applied"]), grown_to - grown_from, rows_before,
                   rows_after, int(report["errors"]), wal)


# -- the traffic process ---------------------------------------------------------------------
def _traffic(db: Database, table: str, rate: int, old: tuple[int, int], young: tuple[int, int],
             stop: threading.Event) -> dict[str, Any]:
    update = f"UPDATE {table} SET amount_due = amount_due + 1, updated_at = now() WHERE id = :k"
    read = f"SELECT id, name, amount_due, status, updated_at FROM {table} WHERE id = :k"
    rng = random.Random(6)
    ops: list[tuple[float, float]] = []
    applied = errors = 0
    started = time.time()
    i = 0
    while not stop.is_set():
        due = started + i / rate
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)
        lo, hi = old if i % 4 < 2 else young
        try:
            if i % 2 == 0:
                db.run(update, k=rng.randint(lo, hi))
                applied += db.row_count
            else:
                db.run(read, k=rng.randint(lo, hi))
        except Exception:  # noqa: BLE001 - a failed operation is counted and reported, never hidden
            errors += 1
            db.close()
        ops.append((due, (time.time() - due) * 1000))
        i += 1
    return {"started": started, "applied": applied, "errors": errors, "ops": ops}


def _span(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition(":")
    return int(lo), int(hi)


def main() -> None:
    parser = argparse.ArgumentParser(description="live traffic for the benchmark (see bench/live.py)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=int, required=True, help="operations per second")
    parser.add_argument("--old", type=_span, required=True, help="id range of customers past the cutoff")
    parser.add_argument("--young", type=_span, required=True, help="id range of younger customers")
    parser.add_argument("--table", required=True, help="the live table, schema-qualified and quoted")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cpus", type=parse, help="the CPUs for this process and its backend (bench/cpus.py)")
    args = parser.parse_args()
    db = Database(replace(params_from_url(args.url), application_name="bench-traffic"))
    if args.cpus:
        # Before the stdin thread starts, which then inherits the affinity.
        os.sched_setaffinity(SELF, args.cpus)
        os.sched_setaffinity(int(db.scalar("SELECT pg_backend_pid()")), args.cpus)
    stop = threading.Event()
    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    db.run("SELECT 1")
    print("ready", flush=True)
    args.out.write_text(json.dumps(_traffic(db, args.table, args.rate, args.old, args.young, stop)))
    db.close()


if __name__ == "__main__":
    main()
