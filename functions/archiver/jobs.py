"""The job store: the run log's rows as typed ``Job`` records, and every statement on the log.

Every change of a job goes through a guarded UPDATE on its row (a ``JobStore`` method), so
duplicate or late invocations, crashed workers and concurrent starts resolve in the database,
not in memory. Run states are ``states.RunState`` (their table is in ``states.py``); no state is
spelt in SQL text but through ``states.sql_state``.

Leases: who may work on an active run. Four columns encode it (``lease_owner``: a worker's name,
``HANDOFF`` or NULL; ``lease_expires_at``; ``next_hop``; ``state``); ``Job.lease(now)`` names it:

==========  ====================================================================  ==============================
lease       encoded as                                                            who may claim it
==========  ====================================================================  ==============================
free        no owner, no expiry; state pending (created, never claimed) or ended  a hop 1 event, a takeover
held        a worker's name, ``lease_expires_at`` in the future                   that worker only (re-claim)
handed_off  ``HANDOFF``, ``next_hop`` = N, ``lease_expires_at`` in the future      the event of hop N only
paused      no owner, no expiry, state running (released on purpose)              a takeover (resume)
expired     an owner (a worker or ``HANDOFF``), ``lease_expires_at`` past          hop N's retry, a takeover
==========  ====================================================================  ==============================

Transitions, each by one ``JobStore`` method (a guarded UPDATE that changes nothing when refused):

===================  ==================================================  ==========================
method               from                                                to
===================  ==================================================  ==========================
create               -                                                   free (pending, next_hop 1)
claim (hop N)        handed_off to N; free with next_hop N; expired or   held (running, hop N)
                     paused at hop N; held by the same owner
claim (takeover)     free, paused, expired (any active run); held by     held (running, hop + 1)
                     the same owner
record_from,         held                                                held (lease renewed)
record_step,
record_export_file
handoff              held, state running                                 handed_off
release              held                                                paused
finish, fail         any active (given an owner: only that owner's)      free (ended)
reopen_export        an export: failed, partial, or not held             held (running)
===================  ==================================================  ==========================

The takeover rule (``Job.may_take_over``), used by the nightly trigger (``worker``) and by
``archiver run`` alike: an active archive run with no live lease (free, paused or expired: never
claimed, released, or its worker died) may be taken over. An export is continued by its chain.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from .config import Policy, PolicySet
from .db import Database, expecting
from .exceptions import (
    AlreadyRunningError,
    DuplicateTriggerError,
    InvalidJobIdError,
    JobNotFoundError,
    JobStateError,
    LeaseLostError,
    SchemaError,
    UniqueViolationError,
)
from .identifiers import qualified, quote
from .migration import LOG_COLUMNS
from .states import ACTIVE_SQL, ACTIVE_STATES, RunState, sql_state, sql_states

# Where an export lists its files in its options: the archive table's, the related archive tables'.
ExportFiles = Literal["files", "related_files"]

HANDOFF = "handoff"  # lease_owner of a run handed over to its next hop
# No live lease, in SQL: never claimed, released, or past its expiry (Lease.FREE, PAUSED, EXPIRED).
LEASE_FREE_SQL = "(lease_expires_at IS NULL OR lease_expires_at < now())"


class Lease(StrEnum):
    """Who may work on a run now (``Job.lease``); the module docstring's table says how each is encoded."""

    FREE = "free"
    HELD = "held"
    HANDED_OFF = "handed_off"
    PAUSED = "paused"
    EXPIRED = "expired"


# Leases nobody holds (what LEASE_FREE_SQL selects): a takeover may claim the run.
UNHELD = frozenset({Lease.FREE, Lease.PAUSED, Lease.EXPIRED})

_T = TypeVar("_T")


