"""The status API fuzzed from its own OpenAPI document (schemathesis) against `archiver serve` on
127.0.0.1: no 5xx, and every 4xx answers with a JSON error object.

Requests that start runs really start them (the local server archives in the background), so
the fuzzing also races real runs: most starts meet an active run and get 409."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from archiver.config import load_policy  # noqa: E402
from archiver.db import Database  # noqa: E402
from tests.api_client import serve  # noqa: E402
from tests.conftest import database_url  # noqa: E402

from .support import cli_env, record, seed, verify  # noqa: E402

STATUS_CODES: Counter[int] = Counter()
ACTIVE = "SELECT count(*) FROM nic_cc_archive_log WHERE state IN ('pending', 'running')"


@pytest.fixture(scope="module")
def fuzz_target(server_params, tmp_path_factory) -> Iterator[tuple[str, Database, object]]:
    """A seeded database of the module's own and `archiver serve` on it."""
    name = f"fuzz_{uuid.uuid4().hex[:8]}"
    admin = Database(server_params)
    admin.run(f'CREATE DATABASE "{name}"')
    env = {"DATABASE_URL": database_url(server_params, name), "ARCHIVER_LEASE_SECONDS": "30",
           "ARCHIVER_RESERVE_MS": "0"}
    policy = load_policy(env)
    db = Database(replace(server_params, database=name, timezone=policy.timezone))
    seed(db, policy, 20_000)
    log = tmp_path_factory.mktemp("fuzz") / "serve.log"
    try:
        with serve(cli_env(env), log) as url:
            yield url, db, policy
    finally:
        db.close()
        admin.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _call(case, url: str, leak_watch) -> None:
    if case.path == "/erasures" and isinstance(case.body, dict):
        # Fuzz the route, erase no one: every row is checked at the end (test_zz_...).
        case.body = {**case.body, "dry_run": True}
    response = case.call(base_url=url, timeout=30)
    STATUS_CODES[response.status_code] += 1
    leak_watch.add("api", response.text)
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text)
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], response.text


def fuzz(url: str, examples: int, leak_watch) -> None:
    """Every operation of the served OpenAPI document, with valid and with invalid requests.

    (Through schemathesis' Python API and Hypothesis' ``given``: its pytest plugin does not
    support this pytest version.)"""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
                      database=None)
            def one(case) -> None:
                _call(case, url, leak_watch)

            try:
                one()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # e.g. GET /health: no input to get wrong


@pytest.mark.chaos
def test_status_api_fuzz_quick(fuzz_target, leak_watch):
    fuzz(fuzz_target[0], 25, leak_watch)


@pytest.mark.chaos
@pytest.mark.slow
def test_status_api_fuzz_thousands_of_requests(fuzz_target, leak_watch):
    fuzz(fuzz_target[0], 300, leak_watch)


@pytest.mark.chaos
def test_zz_status_api_fuzz_left_every_row_intact(fuzz_target, chaos_report):
    """After the fuzzing (and the runs it started): nothing lost or duplicated."""
    _, db, policy = fuzz_target
    end = time.monotonic() + 60  # let the runs the fuzzing started finish
    while db.scalar(ACTIVE) and time.monotonic() < end:
        time.sleep(0.2)
    check = verify(db, policy)
    codes = ", ".join(f"{c}: {n}" for c, n in sorted(STATUS_CODES.items()))
    record(chaos_report, "status API fuzzed (schemathesis)", check, sum(STATUS_CODES.values()),
           note=f"requests by status: {codes}; runs = HTTP requests")
    check.assert_intact()
    assert not any(code >= 500 for code in STATUS_CODES)

