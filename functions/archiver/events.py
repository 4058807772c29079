"""The archive function's events, modelled once: the nightly schedule (one per table), a start
request from the status API, the function's own continuation, and the scheduled purge and report."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .exceptions import InvalidEventError, RunStartError
from .jobs import JobStore
from .observability import logger
from .states import RunState


class Invoker(Protocol):
    def invoke_async(self, function: str, payload: dict[str, Any]) -> None: ...


def hand_to(jobs: JobStore, job_id: str, invoker: Invoker, function: str, payload: dict[str, Any],
            what: str) -> None:
    """Hand a run the caller just recorded to ``function`` (the ``what`` function). If the invocation
    fails, nobody would ever work on the run: it is finished as failed and RunStartError raised."""
    try:
        invoker.invoke_async(function, payload)
    except Exception as exc:  # noqa: BLE001 - any invoke failure leaves a run nobody works on
        reason = type(exc).__name__
        logger.error(f"could not start the {what} function", extra={"job_id": job_id, "error_type": reason})
        jobs.finish(job_id, None, RunState.FAILED, error=f"invoke failed: {reason}",
                    message=f"the {what} function could not be started")
        raise RunStartError(job_id, reason) from exc


class LocalInvoker:
    """Stands in for Lambda's asynchronous self-invocation: events wait in a queue."""

    def __init__(self) -> None:
        self.queue: list[tuple[str, dict[str, Any]]] = []

    def invoke_async(self, function: str, payload: dict[str, Any]) -> None:
        self.queue.append((function, payload))


class ScheduleEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    action: Literal["schedule"] = "schedule"
    scheduled_time: datetime | None = None
    table: str | None = None  # the policy's live table; None: the only policy
    dry_run: bool = False  # the policy's mode is dry_run (the core also applies dry_run_until)


class StartEvent(BaseModel):
    """Work on a run already created (by the status API or the CLI): the run log holds its dry_run and
    batch size, so the event names the run and its table only."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["start"]
    job_id: str
    table: str | None = None  # the run's live table; None: the run log knows

    @model_validator(mode="before")
    @classmethod
    def _earlier_fields(cls, data: Any) -> Any:
        # Earlier versions also sent dry_run and batch_size (an invocation queued across a deploy, or
        # redriven from the dead-letter queue, may still carry them): accepted, and not used.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in _EARLIER_START_FIELDS}
        return data


_EARLIER_START_FIELDS = ("dry_run", "batch_size")


class ContinueEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["continue"]
    job_id: str
    hop: int = Field(ge=2)


class ResumeEvent(BaseModel):
    """Take over an active run whose worker is gone (lease free or expired)."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["resume"]
    job_id: str


class PurgeEvent(BaseModel):
    """The scheduled purge of one table's archive (rows older than its purge_after_days)."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["purge"]
    table: str | None = None
    scheduled_time: datetime | None = None


class ReportEvent(BaseModel):
    """The weekly or monthly summary of every table, sent through the alert sink."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["report"]
    period: Literal["weekly", "monthly"]
    scheduled_time: datetime | None = None


ArchiveEvent = ScheduleEvent | StartEvent | ContinueEvent | ResumeEvent | PurgeEvent | ReportEvent
_ACTIONS: dict[str, type[BaseModel]] = {"start": StartEvent, "continue": ContinueEvent, "resume": ResumeEvent,
                                        "purge": PurgeEvent, "report": ReportEvent}


def parse_archive_event(event: Any) -> ArchiveEvent:
    """Accepts the Scheduler target input, an EventBridge rule event, and our own events."""
    if not isinstance(event, dict):
        raise InvalidEventError("archive event must be a JSON object")
    try:
        model = _ACTIONS.get(str(event.get("action")))
        if model is not None:
            return model.model_validate(event)  # type: ignore[return-value]
        if event.get("trigger") == "schedule" or event.get("source") in ("archiver.schedule", "aws.events") \
                or event.get("detail-type") == "Scheduled Event":
            when = event.get("scheduled_time") or event.get("time")
            return ScheduleEvent(scheduled_time=when, table=event.get("table"), dry_run=event.get("dry_run", False))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidEventError(f"bad archive event: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    raise InvalidEventError("unknown archive event: expected a schedule, start, continue, resume, purge"
                            " or report event")


def continue_event(job_id: str, hop: int) -> dict[str, Any]:
    return {"action": "continue", "job_id": job_id, "hop": hop}


def start_event(job_id: str, table: str | None = None) -> dict[str, Any]:
    """The event that starts the archive function on a created run (its settings are in the run log)."""
    out: dict[str, Any] = {"action": "start", "job_id": job_id}
    if table is not None:
        out["table"] = table
    return out
