"""Every route of the status API through its Lambda handler, on a real PostgreSQL.

The archive function is stood in for by an invoker that records the start events (or by the
local server's background invoker, which really archives, or by moto's Lambda).
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from dataclasses import replace

import boto3
import pytest

from archiver import aws
from archiver import status as core
from archiver.db import Database
from archiver.engine import Archiver
from archiver.jobs import JobStore
from handlers import status
from local import localapi
from tests.api_client import request
from tests.helpers import add_customers, count, setup

UNKNOWN = "5f0e4c1e-1111-4000-8000-000000000000"


class RecordingInvoker:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def invoke_async(self, function: str, payload: dict) -> None:
        self.calls.append((function, payload))


class ThrottledInvoker:
    def invoke_async(self, function: str, payload: dict) -> None:
        raise RuntimeError("Rate exceeded")


@pytest.fixture
def customers(db, policy):
    setup(db, policy)
    add_customers(db, policy, [70 + i for i in range(30)] + [5, 6, 7])


@pytest.fixture
def use(db, policy, settings):
    """Makes the status function's deps (default: a recording invoker; ``changes`` to the settings)."""
    def make(invoker=None, **changes):
        return status.StatusDeps(db=db, policy=policy, settings=settings.model_copy(update=changes) if changes
                                 else settings, invoker=invoker or RecordingInvoker(),
                                 function_name="archiver-archive")
    return make


@pytest.fixture
def api(customers, use):
    return use()


def run_to_end(db, policy, settings, **kw):
    archiver = Archiver(db, policy, settings)
    job = archiver.start(**kw)
    return archiver.run_hop(job.id, owner="w", hop=1).job


# -- POST /runs ---------------------------------------------------------------------------------
def test_start_creates_the_run_and_invokes_the_archive_function(api, db, policy):
    answer = request(api, "POST", "/runs")
    assert answer.status == 202
    job_id = answer.body["job_id"]
    assert answer.body["state"] == "pending"
    assert answer.body["status_url"] == f"https://abc123.execute-api.eu-west-1.amazonaws.com/local/runs/{job_id}"
    assert answer.headers["location"] == answer.body["status_url"]
    assert api.invoker.calls == [("archiver-archive", {"action": "start", "job_id": job_id,
                                                       "table": "nic_cc_customer"})]
    job = JobStore(db, policy).get(job_id)
    assert (job.state, job.trigger, job.dry_run, job.batch_size) == ("pending", "api", False, policy.batch_size)


def test_start_passes_dry_run_and_batch_size_on_through_the_run_log(api, db, policy):
    answer = request(api, "POST", "/runs", body={"dry_run": True, "batch_size": 50})
    assert answer.status == 202
    [(_, event)] = api.invoker.calls
    assert event == {"action": "start", "job_id": answer.body["job_id"], "table": "nic_cc_customer"}
    job = JobStore(db, policy).get(answer.body["job_id"])
    assert (job.dry_run, job.batch_size) == (True, 50)


def test_status_url_uses_the_configured_base_url(customers, use):
    deps = use(status_base_url="https://archiver.example.com/api/")
    answer = request(deps, "POST", "/runs", body={})
    assert answer.body["status_url"] == f"https://archiver.example.com/api/runs/{answer.body['job_id']}"


def test_start_while_a_run_is_active_answers_409_with_the_active_job(api, db, policy):
    first = request(api, "POST", "/runs").body["job_id"]
    answer = request(api, "POST", "/runs", body={"dry_run": True})
    assert answer.status == 409
    assert answer.body["job_id"] == first
    assert answer.body["state"] == "pending"
    assert "already active" in answer.body["error"]
    assert len(api.invoker.calls) == 1
    assert count(db, "nic_cc_archive_log") == 1


def test_start_that_cannot_invoke_fails_the_run_and_answers_502(customers, use, db, policy):
    deps = use(invoker=ThrottledInvoker())
    answer = request(deps, "POST", "/runs")
    assert answer.status == 502
    job = JobStore(db, policy).get(answer.body["job_id"])
    assert job.state == "failed" and job.error_message == "invoke failed: RuntimeError"
    deps = use()  # nothing is left active: the next start goes through
    assert request(deps, "POST", "/runs").status == 202


