"""The `archiver` command end to end, as a user runs it, against the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import setup

ARCHIVER = str(Path(sys.executable).parent / "archiver")


def cli(env, *args, check_code=None):
    proc = subprocess.run([ARCHIVER, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    if check_code is not None:
        assert proc.returncode == check_code, proc.stderr
    return proc


def as_json(proc):
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # exactly one JSON object
    return json.loads(lines[0])


@pytest.fixture
def demo_db(db, policy):
    setup(db, policy, customers=3000)
    return db


def test_dry_run_then_run_then_status_in_json(env, demo_db):
    dry = as_json(cli(env, "run", "--dry-run", "--json", check_code=0))
    assert dry["dry_run"] is True and dry["archived"] == 0 and dry["state"] == "succeeded"
    assert sum(dry["by_line_of_business"].values()) == dry["eligible"] > 0
    real = as_json(cli(env, "run", "--batch-size", "200", "--json", check_code=0))
    for key in ("job_id", "state", "eligible", "archived", "failed", "batches", "duration_ms", "dry_run", "hops"):
        assert key in real
    assert real["archived"] == dry["eligible"] and real["batches"] >= real["archived"] // 200
    one = as_json(cli(env, "status", real["job_id"], "--json", check_code=0))
    assert one["job_id"] == real["job_id"] and one["archived"] == real["archived"]
    runs = as_json(cli(env, "status", "--json", check_code=0))["runs"]
    assert [r["job_id"] for r in runs] == [real["job_id"], dry["job_id"]]


# Hops of 0.3 s and batches of 3 rows: ~530 batches take more than one hop on any machine, and one
# batch stays well inside a hop even on a loaded one (a batch longer than the hop never fits).
HOPS = ("--batch-size", "3", "--hop-seconds", "0.3")


def test_hops_happen_locally_too(env, demo_db):
    out = as_json(cli(env, "run", *HOPS, "--json", check_code=0))
    assert out["state"] == "succeeded" and out["hops"] >= 2


def test_human_output_shows_a_summary_table_and_hops(env, demo_db):
    proc = cli(env, "run", *HOPS, check_code=0)
    assert "state" in proc.stdout and "succeeded" in proc.stdout and "archived" in proc.stdout
    assert "handed over to hop 2" in proc.stderr


def test_bounded_run_then_resume_by_job_id(env, demo_db):
    first = as_json(cli(env, "run", "--batch-size", "100", "--max-batches", "2", "--json", check_code=0))
    assert first["state"] == "running" and first["archived"] == 200 and "resume" in first["message"]
    busy = cli(env, "run", "--dry-run", "--json", check_code=3)
    assert first["job_id"] in as_json(busy)["error"]
    done = as_json(cli(env, "run", "--job", first["job_id"], "--json", check_code=0))
    assert done["job_id"] == first["job_id"] and done["state"] == "succeeded"
    assert done["cutoff"] == first["cutoff"]


def test_restore_and_purge_print_their_counts(env, demo_db):
    real = as_json(cli(env, "run", "--json", check_code=0))
    restored = as_json(cli(env, "restore", "--job", real["job_id"], "--json", check_code=0))
    assert restored["restored"] == real["archived"] and restored["conflicts"] == 0
    purged = as_json(cli(env, "purge", "--older-than", "730d", "--dry-run", "--json", check_code=0))
    assert purged["purged"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--batch-size", "0"], "batch_size"),
        (["run", "--batch-size", "abc"], "whole number"),
        (["run", "--batch-size", "1000000000"], "batch_size"),
        (["run", "--max-replica-lag", "-1"], "--max-replica-lag must be in [0, 3600]"),
        (["run", "--max-replica-lag", "soon"], "invalid float value"),
        (["status", "not-a-uuid"], "malformed job id"),
        (["status", "2f0cbd0a-8a49-4b7b-9d3c-1c7b5f3f3a10"], "no run with job id"),
        (["restore", "--since", "yesterday"], "ISO timestamp"),
        (["purge", "--older-than", "two years"], "730d"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_usage_exits_2_with_a_clear_message_and_no_traceback(env, demo_db, args, message):
    proc = cli(env, *args, check_code=2)
    assert message in proc.stderr and "Traceback" not in proc.stderr
    proc = cli(env, *args, "--json", check_code=2)
    assert message in as_json(proc)["error"]


def test_hostile_configuration_is_refused_before_any_sql(env):
    proc = cli({**env, "ARCHIVER_LIVE_TABLE": 'x"; DROP TABLE y; --'}, "run", check_code=2)
    assert "live_table" in proc.stderr and "Traceback" not in proc.stderr


def test_unreachable_database_fails_cleanly(env):
    proc = cli({**env, "DATABASE_URL": "postgresql://u:secretpw@127.0.0.1:1/db?sslmode=disable"}, "status",
               check_code=1)
    assert "cannot connect" in proc.stderr and "secretpw" not in proc.stderr and "Traceback" not in proc.stderr
