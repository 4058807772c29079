"""The run log's typed record (``Job.from_row``), its lease names and the takeover rule, without a
database: rows are built here as pg8000 returns them."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from archiver.exceptions import SchemaError
from archiver.jobs import HANDOFF, UNHELD, Job, Lease
from archiver.migration import LOG_COLUMNS
from archiver.states import ACTIVE_STATES, RunState, sql_state, sql_states

NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
JOB_ID = uuid.UUID("5f0c6a2e-1b7d-4c1e-9a53-0d7e2b9c4f11")


def log_row(**changes: Any) -> dict[str, Any]:
    """A run-log row of a finished archive run, every column set, as the driver returns it."""
    row: dict[str, Any] = {
        "id": 7, "job_id": JOB_ID, "kind": "archive", "policy_key": "public.nic_cc_customer",
        "run_date": NOW, "state": "succeeded", "status": "success", "dry_run": False, "trigger": "schedule",
        "scheduled_for": NOW, "cutoff": NOW - timedelta(days=1095), "batch_size": 1000,
        "options": {"cutoffs": {"default": "2023-12-05T02:00:00+00:00"}}, "eligible": 1500,
        "records_archived": 1490, "records_failed": 10, "processed": 1500, "percent_complete": Decimal("100.0"),
        "batches": 2, "hop": 1, "next_hop": None, "cursor_row": ["2023-01-01 00:00:00+00", "1500"],
        "lease_owner": None, "lease_expires_at": None, "heartbeat_at": NOW, "cancel_requested": False,
        "started_at": NOW, "finished_at": NOW + timedelta(seconds=3), "execution_time_ms": 3000,
        "slowest_batch_ms": 12, "message": "archived 1490 rows", "error_message": None, "breakdown": None,
    }
    row.update(changes)
    return row


def field_types() -> dict[str, Any]:
    return typing.get_type_hints(Job)


def is_typed(value: Any, hint: Any) -> bool:
    """``value`` is of the field's declared type (``X | None`` and ``list[str]`` / ``dict[str, Any]`` too)."""
    if isinstance(hint, types.UnionType):
        return any(is_typed(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint) or hint
    if not isinstance(value, origin):
        return False
    if origin is list:
        (item,) = typing.get_args(hint)
        return all(isinstance(v, item) for v in value)
    return True


def test_the_job_has_one_field_per_run_log_column_in_the_log_order():
    columns = ["row_id" if name == "id" else name for name, _ in LOG_COLUMNS]
    assert [f.name for f in dataclasses.fields(Job)] == columns


def test_from_row_gives_every_column_its_declared_type():
    job = Job.from_row(log_row())
    hints = field_types()
    for f in dataclasses.fields(Job):
        assert is_typed(getattr(job, f.name), hints[f.name]), f.name
    assert job.state is RunState.SUCCEEDED and job.id == str(JOB_ID) and job.row_id == 7
    assert job.table == "nic_cc_customer" and not job.active


def test_from_row_reads_nullable_columns_as_none():
    nullable = [f.name for f in dataclasses.fields(Job) if isinstance(field_types()[f.name], types.UnionType)]
    row = log_row(**{("id" if n == "row_id" else n): None for n in nullable})
    job = Job.from_row(row)
    assert all(getattr(job, n) is None for n in nullable)
    assert "eligible" in nullable and "cutoff" in nullable and "state" not in nullable


def test_from_row_ignores_columns_beyond_the_log_and_is_frozen():
    job = Job.from_row({**log_row(), "batch_moved": 5, "a_column_of_a_newer_version": "x"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.state = RunState.FAILED  # type: ignore[misc]


def test_from_row_rejects_an_unknown_state_naming_it_and_the_known_ones():
    with pytest.raises(SchemaError) as err:
        Job.from_row(log_row(state="archived"))
    message = str(err.value)
    assert "unknown state 'archived'" in message and str(JOB_ID) in message
    assert all(s.value in message for s in RunState)


@pytest.mark.parametrize(("column", "value", "says"), [
    ("records_archived", "1490", "records_archived holds str, expected int"),
    ("state", None, "unknown state 'None'"),
    ("run_date", "2026-12-04", "run_date holds str, expected datetime"),
    ("options", None, "options holds NoneType, expected dict"),
])
def test_from_row_rejects_a_value_of_another_type_naming_the_column(column, value, says):
    with pytest.raises(SchemaError, match=says):
        Job.from_row(log_row(**{column: value}))


def test_from_row_of_a_log_missing_a_column_asks_for_migrate():
    row = log_row()
    del row["slowest_batch_ms"]
    with pytest.raises(SchemaError, match="no column slowest_batch_ms: run `archiver migrate`"):
        Job.from_row(row)


def test_as_dict_keeps_the_status_view_byte_for_byte():
    job = Job.from_row(log_row(kind="restore", dry_run=True, breakdown={"by_line_of_business": {"retail": 3}},
                               options={"result": {"restored": 1490, "conflicts": 10}}))
    assert json.dumps(job.as_dict()) == json.dumps({
        "job_id": str(JOB_ID), "table": "nic_cc_customer", "kind": "restore", "state": "succeeded",
        "status": "success", "dry_run": True, "trigger": "schedule", "eligible": 1500, "archived": 1490,
        "failed": 10, "processed": 1500, "percent_complete": 100.0, "batches": 2, "hops": 1,
        "duration_ms": 3000, "batch_size": 1000, "cutoff": "2023-12-05T02:00:00+00:00",
        "scheduled_for": "2026-12-04T02:00:00+00:00", "run_date": "2026-12-04T02:00:00+00:00",
        "started_at": "2026-12-04T02:00:00+00:00", "finished_at": "2026-12-04T02:00:03+00:00",
        "message": "archived 1490 rows", "error": None, "cancel_requested": False,
        "by_line_of_business": {"retail": 3}, "warnings": [], "restored": 1490, "conflicts": 10,
    })
    assert type(job.as_dict()["state"]) is str


# -- leases ---------------------------------------------------------------------------------
LATER, EARLIER = NOW + timedelta(seconds=30), NOW - timedelta(seconds=1)


@pytest.mark.parametrize(("state", "owner", "expires", "next_hop", "lease"), [
    ("pending", None, None, 1, Lease.FREE),  # created, never claimed
    ("succeeded", None, None, None, Lease.FREE),  # ended
    ("running", "worker-1", LATER, None, Lease.HELD),
    ("running", HANDOFF, LATER, 3, Lease.HANDED_OFF),
    ("running", None, None, None, Lease.PAUSED),  # released on purpose (run_until, a bounded run)
    ("running", "worker-1", EARLIER, None, Lease.EXPIRED),  # its worker died
    ("running", HANDOFF, EARLIER, 3, Lease.EXPIRED),  # hop 3's event never came
])
def test_the_lease_is_named_from_the_columns_that_encode_it(state, owner, expires, next_hop, lease):
    job = Job.from_row(log_row(state=state, lease_owner=owner, lease_expires_at=expires, next_hop=next_hop))
    assert job.lease(NOW) is lease
    assert job.lease_free(NOW) is (lease in UNHELD)


def test_a_lease_expiring_exactly_now_is_still_held():
    job = Job.from_row(log_row(state="running", lease_owner="worker-1", lease_expires_at=NOW))
    assert job.lease(NOW) is Lease.HELD  # as the claim's SQL: free once lease_expires_at < now()


@pytest.mark.parametrize(("kind", "state", "owner", "expires", "may"), [
    ("archive", "running", "worker-1", EARLIER, True),  # its worker died
    ("archive", "running", None, None, True),  # paused: resumed
    ("archive", "pending", None, None, True),  # its first hop never came
    ("archive", "running", "worker-1", LATER, False),  # a live worker holds it
    ("archive", "running", HANDOFF, LATER, False),  # its next hop is on its way
    ("archive", "failed", None, None, False),  # ended
    ("export", "running", "export-1", EARLIER, False),  # the export chain continues exports
])
def test_the_takeover_rule(kind, state, owner, expires, may):
    job = Job.from_row(log_row(kind=kind, state=state, lease_owner=owner, lease_expires_at=expires))
    assert job.may_take_over(NOW) is may


def test_states_are_spelt_in_sql_from_the_enum():
    assert sql_state(RunState.ROLLED_BACK) == "'rolled_back'"
    assert sql_states(*ACTIVE_STATES) == "('pending', 'running')"
    with pytest.raises(ValueError):
        sql_state("archived")  # type: ignore[arg-type]
