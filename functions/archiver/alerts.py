"""Alert rules: what deserves an alert (failure, partial run, hop limit, stuck run, anomaly) and the
weekly and monthly report. What an alert carries and where it goes is ``sinks.py``.

An alert carries the job id, state, counts, timings and the status URL: never customer data.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from .config import Settings
from .jobs import Job

# Still importable from here: the alert record and the sinks moved to sinks.py.
from .sinks import KINDS as KINDS
from .sinks import Alert as Alert
from .sinks import AlertSink as AlertSink
from .sinks import FanoutSink as FanoutSink
from .sinks import LogSink as LogSink
from .sinks import RecordingSink as RecordingSink
from .sinks import SnsSink as SnsSink
from .states import RunState


def status_url(settings: Settings, job_id: str | None) -> str | None:
    if not settings.status_base_url or not job_id:
        return None
    return f"{settings.status_base_url.rstrip('/')}/runs/{job_id}"


def _counts(job: Job) -> dict[str, Any]:
    return {"eligible": job.eligible, "archived": job.records_archived, "failed": job.records_failed,
            "batches": job.batches, "hops": job.hop, "duration_ms": job.execution_time_ms}


def for_failure(job: Job | None, job_id: str | None, error: str, settings: Settings, kind: str = "failure") -> Alert:
    state = job.state if job is not None else None
    return Alert(kind=kind, job_id=job_id, state=state, summary=f"archive run {state or 'failed'}: {error}"[:300],
                 counts=_counts(job) if job is not None else {}, status_url=status_url(settings, job_id))


def for_stuck(job: Job, minutes: float, settings: Settings) -> Alert:
    return Alert(kind="stuck", job_id=job.id, state=job.state,
                 summary=f"archive run has made no progress for {minutes:.0f} minutes",
                 counts=_counts(job), status_url=status_url(settings, job.id))


def for_report(report: Mapping[str, Any]) -> Alert:
    """The weekly or monthly summary (``reports.build``) as an alert: totals, then a block per table."""
    tables = report["tables"]
    archived = sum(t["archived"] for t in tables)
    failures = sum(t["failures"] + t["partial"] for t in tables)
    summary = (f"{report['period']} summary {report['from']}..{report['to']}: {archived} rows archived"
               f" from {len(tables)} table{'s' if len(tables) != 1 else ''}, {failures} failed or partial runs")
    details: list[str] = []
    for t in tables:
        trend = t["trend_percent"]
        details += [
            f"{t['table']}: archived {t['archived']} in {t['runs']} runs (previous period {t['previous_archived']}),"
            f" {t['failures']} failed, {t['partial']} partial",
            f"  average run {_ms(t['avg_duration_ms'])} (previous period {_ms(t['previous_avg_duration_ms'])}"
            + (f", {trend:+d}%" if trend is not None else "") + ")",
            f"  live table {_rows(t['live'])} rows, archive {_rows(t['archive'])} rows",
            *(f"  {d['day']}  archived {d['archived']:>8}  runs {d['runs']}  failures {d['failures'] + d['partial']}"
              f"  avg {_ms(d['avg_duration_ms'])}" for d in t["per_day"]),
        ]
    return Alert("report", None, None, summary,
                 {"tables": len(tables), "archived": archived, "failed_or_partial_runs": failures},
                 details=tuple(details))


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value} ms"


def _rows(table: Mapping[str, Any]) -> str:
    if not table["exists"]:
        return "(missing)"
    return f"{table['rows']}" + ("" if table["exact"] else " (estimate)")


def after_run(job: Job, history: list[Job], settings: Settings) -> list[Alert]:
    """Alerts a finished run deserves: partial, anomalies against the recent median, success."""
    if job.dry_run or job.kind != "archive":
        return []
    out: list[Alert] = []
    url = status_url(settings, job.id)
    if job.state == RunState.PARTIAL:
        out.append(Alert("partial", job.id, job.state, f"archive run partial: {job.records_failed} rows not archived",
                         _counts(job), url))
    if job.state == RunState.SUCCEEDED and (job.eligible or 0) > 0 and job.records_archived == 0:
        out.append(Alert("anomaly", job.id, job.state, f"archived nothing while {job.eligible} rows were eligible",
                         _counts(job), url))
    past = [h for h in history if h.id != job.id and h.state == RunState.SUCCEEDED and not h.dry_run]
    if len(past) >= 3 and job.state == RunState.SUCCEEDED:
        factor = settings.anomaly_factor
        med_rows = statistics.median(h.records_archived for h in past)
        med_ms = statistics.median(h.execution_time_ms or 0 for h in past)
        if med_rows > 0 and job.records_archived > factor * med_rows:
            out.append(Alert("anomaly", job.id, job.state,
                             f"archived {job.records_archived} rows, over {factor:g}x the recent median of "
                             f"{med_rows:g}", _counts(job), url))
        if med_ms > 0 and (job.execution_time_ms or 0) > factor * med_ms:
            out.append(Alert("anomaly", job.id, job.state,
                             f"run took {job.execution_time_ms} ms, over {factor:g}x the recent median of "
                             f"{med_ms:g} ms", _counts(job), url))
    if settings.success_alerts and job.state == RunState.SUCCEEDED and not out:
        out.append(Alert("success", job.id, job.state, f"archived {job.records_archived} rows", _counts(job), url))
    return out
