"""One invocation of the archive function: claim the job, archive until the time budget is
spent, hand over to the next hop, and raise the alerts the outcome deserves.

The Lambda handler and the local runner both call ``process``; they differ only in the
invoker (Lambda async invoke or an in-process queue), the alert sink and the clock.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import alerts, reports, sinks
from .config import Policy, PolicySet, Settings
from .db import Database, describe_error
from .engine import Archiver, BatchResult, Budget, HopOutcome
from .events import (
    ArchiveEvent,
    ContinueEvent,
    Invoker,
    PurgeEvent,
    ReportEvent,
    ResumeEvent,
    ScheduleEvent,
    StartEvent,
    continue_event,
)
from .events import LocalInvoker as LocalInvoker  # still importable from here (tests, bench)
from .exceptions import (
    AlreadyRunningError,
    DatabaseUnavailableError,
    DuplicateTriggerError,
    HopLimitError,
    RunFailedError,
    UnknownTableError,
)
from .jobs import Job, Lease, policy_of
from .observability import MetricName, NullMetrics, RunMetrics, logger
from .restore import purge
from .states import RunState

RECONNECT_ATTEMPTS = 5


@dataclass
class Deps:
    db: Database
    policy: Policy
    settings: Settings
    invoker: Invoker
    alerts: sinks.AlertSink
    metrics: RunMetrics = field(default_factory=NullMetrics)
    on_batch: Callable[[Job, BatchResult], None] | None = None
    max_batches: int | None = None  # local bounded runs only
    policies: PolicySet | None = None  # every table's policy; None: ``policy`` alone
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))  # dry_run_until, run_until

    @property
    def all_policies(self) -> PolicySet:
        return self.policies or PolicySet((self.policy,))


def process(event: ArchiveEvent, deps: Deps, budget: Budget, function: str) -> dict[str, Any]:
    """Handle one archive event; raises after marking the run failed and alerting."""
    _connect(deps, budget, getattr(event, "job_id", None))
    if isinstance(event, ReportEvent):
        return _report(deps, event)
    try:
        policy = _policy_for(event, deps)
    except UnknownTableError as exc:  # not retried: the event names a table no policy archives
        logger.error("rejected archive event", extra={"error": str(exc)})
        return {"status": "rejected", "error": str(exc)}
    logger.append_keys(table=policy.live_table)
    deps.metrics.use_table(policy.live_table)
    archiver = Archiver(deps.db, policy, deps.settings, deps.metrics)
    if isinstance(event, PurgeEvent):
        return _purge(archiver, deps)
    hop: int | None
    if isinstance(event, ScheduleEvent):
        if policy.mode == "off":
            logger.info("schedule ignored: the policy's mode is off")
            return {"status": "off", "table": policy.live_table}
        started = _start_nightly(archiver, deps, event)
        if isinstance(started, dict):
            return started
        job_id, hop = started
    elif isinstance(event, StartEvent):
        job_id, hop = event.job_id, 1
    elif isinstance(event, ResumeEvent):
        job_id, hop = event.job_id, None
    else:
        assert isinstance(event, ContinueEvent)
        job_id, hop = event.job_id, event.hop
    owner = f"worker-{uuid.uuid4()}"
    logger.append_keys(job_id=job_id)
    outcome = _run_with_reconnect(archiver, deps, job_id, owner, hop, budget,
                                  _night_end(archiver, deps, job_id, event))
    if outcome.status == "continue" and outcome.next_hop is not None:
        _hand_over(archiver, deps, function, job_id, outcome.next_hop)
        logger.info("continuing in next hop", extra={"next_hop": outcome.next_hop, "batches": outcome.batches})
    elif outcome.status == "done" and outcome.job is not None:
        _after_run(archiver, deps, outcome.job)
    return summary(outcome)


def _policy_for(event: ArchiveEvent, deps: Deps) -> Policy:
    """The policy an event is for: the table it names, else its run's (the run log knows), else the only one."""
    policies = deps.all_policies
    table = getattr(event, "table", None)
    job_id = getattr(event, "job_id", None)
    if table is None and job_id is not None and len(policies.policies) > 1:
        return policy_of(deps.db, policies, job_id)
    return policies.get(table)


def _night_end(archiver: Archiver, deps: Deps, job_id: str, event: ArchiveEvent) -> Callable[[], str | None] | None:
    """For a scheduled run of a policy with ``run_until``: the check, before each batch, that stops it
    for the night once the policy's local time is past run_until. A manual resume is not stopped."""
    policy = archiver.policy
    if policy.run_until is None or isinstance(event, ResumeEvent):
        return None
    if not isinstance(event, ScheduleEvent) and archiver.jobs.get(job_id).trigger != "schedule":
        return None

    def check() -> str | None:
        if not policy.outside_run_window(deps.clock()):
            return None
        return (f"stopped for the night at {policy.run_until} ({policy.timezone}); the next scheduled run"
                " continues it with the same cutoff")

    return check


