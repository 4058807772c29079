"""`archiver serve` end to end: a real HTTP server on 127.0.0.1 in its own process, a client that
starts a run and follows it until the archive is done, as an operator would with curl."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver import demo, schema

ARCHIVER = str(Path(sys.executable).parent / "archiver")


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture
def start_server(env, db, policy, tmp_path) -> Iterator:
    """Start ``archiver [args] serve --port 0``; returns its base URL once it listens."""
    demo.seed(db, policy, 3000)
    schema.migrate(db, policy)
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> str:
        log = tmp_path / f"serve-{len(procs)}.log"
        with log.open("w") as out:
            procs.append(subprocess.Popen([ARCHIVER, *args, "serve", "--port", "0"], env={**os.environ, **env},
                                          stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 30
        while not (found := re.search(r"serving the status API on (http://\S+)", log.read_text())):
            assert procs[-1].poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return found.group(1)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


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
