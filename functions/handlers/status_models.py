"""Request and response models of the status API: every input modelled once, with its bounds.

The OpenAPI document is generated from these (through the resolver), so they are the contract.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from archiver.config import MAX_BATCH_SIZE
from archiver.erasure import MAX_KEY_TEXT
from archiver.states import RunState

MAX_RUNS_LIMIT = 100
MAX_STATS_DAYS = 90
# The largest real body is {"dry_run": false, "batch_size": 10000}: a few dozen bytes. Larger or
# deeper bodies are refused before they are parsed (status_guard).
MAX_BODY_BYTES = 16 * 1024
MAX_BODY_DEPTH = 16
MAX_TABLE_NAME = 127  # schema.table, each at most 63 bytes


class StartRunRequest(BaseModel):
    """Body of POST /runs. Strict: "10" or true is not a batch size, and unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    dry_run: bool = Field(False, description="count what would be archived; move nothing")
    batch_size: int | None = Field(None, ge=1, le=MAX_BATCH_SIZE,
                                   description="a fixed size for every batch of this run, no steering; default: "
                                               "start at the policy's batch_size and steer toward target_batch_ms")
    table: str | None = Field(None, min_length=1, max_length=MAX_TABLE_NAME,
                              description="the policy's live table (GET /tables); default the only policy")
    max_replica_lag: float | None = Field(None, ge=0, le=3600,
                                          description="seconds; between batches, wait while any standby's replay "
                                                      "lag is above it (0: off); default the deployment's setting")


KeyPart = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_TEXT)] | int
MAX_KEY_COLUMNS = 32  # PostgreSQL's limit of an index's columns


class ErasureRequest(BaseModel):
    """Body of POST /erasures. The key is never logged nor stored: the run log gets its keyed hash."""

    model_config = ConfigDict(extra="forbid", strict=True)

    key: KeyPart | Annotated[list[KeyPart], Field(min_length=1, max_length=MAX_KEY_COLUMNS)] = Field(
        description="the record's key: a string or a JSON integer; a key of several columns: an array of them,"
                    " in the key's column order")
    table: str | None = Field(None, min_length=1, max_length=MAX_TABLE_NAME,
                              description="the policy's live table (GET /tables); default the only policy")
    dry_run: bool = Field(False, description="count what would be removed (the run's result); remove nothing")


class RunStarted(BaseModel):
    job_id: str
    state: str
    status_url: str


class RunStatus(BaseModel):
    """One run as the run log records it (the job-status view)."""

    # Restore and purge runs add their own result fields.
    model_config = ConfigDict(extra="allow")

    job_id: str
    table: str = Field(description="the live table the run is for")
    kind: str
    state: RunState
    status: str
    dry_run: bool
    trigger: str
    eligible: int | None
    archived: int
    failed: int
    processed: int
    percent_complete: float
    batches: int
    hops: int
    duration_ms: int | None
    batch_size: int
    cutoff: str | None
    scheduled_for: str | None
    run_date: str | None
    started_at: str | None
    finished_at: str | None
    message: str | None
    error: str | None
    cancel_requested: bool
    by_line_of_business: dict[str, int] | None = Field(None, description="dry runs: eligible rows per line "
                                                                         "of business")
    warnings: list[str] | None = Field(None, description="dry runs: problems the plan shows")


class RunList(BaseModel):
    runs: list[RunStatus]


class DayStats(BaseModel):
    day: str
    runs: int
    archived: int
    avg_duration_ms: int | None
    failures: int
    partial: int


class Totals(BaseModel):
    runs: int
    archived: int
    failures: int
    partial: int
    avg_duration_ms: int | None


class TableRows(BaseModel):
    table: str
    exists: bool
    rows: int | None
    exact: bool = Field(description="false: the planner's estimate (pg_class.reltuples) of a big table")


class Tables(BaseModel):
    live: TableRows
    archive: TableRows


class Stats(BaseModel):
    table: str
    days: int
    timezone: str
    per_day: list[DayStats] = Field(description="newest first, one entry per calendar day")
    totals: Totals
    tables: Tables


class TableInfo(BaseModel):
    """One policy: the live table it keeps lean and its schedule (in its time zone)."""

    table: str
    archive_table: str
    schedule_time: str = Field(description="HH:MM local time of the nightly run")
    mode: Literal["archive", "dry_run", "off"]
    timezone: str
    retention_days: int
    dry_run_until: str | None = Field(description="scheduled runs before this date are dry runs")
    run_until: str | None = Field(description="HH:MM local time by which a scheduled run stops for the night")
    purge_after_days: int | None = Field(description="archive rows older than this are purged weekly")


class TableList(BaseModel):
    tables: list[TableInfo]


class Health(BaseModel):
    status: Literal["ok", "not_migrated", "unavailable"]
    database: bool
    schema_migrated: bool
    missing_tables: list[str]
    last_successful_run: str | None
    active_job_id: str | None


class ErrorDetail(BaseModel):
    loc: list[str | int]
    type: str
    msg: str


class Error(BaseModel):
    """Every error answer: what is wrong, and for conflicts the run concerned."""

    error: str
    details: list[ErrorDetail] | None = None
    job_id: str | None = None
    state: str | None = None