def _purge(archiver: Archiver, deps: Deps) -> dict[str, Any]:
    """The scheduled purge of the policy's archive: rows archived more than purge_after_days ago."""
    policy = archiver.policy
    if policy.purge_after_days is None:
        message = f"the policy of {policy.live_table} sets no purge_after_days: nothing to purge"
        logger.error("rejected purge event", extra={"error": message})
        return {"status": "rejected", "error": message}
    try:
        job = purge(deps.db, policy, policy.purge_after_days, trigger="schedule",
                    without_export=policy.purge_without_export)
    except AlreadyRunningError as exc:  # tonight's archive run is still going: next week's purge catches up
        logger.warning("purge skipped: a run of the table is active", extra={"existing_job_id": exc.job_id})
        return {"status": "already_running", "job_id": exc.job_id}
    except DatabaseUnavailableError:
        raise
    except Exception as exc:
        message = describe_error(exc)
        deps.alerts.send(alerts.for_failure(None, None, f"purge of {policy.live_table} failed: {message}",
                                            deps.settings))
        raise RunFailedError("purge", message) from None
    logger.info("purge finished", extra={"purged": job.records_archived})
    return {"status": "done", "job": job.as_dict()}


def _report(deps: Deps, event: ReportEvent) -> dict[str, Any]:
    """The weekly or monthly summary of every table, through the alert sink (counts only)."""
    report = reports.build(deps.db, deps.all_policies, event.period, event.scheduled_time or deps.clock())
    deps.alerts.send(alerts.for_report(report))
    logger.info("report sent", extra={"period": event.period, "tables": len(report["tables"])})
    return {"status": "done", "report": report}


def _connect(deps: Deps, budget: Budget, job_id: str | None) -> None:
    """Open (or check) the connection, riding out a short outage such as a database restart."""
    for attempt in range(1, RECONNECT_ATTEMPTS + 1):
        try:
            deps.db.ensure_alive()
            return
        except DatabaseUnavailableError as exc:
            if attempt == RECONNECT_ATTEMPTS or budget.remaining_ms() < deps.settings.reserve_ms + 15000:
                # The run cannot be marked failed without the database: alert, and let Lambda retry.
                deps.alerts.send(alerts.for_failure(None, job_id, str(exc), deps.settings))
                raise
            logger.warning("database unavailable, retrying", extra={"attempt": attempt})
            _backoff(attempt)


def _backoff(attempt: int) -> None:
    """Wait before reconnecting: 2, 4, 8, then 10 s."""
    time.sleep(min(2**attempt, 10))


def _hand_over(archiver: Archiver, deps: Deps, function: str, job_id: str, next_hop: int) -> None:
    """Invoke the next hop; if that cannot be done, fail the run rather than leave it waiting."""
    for attempt in range(1, 4):
        try:
            deps.invoker.invoke_async(function, continue_event(job_id, next_hop))
            return
        except Exception as exc:  # noqa: BLE001 - any invoke failure is retried, then reported
            if attempt == 3:
                message = f"could not invoke hop {next_hop}: {type(exc).__name__}"
                _fail(archiver, deps, job_id, None, message)
                raise RunFailedError(job_id, message) from None
            time.sleep(attempt)


def summary(outcome: HopOutcome) -> dict[str, Any]:
    out: dict[str, Any] = {"status": outcome.status, "batches_this_hop": outcome.batches,
                           "archived_this_hop": outcome.archived}
    if outcome.next_hop is not None:
        out["next_hop"] = outcome.next_hop
    if outcome.reason:
        out["reason"] = outcome.reason
    if outcome.job is not None:
        out["job"] = outcome.job.as_dict()
    return out


def _start_nightly(archiver: Archiver, deps: Deps, event: ScheduleEvent) -> tuple[str, int | None] | dict[str, Any]:
    """Start tonight's run once, however often the trigger arrives; take over a dead run."""
    scheduled = event.scheduled_time or deps.clock().replace(second=0, microsecond=0)
    dry_run = event.dry_run or archiver.policy.scheduled_dry_run(scheduled)
    try:
        job = archiver.start(dry_run=dry_run, trigger="schedule", scheduled_for=scheduled)
        return job.id, 1
    except DuplicateTriggerError as exc:
        logger.info("duplicate nightly trigger ignored", extra={"existing_job_id": exc.job_id})
        return {"status": "duplicate", "job_id": exc.job_id}
    except AlreadyRunningError as exc:
        active = archiver.jobs.active()
        if active is None:
            return {"status": "already_running", "job_id": exc.job_id}
        return _nightly_meets_active(archiver, deps, active)


