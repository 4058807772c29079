"""Alerts: what deserves one (failure, partial run, hop limit, stuck run, anomaly), the weekly and
monthly report, how they read, and where they go (SNS in AWS; the log and optionally Slack locally).

An alert carries the job id, state, counts, timings and the status URL: never customer data.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from .config import Settings
from .jobs import Job
from .observability import logger

KINDS = ("failure", "partial", "hop_limit", "stuck", "anomaly", "success", "report")


@dataclass(frozen=True)
class Alert:
    kind: str
    job_id: str | None
    state: str | None
    summary: str
    counts: dict[str, Any] = field(default_factory=dict)
    status_url: str | None = None
    details: tuple[str, ...] = ()  # preformatted lines (a report's tables): counts and dates only

    @property
    def subject(self) -> str:
        label = {"failure": "FAILED", "partial": "PARTIAL", "hop_limit": "HOP LIMIT", "stuck": "STUCK",
                 "anomaly": "ANOMALY", "success": "OK", "report": "REPORT"}[self.kind]
        return f"[archiver] {label}: {self.summary}"[:100]  # SNS subject limit

    @property
    def body(self) -> str:
        lines = [self.summary, "", f"job id: {self.job_id or '-'}", f"state: {self.state or '-'}"]
        lines += [f"{k}: {v}" for k, v in self.counts.items()]
        if self.details:
            lines += ["", *self.details]
        if self.status_url:
            lines.append(f"status: {self.status_url}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        return cls(kind=str(data["kind"]), job_id=data.get("job_id"), state=data.get("state"),
                   summary=str(data.get("summary", "")), counts=dict(data.get("counts") or {}),
                   status_url=data.get("status_url"), details=tuple(str(x) for x in data.get("details") or ()))


class AlertSink(Protocol):
    def send(self, alert: Alert) -> None: ...


class LogSink:
    def send(self, alert: Alert) -> None:
        logger.warning("alert", extra={"alert_kind": alert.kind, "alert_job_id": alert.job_id,
                                       "alert_subject": alert.subject})


class RecordingSink:
    """Keeps alerts in memory (tests, and the local runner's summary)."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


class FanoutSink:
    def __init__(self, sinks: Iterable[AlertSink]) -> None:
        self.sinks = list(sinks)

    def send(self, alert: Alert) -> None:
        for sink in self.sinks:
            try:
                sink.send(alert)
            except Exception as exc:  # noqa: BLE001 - one broken channel must not silence the others
                logger.error("alert channel failed", extra={"channel": type(sink).__name__, "error": str(exc)})


class SnsSink:
    """Publishes to the alert topic; e-mail and the Slack function subscribe to it."""

    def __init__(self, client: Any, topic_arn: str) -> None:
        self.client = client
        self.topic_arn = topic_arn

    def send(self, alert: Alert) -> None:
        self.client.publish(
            TopicArn=self.topic_arn, Subject=alert.subject,
            # Readable in an e-mail; the Slack function reads the JSON attribute.
            Message=alert.body,
            MessageAttributes={"alert": {"DataType": "String", "StringValue": json.dumps(alert.as_dict())},
                               "kind": {"DataType": "String", "StringValue": alert.kind}},
        )


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
    if job.state == "partial":
        out.append(Alert("partial", job.id, job.state, f"archive run partial: {job.records_failed} rows not archived",
                         _counts(job), url))
    if job.state == "succeeded" and (job.eligible or 0) > 0 and job.records_archived == 0:
        out.append(Alert("anomaly", job.id, job.state, f"archived nothing while {job.eligible} rows were eligible",
                         _counts(job), url))
    past = [h for h in history if h.id != job.id and h.state == "succeeded" and not h.dry_run]
    if len(past) >= 3 and job.state == "succeeded":
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
    if settings.success_alerts and job.state == "succeeded" and not out:
        out.append(Alert("success", job.id, job.state, f"archived {job.records_archived} rows", _counts(job), url))
    return out


def local_sink(env: Mapping[str, str]) -> AlertSink:
    """Locally alerts go to the log and, with SLACK_WEBHOOK_URL set, to Slack (same formatting)."""
    sinks: list[AlertSink] = [LogSink()]
    if env.get("SLACK_WEBHOOK_URL"):
        from .slack import SlackSink

        sinks.append(SlackSink(env["SLACK_WEBHOOK_URL"]))
    return FanoutSink(sinks)
