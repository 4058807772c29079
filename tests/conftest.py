"""Shared fixtures: a real PostgreSQL (embedded, or the server named by DATABASE_URL) and a
fresh database per test, so every test creates and drops its own tables."""

from __future__ import annotations

import io
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "functions"))

from archiver.config import Policy, Settings, load_policy, load_settings  # noqa: E402
from archiver.db import ConnectionParams, Database, params_from_url  # noqa: E402
from local import embedded  # noqa: E402

TEST_PGDATA = ROOT / ".data" / "test-pg"


@pytest.fixture(scope="session")
def server_params() -> ConnectionParams:
    """Admin connection to the server the tests use."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return params_from_url(url)
    sock = embedded.ensure_server(Path(os.environ.get("ARCHIVER_TEST_PGDATA", TEST_PGDATA)))
    return ConnectionParams(user="postgres", unix_sock=sock, database="postgres")


def database_url(params: ConnectionParams, dbname: str) -> str:
    """A DATABASE_URL for ``dbname`` on the test server (for subprocesses: CLI, benchmarks)."""
    if params.unix_sock:
        return f"postgresql://{params.user}@/{dbname}?host={Path(params.unix_sock).parent}"
    auth = params.user + (f":{params.password}" if params.password else "")
    return f"postgresql://{auth}@{params.host}:{params.port}/{dbname}?sslmode={params.ssl_mode}"


@pytest.fixture
def dbname(server_params: ConnectionParams) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = Database(server_params)
    admin.run(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d AND pid <> "
                  "pg_backend_pid()", d=name)
        admin.run(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@pytest.fixture
def env(server_params: ConnectionParams, dbname: str) -> dict[str, str]:
    """Environment for code that reads its configuration (CLI, handlers): the test database."""
    return {"DATABASE_URL": database_url(server_params, dbname), "ARCHIVER_LEASE_SECONDS": "30",
            "ARCHIVER_RESERVE_MS": "0", "LOG_LEVEL": "INFO"}


@pytest.fixture
def policy(env: dict[str, str]) -> Policy:
    return load_policy(env)


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings(env)


@pytest.fixture
def db(server_params: ConnectionParams, dbname: str, policy: Policy, settings: Settings) -> Iterator[Database]:
    database = Database(replace(server_params, database=dbname, timezone=policy.timezone),
                        settings.lock_timeout_ms, settings.statement_timeout_ms)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def connect(server_params: ConnectionParams, dbname: str, policy: Policy, settings: Settings) -> Iterator:
    """Open extra connections to the test database (a second worker, the application)."""
    opened: list[Database] = []

    def _open() -> Database:
        d = Database(replace(server_params, database=dbname, timezone=policy.timezone),
                     settings.lock_timeout_ms, settings.statement_timeout_ms)
        opened.append(d)
        return d

    yield _open
    for d in opened:
        d.close()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every line the package logs during the test, formatted as in production (JSON)."""
    from archiver.observability import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    std = logging.getLogger(logger.name)
    std.addHandler(handler)
    try:
        yield stream
    finally:
        std.removeHandler(handler)


@pytest.fixture
def aws_mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto for every AWS API (Lambda without Docker), started before any client exists, with fake
    credentials; the cached boto3 clients and Powertools parameters are reset around it."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters import base as parameters_base
    from moto import mock_aws

    from archiver import aws

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")

    def reset() -> None:
        aws.client.cache_clear()
        parameters.clear_caches()
        parameters_base.DEFAULT_PROVIDERS.clear()

    with mock_aws(config={"lambda": {"use_docker": False}}):
        reset()
        yield
        reset()
