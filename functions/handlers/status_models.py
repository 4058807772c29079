"""Request and response models of the status API: every input modelled once, with its bounds.

The OpenAPI document is generated from these (through the resolver), so they are the contract.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_BATCH_SIZE = 10000
MAX_RUNS_LIMIT = 100
MAX_STATS_DAYS = 90


class StartRunRequest(BaseModel):
    """Body of POST /runs. Strict: "10" or true is not a batch size, and unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    dry_run: bool = Field(False, description="count what would be archived; move nothing")
    batch_size: int | None = Field(None, ge=1, le=MAX_BATCH_SIZE,
                                   description="rows per batch; default the policy's batch size")
    max_replica_lag: float | None = Field(None, ge=0, le=3600,
                                          description="seconds; between batches, wait while any standby's replay "
                                                      "lag is above it (0: off); default the deployment's setting")


class RunStarted(BaseModel):
    job_id: str
    state: str
    status_url: str


class RunStatus(BaseModel):
    """One run as the run log records it (the job-status view)."""

    # Restore and purge runs add their own result fields.
    model_config = ConfigDict(extra="allow")

    job_id: str
    kind: str
    state: Literal["pending", "running", "succeeded", "partial", "failed", "rolled_back", "cancelled"]
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
    days: int
    timezone: str
    per_day: list[DayStats] = Field(description="newest first, one entry per calendar day")
    totals: Totals
    tables: Tables


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