@pytest.mark.parametrize("raw", ['{"batch_size": "10"}', '{"batch_size": true}', '{"batch_size": 0}',
                                 '{"batch_size": 10001}', '{"dry_run": "true"}', '{"force": true}', "{oops"])
def test_bad_start_request_creates_nothing(api, db, raw):
    answer = request(api, "POST", "/runs", raw=raw)
    assert answer.status in (400, 422)
    assert answer.body["error"]
    assert count(db, "nic_cc_archive_log") == 0
    assert api.invoker.calls == []


# -- GET /runs, GET /runs/{id} ----------------------------------------------------------------------
def test_start_on_a_read_only_database_answers_503_saying_so(api, db):
    db.run("SET default_transaction_read_only = on")  # as on a hot standby: every write refused (25006)
    answer = request(api, "POST", "/runs", body={"dry_run": True})
    assert answer.status == 503
    assert "read-only" in answer.body["error"] and "primary" in answer.body["error"]
    assert api.invoker.calls == []
    db.run("SET default_transaction_read_only = off")
    assert count(db, "nic_cc_archive_log") == 0


def test_start_by_a_role_without_its_grants_answers_503_naming_them(customers, use, db, dbname):
    role = f"archiver_reader_{uuid.uuid4().hex[:8]}"
    for sql in (f'CREATE ROLE "{role}" LOGIN', f'GRANT CONNECT ON DATABASE "{dbname}" TO "{role}"',
                f'GRANT SELECT ON nic_cc_archive_log TO "{role}"'):
        db.run(sql)
    as_role = Database(replace(db.params, user=role))
    try:
        deps = use()
        answer = request(replace(deps, db=as_role), "POST", "/runs", body={"dry_run": False})
        assert answer.status == 503
        assert answer.body["error"].startswith("permission denied: the database role cannot run without")
        assert f'GRANT INSERT, UPDATE ON "public"."nic_cc_archive_log" TO "{role}"' in answer.body["error"]
        assert deps.invoker.calls == [] and count(db, "nic_cc_archive_log") == 0
    finally:
        as_role.close()
        db.run(f'DROP OWNED BY "{role}"')
        db.run(f'DROP ROLE "{role}"')


def test_runs_are_listed_newest_first_and_limited(api, db, policy, settings):
    ids = [run_to_end(db, policy, settings, dry_run=True).id for _ in range(3)]
    answer = request(api, "GET", "/runs")
    assert answer.status == 200
    assert [r["job_id"] for r in answer.body["runs"]] == ids[::-1]
    assert [r["job_id"] for r in request(api, "GET", "/runs", "limit=2").body["runs"]] == ids[:0:-1]
    assert request(api, "GET", "/runs", "limit=100").status == 200


def test_no_runs_yet_is_an_empty_list(api):
    assert request(api, "GET", "/runs").body == {"runs": []}


def test_one_run_shows_every_status_field(api, db, policy, settings):
    job = run_to_end(db, policy, settings)
    answer = request(api, "GET", f"/runs/{job.id}")
    assert answer.status == 200
    body = answer.body
    assert body["job_id"] == job.id and body["state"] == "succeeded" and body["status"] == "success"
    assert body["eligible"] == body["archived"] == body["processed"] == 30
    assert body["percent_complete"] == 100.0
    for field in ("started_at", "finished_at", "duration_ms", "message", "error", "dry_run", "cutoff"):
        assert field in body
    assert body["started_at"] and body["finished_at"] and body["duration_ms"] is not None


def test_dry_run_shows_its_breakdown_by_line_of_business(api, db, policy, settings):
    job = run_to_end(db, policy, settings, dry_run=True)
    body = request(api, "GET", f"/runs/{job.id.upper()}").body
    assert body["dry_run"] is True and body["by_line_of_business"] == {"Motor": 30}
    assert body["archived"] == 0


def test_unknown_job_answers_404_and_malformed_400(api):
    missing = request(api, "GET", f"/runs/{UNKNOWN}")
    assert missing.status == 404
    assert missing.body == {"error": f"no run with job id {UNKNOWN}", "job_id": UNKNOWN}
    assert request(api, "GET", "/runs/not-a-uuid").status == 400
    assert request(api, "GET", "/runs/1").status == 400


