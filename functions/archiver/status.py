"""What the status API reports, without any HTTP: the weekly review, health, and starting a run.

The REST handler and the local server shape these answers; the run log's statements are the job
store's (``jobs.RunLogSummary`` for the aggregates read here).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Any

from . import events, grants
from .catalogue import table_exists
from .config import Policy, PolicySet, Settings
from .db import Database, check_writable
from .engine import Archiver
from .exceptions import DatabaseUnavailableError, SchemaError
from .identifiers import qualified
from .jobs import Job, JobStore, RunLogSummary
from .observability import logger

# Above this planner estimate a count(*) would take seconds of a 29-second API call: report
# pg_class.reltuples (refreshed by autovacuum's ANALYZE) instead, and say it is an estimate.
EXACT_COUNT_LIMIT = 1_000_000

_RELTUPLES_SQL = """
SELECT CAST(c.reltuples AS bigint) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :s AND c.relname = :t"""


def stats(db: Database, policy: Policy, days: int) -> dict[str, Any]:
    """Per-day archived totals, average run time and failures of the last ``days`` calendar days
    (the policy's time zone, today included), with the live and archive table row counts."""
    return {
        "table": policy.live_table, **history(db, policy, days),
        "tables": {"live": table_rows(db, policy.schema_name, policy.live_table),
                   "archive": table_rows(db, policy.schema_name, policy.archive_table)},
    }


def history(db: Database, policy: Policy, days: int, last_day: date | None = None) -> dict[str, Any]:
    """The run log's per-day figures of the policy's archive runs over ``days`` calendar days ending
    with ``last_day`` (default today, in the policy's time zone), newest first, and their totals."""
    if not table_exists(db, policy.schema_name, policy.log_table):
        raise SchemaError(f"run log {policy.schema_name}.{policy.log_table} does not exist: run migrate")
    summary = RunLogSummary(db, policy.schema_name, policy.log_table)
    per_day = [{**asdict(d), "day": d.day.isoformat()}
               for d in summary.daily_archive_totals(policy.key, policy.timezone, days, last_day)]
    finished = [(d["avg_duration_ms"], d["runs"]) for d in per_day if d["avg_duration_ms"] is not None]
    weight = sum(n for _, n in finished)
    totals = {
        "runs": sum(d["runs"] for d in per_day),
        "archived": sum(d["archived"] for d in per_day),
        "failures": sum(d["failures"] for d in per_day),
        "partial": sum(d["partial"] for d in per_day),
        "avg_duration_ms": round(sum(ms * n for ms, n in finished) / weight) if weight else None,
    }
    return {"days": days, "timezone": policy.timezone, "per_day": per_day, "totals": totals}


def table_rows(db: Database, schema: str, table: str, exact_limit: int = EXACT_COUNT_LIMIT) -> dict[str, Any]:
    """Row count of a table: exact below ``exact_limit`` estimated rows, the planner's estimate above."""
    name = f"{schema}.{table}"
    estimate = db.scalar(_RELTUPLES_SQL, s=schema, t=table)
    if estimate is None:
        return {"table": name, "exists": False, "rows": None, "exact": False}
    if estimate >= exact_limit:
        return {"table": name, "exists": True, "rows": int(estimate), "exact": False}
    # reltuples is -1 before the first ANALYZE: count then, whatever the size.
    rows = int(db.scalar(f"SELECT count(*) FROM {qualified(schema, table)}"))
    return {"table": name, "exists": True, "rows": rows, "exact": True}


def tables(policies: PolicySet) -> list[dict[str, Any]]:
    """Every table a policy archives, with its schedule (GET /tables)."""
    return [{"table": p.live_table, "archive_table": p.archive_table, "schedule_time": p.schedule_time,
             "mode": p.mode, "timezone": p.timezone, "retention_days": p.retention_days,
             "dry_run_until": p.dry_run_until.isoformat() if p.dry_run_until else None,
             "run_until": p.run_until, "purge_after_days": p.purge_after_days} for p in policies.policies]


def health(db: Database, policy: Policy | PolicySet) -> dict[str, Any]:
    """Database reachable, schema migrated (run log and every archive table exist), last successful
    run of any table, an active run of any table.

    ``status`` is ok, not_migrated or unavailable; it never raises for a database that is down.
    """
    policies = policy.policies if isinstance(policy, PolicySet) else (policy,)
    first = policies[0]
    out: dict[str, Any] = {"status": "unavailable", "database": False, "schema_migrated": False,
                           "missing_tables": [], "last_successful_run": None, "active_job_id": None}
    try:
        db.ensure_alive()
        out["database"] = True
        wanted = dict.fromkeys((first.log_table, *(p.archive_table for p in policies)))
        missing = [t for t in wanted if not table_exists(db, first.schema_name, t)]
        out["missing_tables"] = [f"{first.schema_name}.{t}" for t in missing]
        out["schema_migrated"] = not missing
        if first.log_table not in missing:
            summary = RunLogSummary(db, first.schema_name, first.log_table)
            last_ok, out["active_job_id"] = summary.last_success_and_active([p.key for p in policies])
            out["last_successful_run"] = last_ok.isoformat() if last_ok else None
    except DatabaseUnavailableError as exc:
        logger.warning("health check: database unreachable", extra={"error": str(exc)})
        return out
    out["status"] = "ok" if out["schema_migrated"] else "not_migrated"
    return out


def start_run(db: Database, policy: Policy, settings: Settings, invoker: events.Invoker, function_name: str,
              dry_run: bool = False, fixed_batch_size: int | None = None, max_replica_lag: float | None = None) -> Job:
    """Create the run (cutoffs pinned now) and start the archive function asynchronously.

    ``fixed_batch_size``: every batch of the run that size, no steering (see ``Archiver.start``).
    Raises AlreadyRunningError when a run is active, RunStartError (after marking the run
    failed) when the function cannot be invoked.
    """
    check_writable(db)  # a standby, a missing grant: refused before a run exists, as by the CLI
    grants.check(db, policy, "dry-run" if dry_run else "run")
    job = Archiver(db, policy, settings).start(dry_run=dry_run, fixed_batch_size=fixed_batch_size, trigger="api",
                                               max_replica_lag=max_replica_lag)
    events.hand_to(JobStore(db, policy), job.id, invoker, function_name, events.start_event(job.id, policy.live_table),
                   "archive")
    logger.info("run started", extra={"job_id": job.id, "dry_run": dry_run, "fixed_batch_size": fixed_batch_size})
    return job
