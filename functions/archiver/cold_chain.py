"""The export -> verify -> purge chain as the export function runs it: in hops, like the archive job.

Each invocation continues the export (or starts one) until its time runs low, then invokes the
function again with the export id and the next hop. Once the export is verified, the rows it
holds are purged. A failure has already alerted (export.py); a hop limit stops the chain loudly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field, ValidationError

from .alerts import Alert, AlertSink
from .cold_storage import ColdStorage
from .config import DEFAULT_PURGE_AFTER_DAYS, Policy, PolicySet
from .db import Database
from .erasure import ErasureKey, erase_event
from .exceptions import AlreadyRunningError
from .export import DEFAULT_ROWS_PER_FILE, export
from .observability import logger
from .restore import purge


class Invoker(Protocol):
    def invoke_async(self, function: str, payload: dict[str, Any]) -> None: ...


@dataclass
class ChainDeps:
    db: Database
    policy: Policy
    storage: ColdStorage
    sink: AlertSink
    invoker: Invoker
    function: str
    older_than_days: int
    rows_per_file: int = DEFAULT_ROWS_PER_FILE
    max_hops: int = 200
    # The erasure records' key, fetched on first use (an erasure), not on every hop's cold start;
    # None: the database's own (erasure.py).
    erasure_key: Callable[[], ErasureKey | None] = lambda: None
    # Every policy of the deployment: an event naming a table works on that policy's archive (each
    # policy's purge schedule runs this chain). None: ``policy`` alone.
    policies: PolicySet | None = None

    def for_table(self, table: str | None) -> ChainDeps | None:
        """These deps for the policy of ``table`` (its live table, archive table or key; None: the
        default policy); None when no policy has it."""
        found = [p for p in (self.policies.policies if self.policies else (self.policy,))
                 if table in (p.live_table, p.archive_table, p.key)]
        if table is None or (found and found[0] == self.policy):
            return self
        if not found:
            return None
        return replace(self, policy=found[0], older_than_days=found[0].purge_after_days or DEFAULT_PURGE_AFTER_DAYS)


class ChainEvent(BaseModel):
    """What starts or carries on the chain: the export schedule's event (no ``action``), the purge
    schedule's (``{"action": "purge", "table": ...}``: with cold storage on, a purge is this chain),
    or the function's own continuation (``{"action": "continue", "job_id": ..., "hop": n}``)."""

    action: Literal["export", "purge", "continue"] = "export"
    table: str | None = None
    job_id: str | None = Field(None, max_length=64)
    hop: int = Field(1, ge=1)


def handle(event: Any, deps: ChainDeps, seconds_left: Callable[[], float]) -> dict[str, Any]:
    """One invocation of the export function: an erasure request, or a hop of the chain."""
    event = event if isinstance(event, dict) else {}
    if event.get("action") == "erase":
        return erase_request(event, deps)
    try:
        parsed = ChainEvent.model_validate({k: event[k] for k in ("action", "table", "job_id", "hop") if k in event})
    except ValidationError as exc:
        first = exc.errors()[0]
        return _rejected(f"bad export event: {'.'.join(map(str, first['loc']))}: {first['msg']}")
    mine = deps.for_table(parsed.table)
    if mine is None:
        tables = ", ".join(p.live_table for p in (deps.policies.policies if deps.policies else (deps.policy,)))
        return _rejected(f"this export function exports the archives of {tables}, not {parsed.table}")
    if parsed.action == "continue" and not parsed.job_id:
        return _rejected("a continuation names its export (job_id)")
    return export_hop({"job_id": parsed.job_id, "hop": parsed.hop}, mine, seconds_left)


def _rejected(error: str) -> dict[str, Any]:
    logger.error("rejected export event", extra={"error": error})
    return {"status": "rejected", "error": error}


def export_hop(event: dict[str, Any], deps: ChainDeps, seconds_left: Callable[[], float]) -> dict[str, Any]:
    """One invocation: ``{}`` or a schedule event starts (or continues) an export; ``{"job_id", "hop"}``
    continues one."""
    hop = int(event.get("hop") or 1)
    job_id = event.get("job_id")
    if hop > deps.max_hops:
        deps.sink.send(Alert(kind="hop_limit", job_id=job_id, state="running",
                             summary=f"export chain stopped at hop {hop}, over the limit of {deps.max_hops}"))
        return {"status": "hop_limit", "export_id": job_id}
    result = export(deps.db, deps.policy, deps.storage, deps.older_than_days, sink=deps.sink,
                    rows_per_file=deps.rows_per_file, job_id=job_id, trigger="schedule", time_left=seconds_left)
    out: dict[str, Any] = {"export": result.as_dict(), "hop": hop}
    if not result.done:
        deps.invoker.invoke_async(deps.function, {"action": "continue", "job_id": result.export_id, "hop": hop + 1,
                                                  "table": deps.policy.live_table})
        return {**out, "status": "continue", "next_hop": hop + 1}
    if not result.verified:
        return {**out, "status": "failed"}
    try:
        purged = purge(deps.db, deps.policy, deps.older_than_days, trigger="schedule").as_dict()["purged"]
    except AlreadyRunningError as exc:  # an archive run holds the table: the next schedule purges
        logger.warning("purge deferred: a run is active", extra={"existing_job_id": exc.job_id})
        return {**out, "status": "purge_deferred"}
    logger.info("export chain done", extra={"export_id": result.export_id, "purged": purged})
    return {**out, "status": "succeeded", "purged": purged}


def erase_request(event: dict[str, Any], deps: ChainDeps) -> dict[str, Any]:
    """``{"action": "erase", ...}`` (erasure.erase_event): the export function erases (it alone carries
    pyarrow to rewrite exported files); invoking it is its own IAM permission."""
    mine = deps.for_table(event.get("table") if isinstance(event.get("table"), str) else None) or deps
    return erase_event(event, mine.db, mine.policy, mine.erasure_key())