def _nightly_meets_active(archiver: Archiver, deps: Deps, active: Job) -> tuple[str, int | None] | dict[str, Any]:
    now = deps.db.scalar("SELECT now()")
    last = active.heartbeat_at or active.run_date
    idle_min = (now - last).total_seconds() / 60
    # A run paused on purpose (run_until, a bounded local run), or never claimed, has no worker and is not stuck.
    if idle_min >= deps.settings.stuck_after_minutes and active.lease(now) not in (Lease.PAUSED, Lease.FREE):
        deps.metrics.count(MetricName.STUCK_RUNS)
        deps.alerts.send(alerts.for_stuck(active, idle_min, deps.settings))
    if active.may_take_over(now):
        logger.warning("taking over an abandoned run", extra={"existing_job_id": active.id})
        return active.id, None
    logger.info("a run is already active", extra={"existing_job_id": active.id})
    return {"status": "already_running", "job_id": active.id, "job": active.as_dict()}


def _run_with_reconnect(archiver: Archiver, deps: Deps, job_id: str, owner: str, hop: int | None,
                        budget: Budget, stop_for: Callable[[], str | None] | None = None) -> HopOutcome:
    """Run the hop; a lost connection rolls the batch back, so reconnect and resume our own lease."""
    attempt = 0
    while True:
        try:
            return archiver.run_hop(job_id, owner=owner, hop=hop, budget=budget, on_batch=deps.on_batch,
                                   max_batches=deps.max_batches, stop_for=stop_for)
        except DatabaseUnavailableError as exc:
            attempt += 1
            if attempt > RECONNECT_ATTEMPTS or budget.remaining_ms() < deps.settings.reserve_ms:
                _fail(archiver, deps, job_id, owner, f"database unavailable: {exc}")
                raise
            logger.warning("database connection lost, reconnecting", extra={"attempt": attempt})
            _backoff(attempt)
            deps.db.close()  # run_hop reconnects; the claim accepts our own unexpired lease
        except HopLimitError as exc:
            deps.metrics.count(MetricName.HOP_LIMIT_REACHED)
            deps.alerts.send(alerts.for_failure(_safe_get(archiver, job_id), job_id, str(exc), deps.settings,
                                                kind="hop_limit"))
            raise
        except Exception as exc:
            message = describe_error(exc)
            _fail(archiver, deps, job_id, owner, message)
            # Raised so the invocation counts as failed; without the original, whose text may quote a row.
            raise RunFailedError(job_id, message) from None


def _safe_get(archiver: Archiver, job_id: str) -> Job | None:
    try:
        return archiver.jobs.get(job_id)
    except Exception:  # noqa: BLE001 - reporting must not hide the original error
        return None


def _fail(archiver: Archiver, deps: Deps, job_id: str, owner: str | None, error: str) -> None:
    job = None
    try:
        deps.db.ensure_alive()
        job = archiver.jobs.fail(job_id, owner, error) or _safe_get(archiver, job_id)
    except Exception as exc:  # noqa: BLE001 - the database may be down: still alert
        logger.error("could not mark run failed", extra={"error": str(exc)})
    deps.metrics.run(archived=job.records_archived if job else 0,
                                       eligible=(job.eligible or 0) if job else 0,
                                       batches=job.batches if job else 0,
                                       duration_ms=(job.execution_time_ms or 0) if job else 0,
                                       failed=True, succeeded=False)
    deps.alerts.send(alerts.for_failure(job, job_id, error, deps.settings))


def _after_run(archiver: Archiver, deps: Deps, job: Job) -> None:
    metrics = deps.metrics
    if not job.dry_run:
        metrics.run(archived=job.records_archived, eligible=job.eligible or 0, batches=job.batches,
                    duration_ms=job.execution_time_ms or 0, failed=job.state == RunState.PARTIAL,
                    succeeded=job.state == RunState.SUCCEEDED)
    try:
        history = archiver.jobs.recent(11, kind="archive")
    except DatabaseUnavailableError:
        # The run is finished and committed; only the comparison with earlier runs is lost.
        logger.warning("run history unavailable: anomaly checks skipped")
        history = []
    for alert in alerts.after_run(job, history, deps.settings):
        deps.alerts.send(alert)
    logger.info("run finished", extra={"state": job.state, "archived": job.records_archived,
                                       "batches": job.batches, "duration_ms": job.execution_time_ms})
