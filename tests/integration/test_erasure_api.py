"""POST /erasures through the status function's handler, on a real PostgreSQL: the request is
validated, recorded as an ``erase`` run (the key's HMAC only) and handed to the export function,
whose work the run then reports. The key never appears in an answer, the run log or a log line."""

from __future__ import annotations

import pytest

from archiver.erasure import database_key, erase_event
from handlers import status
from tests.api_client import request
from tests.helpers import add_customers, count, setup
from tests.integration.test_status_api import RecordingInvoker, ThrottledInvoker

SECRET_LOOKING = "not-a-key-7f3a9c"


@pytest.fixture
def victim(db, policy) -> int:
    setup(db, policy)
    (cid,) = add_customers(db, policy, [5])
    db.run("INSERT INTO nic_cc_call_log (customer_id, called_at, outcome) VALUES (:c, now(), 'answered')", c=cid)
    return cid


@pytest.fixture
def api(db, policy, settings) -> status.StatusDeps:
    """The status function's deps with an export function to hand erasures to (``api.eraser``: its invoker)."""
    return status.StatusDeps(db=db, policy=policy, settings=settings, invoker=RecordingInvoker(),
                             function_name="archiver-archive", export_function_name="archiver-export",
                             eraser=RecordingInvoker())


def test_an_erasure_is_recorded_handed_to_the_export_function_and_followed_as_a_run(db, policy, victim, api):
    answer = request(api, "POST", "/erasures", body={"key": victim})
    assert answer.status == 202, answer.body
    job_id = answer.body["job_id"]
    assert answer.headers["location"].endswith(f"/runs/{job_id}") and answer.body["state"] == "pending"
    ((function, payload),) = api.eraser.calls
    assert function == "archiver-export"
    assert payload == {"action": "erase", "job_id": job_id, "table": policy.live_table, "key": str(victim),
                       "by": "api", "dry_run": False}
    run = db.row("SELECT kind, trigger, options FROM nic_cc_archive_log WHERE job_id = CAST(:j AS uuid)", j=job_id)
    assert run["kind"] == "erase" and run["trigger"] == "api"
    assert run["options"] == {"key_hash": database_key(db, policy).hash(policy, str(victim)), "requested_by": "api"}

    assert erase_event(payload, db, policy)["status"] == "erased"  # what the export function does
    followed = request(api, "GET", f"/runs/{job_id}")
    assert followed.status == 200 and followed.body["state"] == "succeeded" and followed.body["kind"] == "erase"
    assert followed.body["removed"]["live"] == 1 and followed.body["removed"]["nic_cc_call_log"] == 1
    assert count(db, "nic_cc_customer", "id = :i", i=victim) == 0


def test_a_dry_run_erasure_removes_nothing_and_reports_what_it_would(db, policy, victim, api):
    answer = request(api, "POST", "/erasures", body={"key": str(victim), "dry_run": True, "table": policy.live_table})
    assert answer.status == 202
    ((_, payload),) = api.eraser.calls
    assert payload["dry_run"] is True and erase_event(payload, db, policy)["status"] == "dry_run"
    run = request(api, "GET", f"/runs/{answer.body['job_id']}").body
    assert run["dry_run"] is True and run["state"] == "succeeded" and run["removed"]["live"] == 1
    assert count(db, "nic_cc_customer", "id = :i", i=victim) == 1


@pytest.mark.parametrize(("body", "code"), [
    ({"key": SECRET_LOOKING}, 422),  # not a bigint
    ({"key": "9" * 201}, 422),
    ({}, 422),
    ({"key": True}, 422),
    ({"key": 1.5}, 422),
    ({"key": "1", "by": "me"}, 422),
    ({"key": "1", "table": "nope"}, 422),
    ("{not json", 400),
])
def test_bad_input_gets_one_line_and_never_the_key_back(db, policy, victim, api, capsys, body, code):
    answer = (request(api, "POST", "/erasures", raw=body) if isinstance(body, str)
              else request(api, "POST", "/erasures", body=body))
    assert answer.status == code and "\n" not in answer.body["error"]
    logged = capsys.readouterr()
    assert SECRET_LOOKING not in str(answer.body) + logged.out + logged.err
    assert not api.eraser.calls and count(db, "nic_cc_archive_log", "kind = 'erase'") == 0


def test_erasure_without_an_export_function_is_unavailable(db, policy, settings, victim):
    api = status.StatusDeps(db=db, policy=policy, settings=settings, invoker=RecordingInvoker(),
                            function_name="archiver-archive")
    answer = request(api, "POST", "/erasures", body={"key": victim})
    assert answer.status == 503 and "export" in answer.body["error"]


def test_an_export_function_that_cannot_be_invoked_fails_the_run_and_answers_502(db, policy, settings, victim):
    api = status.StatusDeps(db=db, policy=policy, settings=settings, invoker=RecordingInvoker(),
                            function_name="archiver-archive", export_function_name="archiver-export",
                            eraser=ThrottledInvoker())
    answer = request(api, "POST", "/erasures", body={"key": victim})
    assert answer.status == 502
    assert db.scalar("SELECT state FROM nic_cc_archive_log WHERE kind = 'erase'") == "failed"
    assert count(db, "nic_cc_customer", "id = :i", i=victim) == 1


def test_an_erasure_while_a_run_is_active_is_a_conflict(db, policy, victim, api):
    from archiver.jobs import JobStore

    JobStore(db, policy).create(batch_size=10, trigger="manual")
    answer = request(api, "POST", "/erasures", body={"key": victim})
    assert answer.status == 409 and not api.eraser.calls
