"""Alerts as records and where they go: SNS in AWS, the log, memory (tests), several at once.

An alert carries the job id, state, counts, timings and the status URL: never customer data.
What deserves an alert is ``alerts.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

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
