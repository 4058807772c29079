"""Every bad set-up gets one clear line and the documented exit code, never a traceback; under
--json exactly one JSON object (README "Exit codes": 1 failed or partial, 2 bad usage or
configuration). Each test runs the `archiver` command as a user would, against the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from archiver import catalogue
from local import demo
from tests.helpers import role_netloc, setup

ARCHIVER = str(Path(sys.executable).parent / "archiver")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    quiet = {k: v for k, v in {**os.environ, **env}.items() if k != "LOG_LEVEL"}  # the summary, not log lines
    return subprocess.run([ARCHIVER, *args], env=quiet, capture_output=True, text=True, timeout=300)


def refused(env: dict[str, str], *args: str, code: int, says: tuple[str, ...]) -> dict:
    """Run the command twice, plain and with --json: the same exit code both times, one line on
    stderr naming the problem, and under --json exactly one JSON object on stdout."""
    plain = cli(env, *args)
    assert plain.returncode == code, plain.stderr
    lines = plain.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("archiver: error: "), plain.stderr
    for word in says:
        assert word in lines[0], lines[0]
    proc = cli(env, *args, "--json")
    assert proc.returncode == code, proc.stderr
    out = proc.stdout.strip().splitlines()
    assert len(out) == 1, proc.stdout
    obj = json.loads(out[0])
    assert obj["exit_code"] == code and all(word in obj["error"] for word in says), obj
    assert "Traceback" not in plain.stderr + proc.stderr
    return obj


def runs(db) -> int:
    return int(db.scalar("SELECT count(*) FROM nic_cc_archive_log"))


@pytest.fixture
def demo_db(db, policy):
    setup(db, policy, customers=300)
    return db


def test_run_before_migrate_says_run_migrate_first(env, db, policy):
    demo.create_tables(db, policy)
    demo.seed(db, policy, 50)
    refused(env, "run", code=2, says=("archiver migrate", "nic_cc_archive_log"))
    refused(env, "run", "--dry-run", code=2, says=("archiver migrate",))
    assert not catalogue.table_exists(db, "public", "nic_cc_archive_log")


def test_a_read_only_database_is_refused_before_anything_starts(env, demo_db, dbname):
    demo_db.run(f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
    for args in (["run"], ["run", "--dry-run"], ["migrate"], ["purge", "--dry-run"]):
        refused(env, *args, code=2, says=("read-only", "primary"))
    assert runs(demo_db) == 0
    assert cli(env, "status", "--json").returncode == 0  # reading still works


def test_a_schema_that_does_not_exist_is_named(env, demo_db):
    missing = {**env, "ARCHIVER_SCHEMA": "no_such_schema"}
    refused(missing, "run", code=2, says=("no_such_schema", "does not exist"))
    refused(missing, "migrate", code=2, says=("no_such_schema", "does not exist", "SQLSTATE 3F000"))


@pytest.fixture
def limited_role(demo_db, env, dbname):
    """A role with every grant docs/security.md lists for the job, but INSERT on the archive table."""
    role = f"archiver_limited_{uuid.uuid4().hex[:8]}"
    for sql in (f'CREATE ROLE "{role}" LOGIN', f'GRANT CONNECT ON DATABASE "{dbname}" TO "{role}"',
                f'GRANT USAGE ON SCHEMA public TO "{role}"',
                f'GRANT SELECT, DELETE ON nic_cc_customer TO "{role}"',
                f'GRANT UPDATE (id) ON nic_cc_customer TO "{role}"',
                f'GRANT SELECT ON nic_cc_customer_backup TO "{role}"',
                f'GRANT SELECT, INSERT, UPDATE ON nic_cc_archive_log TO "{role}"',
                f'GRANT USAGE ON SEQUENCE nic_cc_archive_log_id_seq TO "{role}"',
                f'GRANT SELECT ON nic_cc_aod, nic_cc_payment_plan, nic_cc_installment, nic_cc_call_log,'
                f' nic_cc_contact_update_history, nic_cc_follow_up TO "{role}"'):
        demo_db.run(sql)
    parts = urlsplit(env["DATABASE_URL"])
    yield role, {**env, "DATABASE_URL": urlunsplit(parts._replace(netloc=role_netloc(parts, role)))}
    demo_db.run(f'DROP OWNED BY "{role}"')
    demo_db.run(f'DROP ROLE "{role}"')


def test_a_missing_grant_is_named_before_the_run_starts(demo_db, limited_role):
    role, as_role = limited_role
    refused(as_role, "run", code=2,
            says=("permission denied", f'GRANT INSERT ON "public"."nic_cc_customer_backup" TO "{role}"',
                  "docs/security.md"))
    assert runs(demo_db) == 0
    dry = cli(as_role, "run", "--dry-run", "--json")  # a dry run moves nothing: it needs no INSERT
    assert dry.returncode == 0, dry.stderr


def test_a_permission_the_server_refuses_mid_step_is_a_typed_error(demo_db, limited_role):
    _, as_role = limited_role
    refused(as_role, "migrate", code=2, says=("must be owner", "SQLSTATE 42501", "docs/security.md", "owner"))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "--max-batches", "0"], ("--max-batches", "at least 1")),
        (["run", "--max-batches", "-3"], ("--max-batches", "whole number")),
        (["run", "--hop-seconds", "0"], ("--hop-seconds", "(0, 900]")),
        (["run", "--hop-seconds", "901"], ("--hop-seconds", "(0, 900]")),
        (["run", "--hop-seconds", "nan"], ("--hop-seconds",)),
        (["run", "--batch-size", "0"], ("batch_size",)),
        (["restore", "--since", "2026-01-01T00:00:00+00:00", "--batch-size", "0"], ("--batch-size",)),
        (["status", "--limit", "0"], ("--limit",)),
        (["serve", "--port", "70000"], ("--port", "between 0 and 65535")),
    ],
)
def test_out_of_range_flags_are_refused_before_a_run_row_is_created(env, demo_db, args, says):
    refused(env, *args, code=2, says=says)
    assert runs(demo_db) == 0


def test_hop_seconds_within_the_reserve_is_refused_naming_it(env, demo_db):
    refused({**env, "ARCHIVER_RESERVE_MS": "10000"}, "run", "--hop-seconds", "5", code=2,
            says=("--hop-seconds 5", "ARCHIVER_RESERVE_MS=10000", "more than 10 s"))
    assert runs(demo_db) == 0


def test_a_missing_sslrootcert_file_is_named(env, tmp_path):
    missing = tmp_path / "no-such-ca.pem"
    url = f"postgresql://u:secretpw@127.0.0.1:5432/db?sslmode=verify-full&sslrootcert={missing}"
    obj = refused({**env, "DATABASE_URL": url}, "status", code=2, says=("sslrootcert", str(missing)))
    assert "secretpw" not in obj["error"]


def test_a_restore_that_ends_partial_exits_1(env, demo_db):
    archived = json.loads(cli(env, "run", "--json").stdout)
    assert archived["archived"] > 0
    # One archived customer is live again (re-created by the application): restore leaves it archived.
    cols = ", ".join(c.name for c in catalogue.columns(demo_db, "public", "nic_cc_customer"))
    demo_db.run(f"INSERT INTO nic_cc_customer ({cols}) SELECT {cols} FROM nic_cc_customer_backup LIMIT 1")
    proc = cli(env, "restore", "--job", archived["job_id"], "--json")
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout.strip().splitlines()
    assert len(out) == 1
    restored = json.loads(out[0])
    assert restored["state"] == "partial" and restored["conflicts"] == 1
    assert restored["restored"] == archived["archived"] - 1