class _Row:
    """A run-log row read column by column, each checked against its field's type."""

    def __init__(self, row: Mapping[str, Any]) -> None:
        self.row = row

    def _value(self, name: str) -> Any:
        try:
            return self.row[name]
        except KeyError:
            raise SchemaError(f"the run log row has no column {name}: run `archiver migrate`") from None

    def get(self, name: str, kind: type[_T]) -> _T:
        value = self._value(name)
        if not isinstance(value, kind):
            raise SchemaError(f"run log column {name} holds {type(value).__name__}, expected {kind.__name__}")
        return value

    def maybe(self, name: str, kind: type[_T]) -> _T | None:
        return None if self._value(name) is None else self.get(name, kind)

    def state(self) -> RunState:
        value = self._value("state")
        try:
            return RunState(value)
        except ValueError:
            known = ", ".join(RunState)
            raise SchemaError(f"run log row of job {self._value('job_id')} has an unknown state"
                              f" {str(value)[:40]!r} (known: {known})") from None


@dataclass(frozen=True)
class Job:
    """One run, as its run-log row (``LOG_COLUMNS``, one field each) was when read."""

    row_id: int  # the log's ``id`` column (``Job.id`` is the run's id, ``job_id``, as everywhere)
    job_id: uuid.UUID
    kind: str
    policy_key: str
    run_date: datetime
    state: RunState
    status: str
    dry_run: bool
    trigger: str
    scheduled_for: datetime | None
    cutoff: datetime | None
    batch_size: int
    options: dict[str, Any]
    eligible: int | None
    records_archived: int
    records_failed: int
    processed: int
    percent_complete: Decimal
    batches: int
    hop: int
    next_hop: int | None
    cursor_row: list[str] | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    started_at: datetime | None
    finished_at: datetime | None
    execution_time_ms: int | None
    slowest_batch_ms: int
    message: str | None
    error_message: str | None
    breakdown: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """The job of a run-log row (columns beyond the log's are ignored), each field read from the column
        of its name (``row_id`` from ``id``) and checked against its declared type (``_FIELDS``). A missing
        column, a value of another type or a state ``RunState`` does not know is a SchemaError naming it."""
        r = _Row(row)
        values: dict[str, Any] = {"state": r.state()}
        for name, (kind, optional) in _FIELDS.items():
            if name != "state":
                column = "id" if name == "row_id" else name
                values[name] = r.maybe(column, kind) if optional else r.get(column, kind)
        return cls(**values)

    @property
    def id(self) -> str:
        return str(self.job_id)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def table(self) -> str:
        """The live table the run is for (its policy key is ``schema.table``)."""
        return self.policy_key.partition(".")[2]

    def lease(self, now: datetime) -> Lease:
        """The run's lease at ``now`` (the database's clock), as the module docstring's table names it."""
        if self.lease_expires_at is not None and self.lease_expires_at >= now:
            return Lease.HANDED_OFF if self.lease_owner == HANDOFF else Lease.HELD
        if self.lease_owner is not None:
            return Lease.EXPIRED
        return Lease.PAUSED if self.state == RunState.RUNNING else Lease.FREE

    def lease_free(self, now: datetime) -> bool:
        """No worker holds the job (never claimed, released, or expired): a takeover may claim it (see claim)."""
        return self.lease(now) in UNHELD

    def may_take_over(self, now: datetime) -> bool:
        """The takeover rule (module docstring): an active archive run whose lease nobody holds.
        An export is continued by the export chain, never taken over by an archive worker."""
        return self.active and self.kind == "archive" and self.lease_free(now)

    def as_dict(self) -> dict[str, Any]:
        """The job-status view (seed 002's fields, the seed log's fields), JSON-ready."""
        out: dict[str, Any] = {
            "job_id": self.id, "table": self.table, "kind": self.kind, "state": self.state.value,
            "status": self.status, "dry_run": self.dry_run, "trigger": self.trigger,
            "eligible": self.eligible, "archived": self.records_archived, "failed": self.records_failed,
            "processed": self.processed, "percent_complete": float(self.percent_complete),
            "batches": self.batches, "hops": self.hop, "duration_ms": self.execution_time_ms,
            "batch_size": self.batch_size, "cutoff": _iso(self.cutoff),
            "scheduled_for": _iso(self.scheduled_for), "run_date": _iso(self.run_date),
            "started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at),
            "message": self.message, "error": self.error_message,
            "cancel_requested": self.cancel_requested,
        }
        if self.dry_run:
            out["by_line_of_business"] = (self.breakdown or {}).get("by_line_of_business", {})
            out["warnings"] = (self.breakdown or {}).get("warnings", [])
        if self.kind != "archive":
            out.update(self.options.get("result", {}))
        return out


