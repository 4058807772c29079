"""The archive function's three events, modelled once: the nightly schedule, a start request
from the status API, and the function's own continuation."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .exceptions import ConfigError


class InvalidEventError(ConfigError):
    """The archive function received an event it does not understand."""


class ScheduleEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    action: Literal["schedule"] = "schedule"
    scheduled_time: datetime | None = None


class StartEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["start"]
    job_id: str
    dry_run: bool = False
    batch_size: int | None = Field(None, ge=1, le=10000)


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


ArchiveEvent = ScheduleEvent | StartEvent | ContinueEvent | ResumeEvent


def parse_archive_event(event: Any) -> ArchiveEvent:
    """Accepts the Scheduler target input, an EventBridge rule event, and our own events."""
    if not isinstance(event, dict):
        raise InvalidEventError("archive event must be a JSON object")
    try:
        if event.get("action") == "start":
            return StartEvent.model_validate(event)
        if event.get("action") == "continue":
            return ContinueEvent.model_validate(event)
        if event.get("action") == "resume":
            return ResumeEvent.model_validate(event)
        if event.get("trigger") == "schedule" or event.get("source") in ("archiver.schedule", "aws.events") \
                or event.get("detail-type") == "Scheduled Event":
            when = event.get("scheduled_time") or event.get("time")
            return ScheduleEvent(scheduled_time=when)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidEventError(f"bad archive event: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    raise InvalidEventError("unknown archive event: expected a schedule, start or continue event")


def continue_event(job_id: str, hop: int) -> dict[str, Any]:
    return {"action": "continue", "job_id": job_id, "hop": hop}


def start_event(job_id: str, dry_run: bool, batch_size: int | None) -> dict[str, Any]:
    return {"action": "start", "job_id": job_id, "dry_run": dry_run, "batch_size": batch_size}