# -- POST /runs/{id}/cancel ---------------------------------------------------------------------------
def test_cancelling_a_run_that_has_not_started_ends_it_at_once(api, db, policy):
    job_id = request(api, "POST", "/runs").body["job_id"]
    answer = request(api, "POST", f"/runs/{job_id}/cancel")
    assert answer.status == 200
    assert answer.body["state"] == "cancelled" and answer.body["cancel_requested"] is True


def test_cancelling_a_running_run_asks_it_to_stop_after_its_batch(api, db, policy, settings):
    job_id = request(api, "POST", "/runs", body={"batch_size": 5}).body["job_id"]
    archiver = Archiver(db, policy, settings)
    archiver.run_hop(job_id, owner="w", hop=1, max_batches=1)  # paused, still active
    answer = request(api, "POST", f"/runs/{job_id}/cancel")
    assert answer.status == 202
    assert answer.body["state"] == "running" and answer.body["cancel_requested"] is True
    outcome = archiver.run_hop(job_id, owner="w2", hop=None)
    assert outcome.job.state == "cancelled"
    assert request(api, "GET", f"/runs/{job_id}").body["archived"] == 5


def test_cancelling_a_finished_run_answers_409(api, db, policy, settings):
    job = run_to_end(db, policy, settings)
    answer = request(api, "POST", f"/runs/{job.id}/cancel")
    assert answer.status == 409
    assert answer.body["job_id"] == job.id and answer.body["state"] == "succeeded"
    assert request(api, "POST", f"/runs/{UNKNOWN}/cancel").status == 404
    assert request(api, "POST", "/runs/nope/cancel").status == 400


# -- GET /stats -------------------------------------------------------------------------------------
def _log_run(db, days_ago: float, state: str, archived: int, ms: int | None, dry_run: bool = False) -> None:
    db.run("INSERT INTO nic_cc_archive_log (job_id, policy_key, state, run_date, records_archived,"
           " execution_time_ms, dry_run, finished_at) VALUES (CAST(:j AS uuid), 'public.nic_cc_customer', :s,"
           " now() - make_interval(secs => :d), :a, :ms, :dry, now())",
           j=str(uuid.uuid4()), s=state, d=days_ago * 86400, a=archived, ms=ms, dry=dry_run)


def test_stats_is_the_weekly_review_per_day(api, db, policy):
    today = db.scalar("SELECT CAST(now() AT TIME ZONE :tz AS date)", tz=policy.timezone)
    _log_run(db, 0, "succeeded", 100, 1000)
    _log_run(db, 0, "failed", 0, 3000)
    _log_run(db, 2, "partial", 40, 2000)
    _log_run(db, 2, "succeeded", 0, 500, dry_run=True)  # dry runs archive nothing: not in the review
    _log_run(db, 9, "succeeded", 999, 1000)  # outside the week
    answer = request(api, "GET", "/stats")
    assert answer.status == 200
    body = answer.body
    assert body["days"] == 7 and body["timezone"] == policy.timezone
    assert len(body["per_day"]) == 7
    assert body["per_day"][0] == {"day": today.isoformat(), "runs": 2, "archived": 100, "avg_duration_ms": 2000,
                                  "failures": 1, "partial": 0}
    two_days_ago = body["per_day"][2]
    assert (two_days_ago["runs"], two_days_ago["archived"], two_days_ago["partial"]) == (1, 40, 1)
    assert body["per_day"][1] == {"day": body["per_day"][1]["day"], "runs": 0, "archived": 0,
                                  "avg_duration_ms": None, "failures": 0, "partial": 0}
    assert body["totals"] == {"runs": 3, "archived": 140, "failures": 1, "partial": 1, "avg_duration_ms": 2000}
    assert len(request(api, "GET", "/stats", "days=90").body["per_day"]) == 90
    assert request(api, "GET", "/stats", "days=30").body["totals"]["archived"] == 1139


def test_stats_counts_the_live_and_archive_tables(api, db, policy, settings):
    run_to_end(db, policy, settings)
    tables = request(api, "GET", "/stats", "days=1").body["tables"]
    assert tables["live"] == {"table": "public.nic_cc_customer", "exists": True, "rows": 3, "exact": True}
    assert tables["archive"] == {"table": "public.nic_cc_customer_backup", "exists": True, "rows": 30,
                                 "exact": True}