def _field_kinds(cls: type) -> dict[str, tuple[type, bool]]:
    """{field: (the type its value must be an instance of, whether it may be None)} from the annotations:
    ``int | None`` is (int, True), ``list[str]`` is (list, False)."""
    out = {}
    for name, hint in get_type_hints(cls).items():
        args = get_args(hint)
        optional = type(None) in args
        if optional:
            (hint,) = (a for a in args if a is not type(None))
        out[name] = (get_origin(hint) or hint, optional)
    return out


_FIELDS = _field_kinds(Job)


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
    """Reads and guarded writes of the run log of one policy: every statement on the log is here."""

    def __init__(self, db: Database, policy: Policy) -> None:
        self.db = db
        self.policy = policy
        self.log = qualified(policy.schema_name, policy.log_table)
        # The log's columns are named in every read and RETURNING (the Job's fields), so a column
        # another version adds cannot change a result. Every batch locks the job row and records
        # itself in it, inside the batch's own statements (``lease_gate``, ``record_from``).
        self._fields = ", ".join(quote(name) for name, _ in LOG_COLUMNS)
        self._record_sql = self.record_from(None)
        db.prepare(self._record_sql)

    def _job(self, sql: str, **params: Any) -> Job | None:
        row = self.db.row(sql, **params)
        return Job.from_row(row) if row is not None else None

    # -- reads -------------------------------------------------------------------------
    def get(self, job_id: object) -> Job:
        jid = parse_job_id(job_id)
        job = self._job(f"SELECT {self._fields} FROM {self.log} WHERE job_id = CAST(:j AS uuid) AND policy_key = :p",
                        j=jid, p=self.policy.key)
        if job is None:
            raise JobNotFoundError(jid)
        return job

    def recent(self, limit: int = 20, kind: str | None = None, keys: Sequence[str] | None = None) -> list[Job]:
        """The newest runs of this policy (or of the policies ``keys`` name: several tables, one log)."""
        rows = self.db.rows(
            f"SELECT {self._fields} FROM {self.log} WHERE policy_key = ANY(CAST(:p AS text[]))"
            " AND (CAST(:k AS text) IS NULL OR kind = :k) ORDER BY run_date DESC, id DESC LIMIT :n",
            p=list(keys or [self.policy.key]), k=kind, n=limit)
        return [Job.from_row(r) for r in rows]

    def active(self) -> Job | None:
        return self._job(f"SELECT {self._fields} FROM {self.log} WHERE policy_key = :p AND {ACTIVE_SQL}",
                         p=self.policy.key)

    def unfinished_export(self, dest: str) -> Job | None:
        """The latest export to ``dest`` that is neither verified nor abandoned by its worker."""
        return self._job(
            f"SELECT {self._fields} FROM {self.log} WHERE policy_key = :p AND kind = 'export' AND NOT dry_run"
            " AND options->>'dest' = :d AND state IN"
            f" {sql_states(RunState.PENDING, RunState.RUNNING, RunState.FAILED, RunState.PARTIAL)}"
            " AND COALESCE(options->>'verified', 'false') <> 'true' ORDER BY run_date DESC LIMIT 1",
            p=self.policy.key, d=dest)

    def own_rows(self, alias: str) -> str:
        """SQL: the archive row ``alias`` was archived by a run of this policy (or by none: rows archived
        before the run log existed). Its parameter is ``:own``, the policy key."""
        return (f"({alias}.archive_job_id IS NULL OR {alias}.archive_job_id IN"
                f" (SELECT job_id FROM {self.log} WHERE policy_key = :own))")

    # -- creation ----------------------------------------------------------------------
    def create(self, *, kind: str = "archive", dry_run: bool = False, batch_size: int, trigger: str,
               scheduled_for: datetime | None = None, cutoff: datetime | None = None,
               options: dict[str, Any] | None = None) -> Job:
        """Insert a pending job; the database refuses a second active one for the policy."""
        jid = str(uuid.uuid4())
        try:
            with self.db.transaction(), expecting(UniqueViolationError):
                job = self._job(
                    f"INSERT INTO {self.log} (job_id, kind, policy_key, state, dry_run, trigger, scheduled_for,"
                    " cutoff, batch_size, options, next_hop) VALUES (CAST(:j AS uuid), :kind, :p,"
                    f" {sql_state(RunState.PENDING)}, :dry, :trig, :sched, :cut, :bs, CAST(:opt AS jsonb), 1)"
                    f" RETURNING {self._fields}",
                    j=jid, kind=kind, p=self.policy.key, dry=dry_run, trig=trigger, sched=scheduled_for,
                    cut=cutoff, bs=batch_size, opt=json.dumps(options or {}))
        except UniqueViolationError:
            if scheduled_for is not None:
                same = self._job(f"SELECT {self._fields} FROM {self.log} WHERE policy_key = :p AND scheduled_for = :s",
                                 p=self.policy.key, s=scheduled_for)
                if same is not None:
                    raise DuplicateTriggerError(same.id, same.state) from None
            current = self.active()
            if current is None:  # it finished in the meantime: the caller may simply try again
                raise AlreadyRunningError("unknown", "finished") from None
            raise AlreadyRunningError(current.id, current.state) from None
        assert job is not None
        return job

    # -- leases ------------------------------------------------------------------------
    def claim(self, job_id: str, owner: str, lease_seconds: int, hop: int | None) -> Job | None:
        """Take the job's lease for ``owner``; None when another worker rightly holds it.

        hop=N (a continuation): the hop handed over to, or a retry of hop N whose worker died.
        hop=None (a takeover): any active job whose lease is free or expired.
        The owner may always re-claim its own lease (after a reconnect).
        """
        return self._job(
            f"UPDATE {self.log} SET state = {sql_state(RunState.RUNNING)}, started_at = COALESCE(started_at, now()),"
            " hop = COALESCE(CAST(:h AS integer), hop + 1), next_hop = NULL, lease_owner = :o,"
            " lease_expires_at = now() + make_interval(secs => :l), heartbeat_at = now()"
            f" WHERE job_id = CAST(:j AS uuid) AND policy_key = :p AND {ACTIVE_SQL} AND ("
            "   lease_owner = :o"
            "   OR (CAST(:h AS integer) IS NOT NULL AND next_hop = :h)"
            f"   OR (CAST(:h AS integer) IS NOT NULL AND hop = :h AND next_hop IS NULL AND {LEASE_FREE_SQL})"
            f"   OR (CAST(:h AS integer) IS NULL AND {LEASE_FREE_SQL}))"
            f" RETURNING {self._fields}",
            j=job_id, p=self.policy.key, o=owner, l=lease_seconds, h=hop)

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

    @staticmethod
    def recorded(job_id: str, row: Mapping[str, Any] | None) -> tuple[int, int, Job]:
        """The rows a batch moved and left live, and the job as it now is, from ``record_from``'s row."""
        if row is None:  # the batch's statement locked the job row as ours (lease_gate): only a bug gets here
            raise LeaseLostError(f"job {job_id} is no longer leased to this worker")
        return int(row["batch_moved"]), int(row["batch_failed"]), Job.from_row(row)

    def record_batch(self, params: dict[str, Any]) -> Job:
        """Count a batch that moved nothing (its rows were held, or none were left) and move the cursor."""
        return self.recorded(params["job"], self.db.row(self._record_sql, **params))[2]

    def record_whole_partition(self, job_id: str, partition: str, rows: int, how: str) -> None:
        """A partition the run moved whole, in its notes (``options->'whole_partitions'``): its name, rows
        and ``how`` ("attached" to the archive, or "copied"), no row's data. In the move's own
        transaction, after ``record_from`` counted it."""
        self.db.run(f"UPDATE {self.log} SET options = jsonb_set(options, '{{whole_partitions}}',"
                    " COALESCE(options -> 'whole_partitions', CAST('[]' AS jsonb))"
                    " || jsonb_build_array(jsonb_build_object('partition', CAST(:name AS text),"
                    " 'rows', CAST(:rows AS bigint), 'how', CAST(:how AS text)))) WHERE job_id = CAST(:job AS uuid)",
                    name=partition, rows=rows, how=how, job=job_id)

    def record_step(self, job_id: str, lease_seconds: int = 3600) -> None:
        """Count a batch of a run that records its totals at its end (restore), and renew its lease."""
        self.db.run(f"UPDATE {self.log} SET batches = batches + 1, heartbeat_at = now(),"
                    " lease_expires_at = now() + make_interval(secs => :l) WHERE job_id = CAST(:j AS uuid)",
                    j=job_id, l=lease_seconds)

    def record_totals(self, job_id: str, done: int, left: int = 0) -> None:
        """A run's totals at its end (restore, purge): rows it dealt with, rows it left (conflicts),
        and their sum as the rows it found eligible."""
        self.db.run(f"UPDATE {self.log} SET records_archived = :r, records_failed = :c, eligible = :e"
                    " WHERE job_id = CAST(:j AS uuid)", r=done, c=left, e=done + left, j=job_id)

    def set_eligible(self, job_id: str, owner: str, eligible: int, breakdown: dict[str, Any] | None = None) -> None:
        self.db.run(f"UPDATE {self.log} SET eligible = :e, breakdown = CAST(:b AS jsonb)"
                    " WHERE job_id = CAST(:j AS uuid) AND lease_owner = :o",
                    j=job_id, o=owner, e=eligible, b=json.dumps(breakdown) if breakdown is not None else None)

    def handoff(self, job_id: str, owner: str, next_hop: int, lease_seconds: int) -> bool:
        """Pass the job to hop ``next_hop``; only that hop's event can claim it next."""
        self.db.run(
            f"UPDATE {self.log} SET next_hop = :n, lease_owner = :h,"
            " lease_expires_at = now() + make_interval(secs => :l)"
            f" WHERE job_id = CAST(:j AS uuid) AND lease_owner = :o AND state = {sql_state(RunState.RUNNING)}",
            j=job_id, o=owner, n=next_hop, h=HANDOFF, l=lease_seconds)
        return self.db.row_count == 1

    def release(self, job_id: str, owner: str, message: str | None = None) -> None:
        """Pause: keep the job active with a free lease, so the next run can resume it at once."""
        self.db.run(f"UPDATE {self.log} SET lease_owner = NULL, lease_expires_at = NULL,"
                    " message = COALESCE(:m, message) WHERE job_id = CAST(:j AS uuid) AND lease_owner = :o",
                    j=job_id, o=owner, m=message)

    def finish(self, job_id: str, owner: str | None, state: RunState, message: str | None = None,
               error: str | None = None, result: dict[str, Any] | None = None) -> Job | None:
        """End the job. With owner=None the lease is not checked (failing a job from outside)."""
        return self._job(
            f"UPDATE {self.log} SET state = :s, finished_at = now(),"
            " execution_time_ms = CAST(round(extract(epoch FROM now() - COALESCE(started_at, run_date)) * 1000)"
            " AS bigint), lease_owner = NULL, lease_expires_at = NULL, next_hop = NULL,"
            " message = COALESCE(:m, message), error_message = COALESCE(:e, error_message),"
            " options = CASE WHEN CAST(:r AS jsonb) IS NULL THEN options"
            "   ELSE jsonb_set(options, '{result}', CAST(:r AS jsonb)) END"
            f" WHERE job_id = CAST(:j AS uuid) AND {ACTIVE_SQL}"
            f" AND (CAST(:o AS text) IS NULL OR lease_owner = :o) RETURNING {self._fields}",
            j=job_id, o=owner, s=RunState(state).value, m=message, e=error,
            r=json.dumps(result) if result is not None else None)

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
            # Nobody works on it yet (lease free, never claimed): end it now, the first hop will find it cancelled.
            self.finish(job.id, None, RunState.CANCELLED, message="cancelled before it started")
        return self.get(job.id)

    def mark_rolled_back(self, job_ids: list[str]) -> int:
        if not job_ids:
            return 0
        self.db.run(f"UPDATE {self.log} SET state = {sql_state(RunState.ROLLED_BACK)},"
                    " message = 'restored from the archive'"
                    " WHERE job_id = ANY(CAST(:j AS uuid[])) AND kind = 'archive' AND NOT dry_run",
                    j=job_ids)
        return self.db.row_count

    # -- exports (export.py): the file list in ``options``, the verification ---------------
    def reopen_export(self, job_id: str, owner: str) -> Job | None:
        """Continue an export: take over a lease nobody holds (or one handed over), or reopen one that
        failed. None: its worker holds the lease."""
        return self._job(
            f"UPDATE {self.log} SET state = {sql_state(RunState.RUNNING)}, finished_at = NULL, error_message = NULL,"
            " lease_owner = :o, lease_expires_at = now() + interval '1 hour', heartbeat_at = now(), hop = hop + 1,"
            " next_hop = NULL WHERE job_id = CAST(:j AS uuid) AND kind = 'export'"
            f" AND (state IN {sql_states(RunState.FAILED, RunState.PARTIAL)}"
            f" OR lease_owner = :o OR {LEASE_FREE_SQL} OR next_hop IS NOT NULL)"
            f" RETURNING {self._fields}", j=job_id, o=owner)

    def record_export_file(self, job_id: str, owner: str, entry: dict[str, Any], rows: int,
                           field: ExportFiles = "files") -> bool:
        """An export wrote a file of ``rows`` rows: list it under ``field`` (the archive table's files, or
        the related archive tables'), count them and the batch, renew the lease. False when the lease is
        no longer ``owner``'s (nothing recorded)."""
        updated = self.db.run(
            f"UPDATE {self.log} SET options = jsonb_set(options, '{{{field}}}',"
            f" COALESCE(options->'{field}', '[]'::jsonb) || CAST(:f AS jsonb)),"
            " records_archived = records_archived + :n, batches = batches + 1, heartbeat_at = now(),"
            " lease_expires_at = now() + interval '1 hour' WHERE job_id = CAST(:j AS uuid) AND lease_owner = :o"
            " RETURNING job_id", f=json.dumps([entry]), n=rows, j=job_id, o=owner)
        return bool(updated)

    def record_export_files(self, job_id: str, files: list[dict[str, Any]], rows: int | None = None,
                            field: ExportFiles = "files") -> None:
        """An export's files rewritten (repaired, or a record erased from them): the new list under
        ``field``, and with ``rows`` the rows they now hold."""
        self.db.run(f"UPDATE {self.log} SET options = jsonb_set(options, '{{{field}}}', CAST(:f AS jsonb)),"
                    " records_archived = COALESCE(CAST(:n AS bigint), records_archived)"
                    " WHERE job_id = CAST(:j AS uuid)", f=json.dumps(files), n=rows, j=job_id)

    def record_verification(self, job_id: str, verified: bool) -> None:
        """An export's verification: its verdict and time, also in its result."""
        v = json.dumps(verified)
        self.db.run(f"UPDATE {self.log} SET options = options || jsonb_build_object('verified',"
                    " CAST(:v AS jsonb), 'verified_at', now(), 'result', COALESCE(options->'result', '{}'::jsonb)"
                    " || jsonb_build_object('verified', CAST(:v AS jsonb))) WHERE job_id = CAST(:j AS uuid)",
                    v=v, j=job_id)

    def mark_export_failed(self, job_id: str, error: str) -> None:
        """A finished export failed its verification again: failed, so the next export continues it."""
        self.db.run(f"UPDATE {self.log} SET state = {sql_state(RunState.FAILED)}, error_message = :e"
                    " WHERE job_id = CAST(:j AS uuid)", e=error, j=job_id)


