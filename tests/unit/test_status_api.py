"""The status API's edges without a database: input validation, error mapping, OpenAPI, events.

A database that cannot be reached stands in for the real one: bad input must be refused before
anything touches it, and a database that is down must answer 503, never a stack trace.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archiver.config import load_policy, load_settings
from archiver.db import ConnectionParams, Database
from archiver.exceptions import (
    AlreadyRunningError,
    ConfigError,
    DatabaseUnavailableError,
    InvalidJobIdError,
    JobNotFoundError,
    JobStateError,
    PermissionDeniedError,
    ReadOnlyError,
    RunStartError,
    SchemaError,
    UndefinedTableError,
)
from handlers import status
from handlers.status_models import MAX_BODY_BYTES, MAX_BODY_DEPTH
from local.localapi import build_event
from local.runner import FakeContext
from tests.api_client import request

UNKNOWN = "5f0e4c1e-1111-4000-8000-000000000000"
DOCS_OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


class NeverInvoked:
    def invoke_async(self, function: str, payload: dict) -> None:
        raise AssertionError("bad input must not start a run")


@pytest.fixture
def down() -> status.StatusDeps:
    """Deps whose database refuses connections (nothing listens on port 1)."""
    env: dict[str, str] = {}
    policy, settings = load_policy(env), load_settings(env)
    db = Database(ConnectionParams(user="archiver", password="hunter2", host="127.0.0.1", port=1,
                                   database="prod_db"))
    return status.StatusDeps(db=db, policy=policy, settings=settings, invoker=NeverInvoked(),
                             function_name="archiver-archive")


BAD_BODIES = [
    ("{bad json", 400, "malformed JSON"),
    ('{"batch_size": 10,}', 400, "malformed JSON"),
    ('{"batch_size": "10"}', 422, "batch_size"),
    ('{"batch_size": true}', 422, "batch_size"),
    ('{"batch_size": 10.5}', 422, "batch_size"),
    ('{"batch_size": 0}', 422, "greater than or equal to 1"),
    ('{"batch_size": 10001}', 422, "less than or equal to 10000"),
    ('{"batch_size": -5}', 422, "batch_size"),
    ('{"max_replica_lag": -1}', 422, "max_replica_lag"),
    ('{"max_replica_lag": "5"}', 422, "max_replica_lag"),
    ('{"dry_run": "yes"}', 422, "dry_run"),
    ('{"dry_run": 1}', 422, "dry_run"),
    ('{"dry_run": false, "batchsize": 10}', 422, "Extra inputs are not permitted"),
    ("[1, 2]", 422, "body"),
    ('"run"', 422, "body"),
    ("42", 422, "body"),
]


@pytest.mark.parametrize(("raw", "code", "says"), BAD_BODIES)
def test_bad_start_request_is_refused_with_a_json_error(down, raw, code, says):
    answer = request(down, "POST", "/runs", raw=raw)
    assert answer.status == code
    assert says in answer.body["error"]
    assert answer.body["details"] and all({"loc", "type", "msg"} <= set(d) for d in answer.body["details"])


@pytest.mark.parametrize(("path", "query", "field"), [
    ("/runs", "limit=0", "limit"), ("/runs", "limit=101", "limit"), ("/runs", "limit=abc", "limit"),
    ("/runs", "limit=", "limit"), ("/runs", "limit=1.5", "limit"), ("/runs", "limit=-1", "limit"),
    ("/stats", "days=0", "days"), ("/stats", "days=91", "days"), ("/stats", "days=week", "days"),
])
def test_out_of_range_or_malformed_query_answers_422(down, path, query, field):
    answer = request(down, "GET", path, query)
    assert answer.status == 422
    assert answer.body["details"][0]["loc"] == ["query", field]
    assert f"query.{field}" in answer.body["error"]


def test_a_body_that_is_not_utf8_answers_400(down):
    answer = request(down, "POST", "/runs", raw=b"\xff\xfe{}")
    assert answer.status == 400
    assert answer.body == {"error": "the body must be UTF-8 JSON"}


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/runs/abc"), ("GET", "/runs/%20"), ("GET", "/runs/" + "9" * 200),
    ("GET", "/runs/5f0e4c1e-0000-4000-8000-00000000000g"), ("POST", "/runs/123/cancel"),
])
def test_malformed_job_id_answers_400_before_the_database_is_asked(down, method, path):
    answer = request(down, method, path)
    assert answer.status == 400
    assert "malformed job id" in answer.body["error"] and "UUID" in answer.body["error"]


def test_a_body_that_is_not_json_answers_415(down):
    answer = request(down, "POST", "/runs", raw="dry_run=true", headers={"Content-Type": "text/plain"})
    assert answer.status == 415
    assert "JSON" in answer.body["error"]


@pytest.mark.parametrize(("method", "path"), [("GET", "/nothing"), ("DELETE", "/nothing"), ("GET", "/runs/a/b/c")])
def test_unknown_route_answers_404_json(down, method, path):
    answer = request(down, method, path)
    assert answer.status == 404
    assert answer.body == {"error": "no such route"}


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("DELETE", "/runs", "GET, POST"), ("PUT", "/runs/x", "GET"), ("GET", f"/runs/{UNKNOWN}/cancel", "POST"),
    ("POST", "/health", "GET"), ("PATCH", "/stats", "GET"), ("OPTIONS", "/runs", "GET, POST"),
])
def test_a_wrong_method_answers_405_with_allow(down, method, path, allow):
    answer = request(down, method, path)  # the API Gateway event, through the Lambda handler
    assert answer.status == 405
    assert answer.headers["allow"] == allow
    assert answer.body == {"error": f"{method} is not allowed here; allowed: {allow}"}


def test_a_body_larger_than_the_limit_answers_413_before_it_is_parsed(down):
    answer = request(down, "POST", "/runs", raw='{"dry_run": true, "pad": "' + "x" * MAX_BODY_BYTES + '"}')
    assert answer.status == 413
    assert str(MAX_BODY_BYTES) in answer.body["error"]


@pytest.mark.parametrize("levels", [MAX_BODY_DEPTH + 1, 2000])
def test_a_deeply_nested_body_answers_400_never_500(down, levels):
    for raw in ("[" * levels + "]" * levels, '{"dry_run": ' + "[" * levels + "]" * levels + "}",
                '{"a": ' * levels + "1" + "}" * levels):
        answer = request(down, "POST", "/runs", raw=raw)
        assert answer.status == 400, raw[:40]
        assert f"deeper than {MAX_BODY_DEPTH} levels" in answer.body["error"]


def test_brackets_inside_strings_do_not_count_as_nesting(down):
    answer = request(down, "POST", "/runs", raw='{"dry_run": "' + "[{" * 100 + '\\\\"}')
    assert answer.status == 422  # a string is not a boolean: refused by validation, not as nesting


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_json_body_with_another_content_type_answers_415_saying_so(down, content_type):
    answer = request(down, "POST", "/runs", raw='{"dry_run": true}', headers={"Content-Type": content_type})
    assert answer.status == 415
    assert answer.body["error"] == ("the body must be JSON: send Content-Type: application/json"
                                    f" (got {content_type!r})")


def test_a_json_body_without_a_content_type_is_read_as_json(down):
    event = build_event("POST", "/runs", body='{"batch_size": 0}')
    answer = status.handle(event, FakeContext(29), lambda: down)
    assert answer["statusCode"] == 422 and "batch_size" in answer["body"]  # parsed and validated as JSON


def test_a_json_content_type_with_parameters_is_json(down):
    answer = request(down, "POST", "/runs", raw='{"batch_size": 0}',
                     headers={"Content-Type": "application/json; charset=utf-8"})
    assert answer.status == 422


def test_database_down_answers_503_without_revealing_the_server(down, log_lines):
    answer = request(down, "GET", "/runs")
    assert answer.status == 503
    assert answer.body == {"error": "the database is unavailable; try again later"}
    assert "hunter2" not in log_lines.getvalue()


def test_health_answers_503_when_the_database_is_down(down):
    answer = request(down, "GET", "/health")
    assert answer.status == 503
    assert answer.body["status"] == "unavailable"
    assert answer.body["database"] is False
    assert "Traceback" not in json.dumps(answer.body)


@pytest.mark.parametrize(("error", "code"), [
    (InvalidJobIdError("x"), 400),
    (JobNotFoundError("5f0e4c1e-0000-4000-8000-000000000000"), 404),
    (AlreadyRunningError("job-1", "running"), 409),
    (JobStateError("job-1", "succeeded", "cancel"), 409),
    (RunStartError("job-1", "TooManyRequestsException"), 502),
    (SchemaError("live table public.t does not exist"), 503),
    (DatabaseUnavailableError("cannot connect"), 503),
    (UndefinedTableError("relation does not exist: run `archiver migrate` first"), 503),
    (ReadOnlyError("the database is read-only"), 503),
    (PermissionDeniedError("permission denied for table t"), 503),
])
def test_core_errors_map_to_their_http_status(error, code):
    got, body = status.error_answer(error)
    assert got == code
    assert body.error
    if hasattr(error, "job_id") and code in (409, 502):
        assert body.job_id == error.job_id


def test_conflict_names_the_active_job_and_its_state():
    _, body = status.error_answer(AlreadyRunningError("job-1", "running"))
    assert (body.job_id, body.state) == ("job-1", "running")


@pytest.mark.parametrize("error", [RuntimeError("email x@example.mu rejected"),
                                   ConfigError("ARCHIVER_ARCHIVE_FUNCTION_NAME is not set")])
def test_unexpected_errors_answer_a_generic_500_and_log_no_message(log_lines, error):
    code, body = status.error_answer(error)
    assert code == 500
    assert body.error == "internal error; see the function's log"
    logged = log_lines.getvalue()
    assert type(error).__name__ in logged
    assert str(error) not in logged


def test_committed_openapi_document_is_the_generated_one():
    assert DOCS_OPENAPI.read_text() == status.openapi_json(), (
        "docs/openapi.json is stale: PYTHONPATH=functions .venv/bin/python -m handlers.status > docs/openapi.json")


def test_openapi_document_is_served_and_documents_every_route(down):
    answer = request(down, "GET", "/openapi.json")
    assert answer.status == 200
    assert answer.body == json.loads(status.openapi_json())
    paths = answer.body["paths"]
    assert set(paths) == {"/", "/runs", "/runs/{job_id}", "/runs/{job_id}/cancel", "/stats", "/health", "/tables",
                          "/erasures"}
    start = paths["/runs"]["post"]
    assert {"202", "400", "409", "422"} <= set(start["responses"])
    schema = answer.body["components"]["schemas"]["StartRunRequest"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["batch_size"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 10000}


def test_event_carries_query_headers_and_body_like_api_gateway():
    event = build_event("post", "/runs", "limit=5&limit=7&x=", '{"a": 1}', {"Content-Type": "application/json"})
    assert event["httpMethod"] == "POST"
    assert event["queryStringParameters"] == {"limit": "7", "x": ""}
    assert event["multiValueQueryStringParameters"] == {"limit": ["5", "7"], "x": [""]}
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False
    assert event["pathParameters"] is None
    assert event["requestContext"]["stage"] == "local"
    assert event["requestContext"]["resourcePath"] == "/runs"


def test_event_of_an_empty_request_has_null_body_and_parameters():
    event = build_event("GET", "/health")
    assert event["body"] is None and event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None


def test_event_body_that_is_not_utf8_is_base64_encoded():
    event = build_event("POST", "/runs", body=b"\xff\xfe")
    assert event["isBase64Encoded"] is True and event["body"] == "//4="


def never() -> status.StatusDeps:
    raise AssertionError("this request must be answered without the dependencies")


def test_openapi_and_a_refused_body_are_answered_without_building_the_dependencies():
    openapi = status.handle(build_event("GET", "/openapi.json"), FakeContext(29), never)
    assert openapi["statusCode"] == 200
    big = build_event("POST", "/runs", body="x" * (MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"})
    assert status.handle(big, FakeContext(29), never)["statusCode"] == 413


def test_without_the_archive_function_name_the_function_refuses_to_build_naming_it(monkeypatch):
    monkeypatch.delenv("ARCHIVER_ARCHIVE_FUNCTION_NAME", raising=False)
    with pytest.raises(ConfigError, match="^ARCHIVER_ARCHIVE_FUNCTION_NAME is not set$"):
        status.build_deps()
