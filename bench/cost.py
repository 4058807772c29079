"""The cost model for AWS Lambda: invocations and GB-seconds to archive N rows, from the measured
time per batch and the archive function's time budget per hop (see bench/README.md)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from archiver.config import Settings
from archiver.steering import kept_back_ms

from .scenarios import JobRun

MEMORY_MB = 512  # the archive function's memory (infra/config.py, archive_memory_mb)
PRICE_PER_GB_S = 0.0000166667  # USD, x86, us-east-1
PRICE_PER_REQUEST = 0.0000002  # USD 0.20 per million
# Assumptions the local run cannot measure: the network between Lambda and the database, and a
# cold start (runtime init, imports, secret, TLS connection) on every hop.
RTT_MS = 0.5
ROUND_TRIPS_PER_BATCH = 4  # begin, lock (the job row, then the rows), move and count, commit
COLD_START_S = 1.5


@dataclass(frozen=True)
class Estimate:
    rows: int
    batches: int
    batches_per_hop: int
    invocations: int
    seconds: float
    gb_seconds: float
    usd: float


def estimate(rows: int, run: JobRun, settings: Settings, measured_rows: int) -> Estimate:
    """Archive ``rows`` rows at the batch size, batch time and per-run overhead of ``run``."""
    batch_s = run.mean_ms / 1000 + ROUND_TRIPS_PER_BATCH * RTT_MS / 1000
    rows_per_batch = run.archived / max(len(run.working), 1)
    batches = math.ceil(rows / rows_per_batch)
    usable_s = settings.hop_seconds - kept_back_ms(settings, run.worst_ms) / 1000 - COLD_START_S
    per_hop = max(1, math.floor(usable_s / batch_s))
    invocations = math.ceil(batches / per_hop)
    # Start, eligible count and finish, measured here, grow with the table: scaled by rows.
    overhead_s = max(run.seconds - sum(b.ms for b in run.batches) / 1000, 0.0) * rows / max(measured_rows, 1)
    seconds = batches * batch_s + overhead_s + invocations * COLD_START_S
    gb_s = seconds * MEMORY_MB / 1024
    return Estimate(rows, batches, per_hop, invocations, round(seconds, 1), round(gb_s, 1),
                    round(gb_s * PRICE_PER_GB_S + invocations * PRICE_PER_REQUEST, 5))


def model(run: JobRun, settings: Settings) -> dict[str, Any]:
    return {"assumptions": {"memory_mb": MEMORY_MB, "hop_seconds": settings.hop_seconds,
                            "reserve_ms": settings.reserve_ms, "rtt_ms": RTT_MS,
                            "round_trips_per_batch": ROUND_TRIPS_PER_BATCH, "cold_start_s": COLD_START_S,
                            "usd_per_gb_s": PRICE_PER_GB_S, "usd_per_request": PRICE_PER_REQUEST,
                            "batch_size": run.batch_size, "mean_batch_ms": round(run.mean_ms, 1),
                            "worst_batch_ms": round(run.worst_ms, 1)},
            "estimates": [asdict(estimate(n, run, settings, run.archived)) for n in (1_000_000, 10_000_000)]}