# The seed's weekly review ("SUM(records_archived), AVG(execution_time_ms) ... GROUP BY
# DATE(run_date)"), over the policy's calendar days, with the days without a run shown as zeros.
_DAILY_ARCHIVE_SQL = """
WITH bounds AS (
  SELECT COALESCE(CAST(:last AS date), CAST(now() AT TIME ZONE :tz AS date)) AS today
), days AS (
  SELECT CAST(d AS date) AS day
  FROM bounds, generate_series(today - (:n - 1), today, interval '1 day') AS d
), runs AS (
  SELECT CAST(run_date AT TIME ZONE :tz AS date) AS day, state, records_archived, execution_time_ms
  FROM {log}, bounds
  WHERE policy_key = :p AND kind = 'archive' AND NOT dry_run
    AND run_date >= CAST(today - (:n - 1) AS timestamp) AT TIME ZONE :tz
    AND run_date < CAST(today + 1 AS timestamp) AT TIME ZONE :tz
)
SELECT days.day, count(runs.day) AS runs, COALESCE(sum(runs.records_archived), 0) AS archived,
       CAST(round(avg(runs.execution_time_ms)) AS bigint) AS avg_duration_ms,
       count(*) FILTER (WHERE runs.state = {failed}) AS failures,
       count(*) FILTER (WHERE runs.state = {partial}) AS partial
FROM days LEFT JOIN runs ON runs.day = days.day
GROUP BY days.day ORDER BY days.day DESC"""