def test_big_tables_are_counted_by_the_planner_estimate(customers, db):
    db.run("ANALYZE nic_cc_customer")
    estimated = core.table_rows(db, "public", "nic_cc_customer", exact_limit=10)
    assert estimated == {"table": "public.nic_cc_customer", "exists": True, "rows": 33, "exact": False}
    assert core.table_rows(db, "public", "nowhere")["exists"] is False


# -- GET /health ----------------------------------------------------------------------------------------
def test_health_reports_the_last_successful_run(api, db, policy, settings):
    assert request(api, "GET", "/health").body["last_successful_run"] is None
    job = run_to_end(db, policy, settings)
    answer = request(api, "GET", "/health")
    assert answer.status == 200
    assert answer.body["status"] == "ok" and answer.body["database"] and answer.body["schema_migrated"]
    assert answer.body["last_successful_run"] == JobStore(db, policy).get(job.id).finished_at.isoformat()
    assert answer.body["active_job_id"] is None
    started = request(api, "POST", "/runs").body["job_id"]
    assert request(api, "GET", "/health").body["active_job_id"] == started


def test_health_answers_503_before_the_schema_is_migrated(use, db, policy):
    add_customers(db, policy, [1])  # the live table exists; the run log and archive do not
    deps = use()
    answer = request(deps, "GET", "/health")
    assert answer.status == 503
    assert answer.body["status"] == "not_migrated" and answer.body["database"] is True
    assert answer.body["missing_tables"] == ["public.nic_cc_archive_log", "public.nic_cc_customer_backup"]


def test_routes_answer_503_json_before_the_schema_is_migrated(use):
    deps = use()
    for path in ("/runs", f"/runs/{UNKNOWN}", "/stats"):
        answer = request(deps, "GET", path)
        assert answer.status == 503, path
        assert "migrate" in answer.body["error"]


# -- the archive function really runs ---------------------------------------------------------------------
def test_start_through_the_local_invoker_archives_every_eligible_row(customers, use, db, env, policy, settings):
    local = localapi.local_deps(env, policy, settings)
    local.db.close()
    deps = replace(local, db=db)
    answer = request(deps, "POST", "/runs", body={"batch_size": 7})
    assert answer.status == 202
    deps.invoker.join(timeout=60)
    run = request(deps, "GET", f"/runs/{answer.body['job_id']}").body
    assert (run["state"], run["archived"], run["batches"]) == ("succeeded", 30, 6)  # the 6th finds none
    assert count(db, "nic_cc_customer") == 3 and count(db, "nic_cc_customer_backup") == 30


@pytest.fixture
def moto_lambda(aws_mock):
    return boto3.client("lambda")


def _archive_function(client) -> str:
    role = boto3.client("iam").create_role(RoleName="archiver", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return client.create_function(FunctionName="archiver-archive", Runtime="python3.12", Role=role,
                                  Handler="handler.handler", Code={"ZipFile": buf.getvalue()})["FunctionName"]


def test_start_invokes_the_archive_lambda_asynchronously(customers, use, moto_lambda, db, policy):
    _archive_function(moto_lambda)
    deps = use(invoker=aws.LambdaInvoker())
    answer = request(deps, "POST", "/runs", body={"dry_run": True})
    assert answer.status == 202
    assert JobStore(db, policy).get(answer.body["job_id"]).state == "pending"


def test_no_customer_data_reaches_the_logs_or_the_answers(customers, use, db, env, policy, settings, log_lines):
    local = localapi.local_deps(env, policy, settings)
    local.db.close()
    deps = replace(local, db=db)
    dry = request(deps, "POST", "/runs", body={"dry_run": True}).body
    deps.invoker.join(timeout=60)
    real = request(deps, "POST", "/runs", body={"batch_size": 10}).body
    deps.invoker.join(timeout=60)
    answers = [dry, real] + [request(deps, "GET", path).body for path in (
        "/runs", f"/runs/{dry['job_id']}", f"/runs/{real['job_id']}", "/stats", "/health")]
    assert answers[-3]["archived"] == 30
    seen = log_lines.getvalue() + json.dumps(answers)
    for customer_data in ("x@example.mu", "+230 5000 0000", "Customer X", "POL-X"):
        assert customer_data not in seen
