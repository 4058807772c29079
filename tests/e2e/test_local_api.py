"""`archiver serve` end to end: a real HTTP server on 127.0.0.1 in its own process, a client that
starts a run and follows it until the archive is done, as an operator would with curl."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from archiver import migration
from local import demo
from tests.api_client import http, serve


@pytest.fixture
def start_server(env, db, policy, tmp_path) -> Iterator:
    """Start ``archiver [args] serve --port 0``; returns its base URL once it listens."""
    demo.seed(db, policy, 3000)
    migration.migrate(db, policy)
    numbers = itertools.count()
    with ExitStack() as stack:
        def start(*args: str) -> str:
            log = tmp_path / f"serve-{next(numbers)}.log"
            return stack.enter_context(serve({**os.environ, **env}, log, *args))

        yield start


@pytest.fixture
def server(start_server) -> str:
    return start_server()


def test_start_a_run_over_http_and_follow_it_until_it_succeeds(server, db):
    code, started = http("POST", f"{server}/runs", json.dumps({"batch_size": 250}).encode())
    assert code == 202, started
    assert started["status_url"] == f"{server}/runs/{started['job_id']}"
    deadline = time.monotonic() + 120
    while True:
        code, run = http("GET", started["status_url"])
        assert code == 200
        if run["state"] not in ("pending", "running"):
            break
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    assert run["state"] == "succeeded", run
    assert run["archived"] == run["eligible"] > 0 and run["percent_complete"] == 100
    archived = int(db.scalar("SELECT count(*) FROM nic_cc_customer_backup"))
    assert archived == run["archived"]
    assert int(db.scalar("SELECT count(*) FROM nic_cc_customer")) + archived == 3000
    code, health = http("GET", f"{server}/health")
    assert code == 200 and health["last_successful_run"] == run["finished_at"]


def test_bad_requests_get_json_errors_over_http(server):
    assert http("POST", f"{server}/runs", b"{nope")[0] == 400
    code, body = http("POST", f"{server}/runs", b'{"batch_size": "10"}')
    assert code == 422 and "batch_size" in body["error"]
    assert http("GET", f"{server}/runs/nope")[0] == 400
    assert http("GET", f"{server}/runs?limit=0")[0] == 422
    code, runs = http("GET", f"{server}/runs?limit=5")
    assert code == 200 and runs == {"runs": []}
    code, doc = http("GET", f"{server}/openapi.json")
    assert code == 200 and doc["info"]["title"] == "Archiver status API"


def test_the_policy_file_given_to_the_cli_is_the_one_served(start_server, tmp_path):
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps({"batch_size": 123}))
    server = start_server("--policy", str(policy_file))
    code, started = http("POST", f"{server}/runs", json.dumps({"dry_run": True}).encode())
    assert code == 202
    assert http("GET", started["status_url"])[1]["batch_size"] == 123


def _raw(method: str, url: str, data: bytes | None = None, content_type: str = "application/json"):
    """A request whose answer's status, headers and JSON body are all kept."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def test_hostile_bodies_and_wrong_methods_get_4xx_over_http_never_500(server):
    code, headers, body = _raw("DELETE", f"{server}/runs")
    assert (code, headers["Allow"]) == (405, "GET, POST") and "DELETE" in body["error"]
    code, _, body = _raw("POST", f"{server}/runs", b'{"dry_run": true, "pad": "' + b"x" * 2_000_000 + b'"}')
    assert code == 413 and "larger than" in body["error"]
    code, _, body = _raw("POST", f"{server}/runs", b"[" * 5000 + b"]" * 5000)
    assert code == 400 and "deeper than" in body["error"]
    code, _, body = _raw("POST", f"{server}/runs", b'{"dry_run": true}', content_type="text/plain")
    assert code == 415 and "Content-Type: application/json" in body["error"]
    assert http("GET", f"{server}/runs")[0] == 200  # the server is still serving