_LAST_SUCCESS_AND_ACTIVE_SQL = """
SELECT max(finished_at) FILTER (WHERE state = {succeeded} AND kind = 'archive' AND NOT dry_run) AS last_ok,
       max(CAST(job_id AS text)) FILTER (WHERE {active}) AS active
FROM {log} WHERE policy_key = ANY(CAST(:p AS text[]))"""


@dataclass(frozen=True)
class DayTotals:
    """One calendar day of a policy's archive runs (dry runs left out), as the weekly review shows it."""

    day: date
    runs: int
    archived: int
    avg_duration_ms: int | None
    failures: int
    partial: int


class RunLogSummary:
    """The read side of the run log every policy shares: the aggregates the status API and the
    reports show. Read-only, and unlike ``JobStore`` bound to no policy and preparing nothing."""

    def __init__(self, db: Database, schema: str, log_table: str) -> None:
        self.db = db
        self.log = qualified(schema, log_table)

    def daily_archive_totals(self, policy_key: str, timezone: str, days: int,
                             last_day: date | None = None) -> list[DayTotals]:
        """Per calendar day (in ``timezone``) of the ``days`` ending with ``last_day`` (default today),
        newest first, the policy's archive runs: count, rows archived, average time, failures, partial."""
        sql = _DAILY_ARCHIVE_SQL.format(log=self.log, failed=sql_state(RunState.FAILED),
                                        partial=sql_state(RunState.PARTIAL))
        return [DayTotals(day=r["day"], runs=int(r["runs"]), archived=int(r["archived"]),
                          avg_duration_ms=None if r["avg_duration_ms"] is None else int(r["avg_duration_ms"]),
                          failures=int(r["failures"]), partial=int(r["partial"]))
                for r in self.db.rows(sql, tz=timezone, n=days, p=policy_key, last=last_day)]

    def last_success_and_active(self, policy_keys: Sequence[str]) -> tuple[datetime | None, str | None]:
        """When the last successful (not dry) archive run of these policies finished, and the id of
        an active run of any of them (None for either when there is none)."""
        sql = _LAST_SUCCESS_AND_ACTIVE_SQL.format(log=self.log, succeeded=sql_state(RunState.SUCCEEDED),
                                                  active=ACTIVE_SQL)
        row = self.db.row(sql, p=list(policy_keys))
        assert row is not None  # an aggregate always answers one row
        return row["last_ok"], row["active"]
