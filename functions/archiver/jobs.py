"""Job state: the run log rows, their creation, leases, hand-offs and end states.

Every change of a job goes through a guarded UPDATE on its row, so duplicate or late
invocations, crashed workers and concurrent starts resolve in the database, not in memory.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .config import Policy, PolicySet
from .db import Database, expecting
from .exceptions import (
    AlreadyRunningError,
    DuplicateTriggerError,
    InvalidJobIdError,
    JobNotFoundError,
    JobStateError,
    LeaseLostError,
    UniqueViolationError,
)
from .identifiers import qualified, quote
from .migration import LOG_COLUMNS
from .states import ACTIVE_SQL, ACTIVE_STATES, RunState

HANDOFF = "handoff"


@dataclass(frozen=True)
class Job:
    row: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.row[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def id(self) -> str:
        return str(self.row["job_id"])

    @property
    def active(self) -> bool:
        return self.row["state"] in ACTIVE_STATES

    @property
    def table(self) -> str:
        """The live table the run is for (its policy key is ``schema.table``)."""
        return str(self.row["policy_key"]).partition(".")[2]

    def lease_free(self, now: datetime) -> bool:
        """No worker holds the job (lease released or expired): a takeover may claim it (see claim)."""
        expires = self.row["lease_expires_at"]
        return expires is None or expires < now

    def as_dict(self) -> dict[str, Any]:
        """The job-status view (seed 002's fields, the seed log's fields), JSON-ready."""
        r = self.row
        duration = r["execution_time_ms"]
        out: dict[str, Any] = {
            "job_id": self.id, "table": self.table, "kind": r["kind"], "state": r["state"], "status": r["status"],
            "dry_run": r["dry_run"], "trigger": r["trigger"],
            "eligible": r["eligible"], "archived": r["records_archived"], "failed": r["records_failed"],
            "processed": r["processed"], "percent_complete": float(r["percent_complete"] or 0),
            "batches": r["batches"], "hops": r["hop"], "duration_ms": duration,
            "batch_size": r["batch_size"], "cutoff": _iso(r["cutoff"]),
            "scheduled_for": _iso(r["scheduled_for"]), "run_date": _iso(r["run_date"]),
            "started_at": _iso(r["started_at"]), "finished_at": _iso(r["finished_at"]),
            "message": r["message"], "error": r["error_message"],
            "cancel_requested": r["cancel_requested"],
        }
        if r["dry_run"]:
            out["by_line_of_business"] = (r["breakdown"] or {}).get("by_line_of_business", {})
            out["warnings"] = (r["breakdown"] or {}).get("warnings", [])
        if r["kind"] != "archive":
            out.update((r["options"] or {}).get("result", {}))
        return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def parse_job_id(job_id: object) -> str:
    try:
        return str(uuid.UUID(str(job_id)))
    except ValueError:
        raise InvalidJobIdError(str(job_id)[:80]) from None


def policy_of(db: Database, policies: PolicySet, job_id: object) -> Policy:
    """The policy a run belongs to, from its row in the run log that every policy shares."""
    jid = parse_job_id(job_id)
    first = policies.policies[0]
    key = db.scalar(f"SELECT policy_key FROM {qualified(first.schema_name, first.log_table)}"
                    " WHERE job_id = CAST(:j AS uuid)", j=jid)
    policy = policies.by_key(str(key)) if key is not None else None
    if policy is None:  # no such run, or the run of a table no longer configured
        raise JobNotFoundError(jid)
    return policy


class JobStore:
    """Reads and guarded writes of the run log of one policy."""

    def __init__(self, db: Database, policy: Policy) -> None:
        self.db = db
        self.policy = policy
        self.log = qualified(policy.schema_name, policy.log_table)
        # Every batch locks the job row and records itself in it, inside the batch's own statements
        # (``lease_gate``, ``record_from``): the log's columns are named, so a column another
        # version adds cannot change their result.
        self._fields = ", ".join(quote(name) for name, _ in LOG_COLUMNS)
        self._record_sql = self.record_from(None)
        db.prepare(self._record_sql)

    # -- reads -------------------------------------------------------------------------
    def get(self, job_id: object) -> Job:
        jid = parse_job_id(job_id)
        row = self.db.row(f"SELECT * FROM {self.log} WHERE job_id = CAST(:j AS uuid) AND policy_key = :p",
                          j=jid, p=self.policy.key)
        if row is None:
            raise JobNotFoundError(jid)
        return Job(row)

    def recent(self, limit: int = 20, kind: str | None = None, keys: Sequence[str] | None = None) -> list[Job]:
        """The newest runs of this policy (or of the policies ``keys`` name: several tables, one log)."""
        rows = self.db.rows(
            f"SELECT * FROM {self.log} WHERE policy_key = ANY(CAST(:p AS text[]))"
            " AND (CAST(:k AS text) IS NULL OR kind = :k) ORDER BY run_date DESC, id DESC LIMIT :n",
            p=list(keys or [self.policy.key]), k=kind, n=limit)
        return [Job(r) for r in rows]

    def active(self) -> Job | None:
        row = self.db.row(f"SELECT * FROM {self.log} WHERE policy_key = :p AND {ACTIVE_SQL}",
                          p=self.policy.key)
        return Job(row) if row else None

    # -- creation ----------------------------------------------------------------------
    def create(self, *, kind: str = "archive", dry_run: bool = False, batch_size: int, trigger: str,
               scheduled_for: datetime | None = None, cutoff: datetime | None = None,
               options: dict[str, Any] | None = None) -> Job:
        """Insert a pending job; the database refuses a second active one for the policy."""
        jid = str(uuid.uuid4())
        try:
            with self.db.transaction(), expecting(UniqueViolationError):
                row = self.db.row(
                    f"INSERT INTO {self.log} (job_id, kind, policy_key, state, dry_run, trigger, scheduled_for,"
                    " cutoff, batch_size, options, next_hop) VALUES (CAST(:j AS uuid), :kind, :p, 'pending', :dry,"
                    " :trig, :sched, :cut, :bs, CAST(:opt AS jsonb), 1) RETURNING *",
                    j=jid, kind=kind, p=self.policy.key, dry=dry_run, trig=trigger, sched=scheduled_for,
                    cut=cutoff, bs=batch_size, opt=json.dumps(options or {}))
        except UniqueViolationError:
            if scheduled_for is not None:
                same = self.db.row(f"SELECT * FROM {self.log} WHERE policy_key = :p AND scheduled_for = :s",
                                   p=self.policy.key, s=scheduled_for)
                if same is not None:
                    raise DuplicateTriggerError(str(same["job_id"]), same["state"]) from None
            current = self.active()
            if current is None:  # it finished in the meantime: the caller may simply try again
                raise AlreadyRunningError("unknown", "finished") from None
            raise AlreadyRunningError(current.id, current.state) from None
        assert row is not None
        return Job(row)

    # -- leases ------------------------------------------------------------------------
    def claim(self, job_id: str, owner: str, lease_seconds: int, hop: int | None) -> Job | None:
        """Take the job's lease for ``owner``; None when another worker rightly holds it.

        hop=N (a continuation): the hop handed over to, or a retry of hop N whose worker died.
        hop=None (a takeover): any active job whose lease is free or expired.
        The owner may always re-claim its own lease (after a reconnect).
        """
        row = self.db.row(
            f"UPDATE {self.log} SET state = 'running', started_at = COALESCE(started_at, now()),"
            " hop = COALESCE(CAST(:h AS integer), hop + 1), next_hop = NULL, lease_owner = :o,"
            " lease_expires_at = now() + make_interval(secs => :l), heartbeat_at = now()"
            f" WHERE job_id = CAST(:j AS uuid) AND policy_key = :p AND {ACTIVE_SQL} AND ("
            "   lease_owner = :o"
            "   OR (CAST(:h AS integer) IS NOT NULL AND next_hop = :h)"
            "   OR (CAST(:h AS integer) IS NOT NULL AND hop = :h AND next_hop IS NULL"
            "       AND (lease_expires_at IS NULL OR lease_expires_at < now()))"
            "   OR (CAST(:h AS integer) IS NULL AND (lease_expires_at IS NULL OR lease_expires_at < now())))"
            " RETURNING *",
            j=job_id, p=self.policy.key, o=owner, l=lease_seconds, h=hop)
        return Job(row) if row else None

    @property
    def lease_gate(self) -> str:
        """A ``WITH`` item ``j`` that locks the job row for a batch's transaction and says whether
        the lease is still ``:owner``'s (``ours``) and whether a cancel was asked for (``cancel``).
        No row (an unknown job) makes both NULL, which the batch takes as a lost lease."""
        return (f"j AS (SELECT lease_owner = :owner AND {ACTIVE_SQL} AS ours,"
                f" cancel_requested AS cancel FROM {self.log} WHERE job_id = CAST(:job AS uuid) FOR UPDATE)")

    def record_from(self, moved: str | None, failed: str | None = None, *, cursor: str = "CAST(:new_cursor AS text[])",
                    guard: str = "true") -> str:
        """The ``UPDATE`` that counts a batch and moves the cursor (``cursor``: the keyset row's text,
        by default the ``:new_cursor`` parameter; NULL keeps it), returning the job row, the rows moved
        (``batch_moved``) and the rows left live (``batch_failed``). ``moved``/``failed``: ``WITH``
        items counted (one row per row), or None for 0 moved / the ``:failed`` parameter; ``guard``:
        a condition the update also needs. The batch's time is the server's, from its transaction's
        start."""
        count = f"(SELECT count(*) FROM {moved})" if moved else "CAST(0 AS bigint)"
        fails = f"(SELECT count(*) FROM {failed})" if failed else "CAST(:failed AS bigint)"
        return (
            f"UPDATE {self.log} SET records_archived = records_archived + c.n,"
            " records_failed = records_failed + c.f, batches = batches + 1,"
            f" cursor_row = COALESCE({cursor}, cursor_row),"
            " slowest_batch_ms = GREATEST(slowest_batch_ms,"
            "   CAST(round(1000 * extract(epoch FROM clock_timestamp() - now())) AS integer)),"
            " heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => :lease)"
            f" FROM (SELECT {count} AS n, {fails} AS f) c WHERE job_id = CAST(:job AS uuid) AND lease_owner = :owner"
            f" AND {guard}"
            f" RETURNING {self._fields}, c.n AS batch_moved, c.f AS batch_failed")

    @staticmethod
    def record_params(job_id: str, owner: str, *, cursor: list[str] | None, lease_seconds: int,
                      failed: int | None = None) -> dict[str, Any]:
        """The parameters of ``record_from``'s UPDATE, for the move statement and ``record_batch`` alike
        (``failed`` only where the statement does not count them itself)."""
        params: dict[str, Any] = {"job": job_id, "owner": owner, "new_cursor": cursor, "lease": lease_seconds}
        if failed is not None:
            params["failed"] = failed
        return params

    def recorded(self, job_id: str, row: dict[str, Any] | None) -> tuple[int, int, Job]:
        """The rows a batch moved and left live, and the job as it now is, from ``record_from``'s row."""
        if row is None:  # the batch's statement locked the job row as ours (lease_gate): only a bug gets here
            raise LeaseLostError(f"job {job_id} is no longer leased to this worker")
        moved, failed = int(row.pop("batch_moved")), int(row.pop("batch_failed"))
        return moved, failed, Job(row)

    def record_batch(self, params: dict[str, Any]) -> Job:
        """Count a batch that moved nothing (its rows were held, or none were left) and move the cursor."""
        return self.recorded(params["job"], self.db.row(self._record_sql, **params))[2]

    def set_eligible(self, job_id: str, owner: str, eligible: int, breakdown: dict[str, Any] | None = None) -> None:
        self.db.run(f"UPDATE {self.log} SET eligible = :e, breakdown = CAST(:b AS jsonb)"
                    " WHERE job_id = CAST(:j AS uuid) AND lease_owner = :o",
                    j=job_id, o=owner, e=eligible, b=json.dumps(breakdown) if breakdown is not None else None)

    def handoff(self, job_id: str, owner: str, next_hop: int, lease_seconds: int) -> bool:
        """Pass the job to hop ``next_hop``; only that hop's event can claim it next."""
        self.db.run(
            f"UPDATE {self.log} SET next_hop = :n, lease_owner = :h,"
            " lease_expires_at = now() + make_interval(secs => :l)"
            " WHERE job_id = CAST(:j AS uuid) AND lease_owner = :o AND state = 'running'",
            j=job_id, o=owner, n=next_hop, h=HANDOFF, l=lease_seconds)
        return self.db.row_count == 1

    def release(self, job_id: str, owner: str, message: str | None = None) -> None:
        """Pause: keep the job active with a free lease, so the next run can resume it at once."""
        self.db.run(f"UPDATE {self.log} SET lease_owner = NULL, lease_expires_at = NULL,"
                    " message = COALESCE(:m, message) WHERE job_id = CAST(:j AS uuid) AND lease_owner = :o",
                    j=job_id, o=owner, m=message)

    def finish(self, job_id: str, owner: str | None, state: str, message: str | None = None,
               error: str | None = None, result: dict[str, Any] | None = None) -> Job | None:
        """End the job. With owner=None the lease is not checked (failing a job from outside)."""
        row = self.db.row(
            f"UPDATE {self.log} SET state = :s, finished_at = now(),"
            " execution_time_ms = CAST(round(extract(epoch FROM now() - COALESCE(started_at, run_date)) * 1000)"
            " AS bigint), lease_owner = NULL, lease_expires_at = NULL, next_hop = NULL,"
            " message = COALESCE(:m, message), error_message = COALESCE(:e, error_message),"
            " options = CASE WHEN CAST(:r AS jsonb) IS NULL THEN options"
            "   ELSE jsonb_set(options, '{result}', CAST(:r AS jsonb)) END"
            f" WHERE job_id = CAST(:j AS uuid) AND {ACTIVE_SQL}"
            " AND (CAST(:o AS text) IS NULL OR lease_owner = :o) RETURNING *",
            j=job_id, o=owner, s=state, m=message, e=error, r=json.dumps(result) if result is not None else None)
        return Job(row) if row else None

    def fail(self, job_id: str, owner: str | None, error: str) -> Job | None:
        """Failed, or partial when some batches had already committed."""
        current = self.get(job_id)
        state = RunState.PARTIAL if current.records_archived else RunState.FAILED
        return self.finish(job_id, owner, state, message=f"run {state}", error=error[:2000])

    def request_cancel(self, job_id: object) -> Job:
        job = self.get(job_id)
        if not job.active:
            raise JobStateError(job.id, job.state, "cancel")
        self.db.run(f"UPDATE {self.log} SET cancel_requested = true WHERE job_id = CAST(:j AS uuid)", j=job.id)
        if job.state == RunState.PENDING and job.lease_owner is None:
            # Nobody works on it yet: end it now, the first hop will find it cancelled.
            self.finish(job.id, None, RunState.CANCELLED, message="cancelled before it started")
        return self.get(job.id)

    def mark_rolled_back(self, job_ids: list[str]) -> int:
        if not job_ids:
            return 0
        self.db.run(f"UPDATE {self.log} SET state = 'rolled_back', message = 'restored from the archive'"
                    " WHERE job_id = ANY(CAST(:j AS uuid[])) AND kind = 'archive' AND NOT dry_run",
                    j=job_ids)
        return self.db.row_count
