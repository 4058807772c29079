"""The export -> verify -> purge chain as the export function runs it: in hops, like the archive job.

Each invocation continues the export (or starts one) until its time runs low, then invokes the
function again with the export id and the next hop. Once the export is verified, the rows it
holds are purged. A failure has already alerted (export.py); a hop limit stops the chain loudly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .alerts import Alert, AlertSink
from .cold_storage import ColdStorage
from .config import Policy
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
    erasure_key: ErasureKey | None = None  # None: the database's own (erasure.py)


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
        deps.invoker.invoke_async(deps.function, {"action": "continue", "job_id": result.export_id, "hop": hop + 1})
        return {**out, "status": "continue", "next_hop": hop + 1}
    if not result.verified:
        return {**out, "status": "failed"}
    try:
        purged = purge(deps.db, deps.policy, deps.older_than_days).as_dict()["purged"]
    except AlreadyRunningError as exc:  # an archive run holds the table: the next schedule purges
        logger.warning("purge deferred: a run is active", extra={"existing_job_id": exc.job_id})
        return {**out, "status": "purge_deferred"}
    logger.info("export chain done", extra={"export_id": result.export_id, "purged": purged})
    return {**out, "status": "succeeded", "purged": purged}


def erase_request(event: dict[str, Any], deps: ChainDeps) -> dict[str, Any]:
    """``{"action": "erase", ...}`` (erasure.erase_event): the export function erases (it alone carries
    pyarrow to rewrite exported files); invoking it is its own IAM permission."""
    return erase_event(event, deps.db, deps.policy, deps.erasure_key)
