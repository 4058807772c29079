"""Hostile configuration: every bad name or number is refused by the CLI with exit code 2 and a
one-line message naming the setting, before any SQL runs; reserved words work, quoted.

"Before any SQL": the refused commands point at a server that does not exist. Had they got as
far as connecting, they would end with exit code 1 and "cannot connect".
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .support import cli_env, run_cli

NOWHERE = "postgresql://postgres@/nodb?host=/nonexistent-chaos-socket-dir"

# id -> (environment overrides, extra CLI arguments, what the message must name)
CASES: dict[str, tuple[dict[str, str], list[str], str]] = {
    "table-quote": ({"ARCHIVER_LIVE_TABLE": 'cust"omer'}, [], "live_table"),
    "table-semicolon": ({"ARCHIVER_LIVE_TABLE": "customer; DROP TABLE nic_cc_archive_log; --"}, [], "live_table"),
    "table-unicode": ({"ARCHIVER_LIVE_TABLE": "clïent_büro"}, [], "live_table"),
    "table-64-chars": ({"ARCHIVER_LIVE_TABLE": "t" * 64}, [], "live_table"),
    "table-space": ({"ARCHIVER_LIVE_TABLE": "nic cc customer"}, [], "live_table"),
    "table-dotted": ({"ARCHIVER_LIVE_TABLE": "public.nic_cc_customer"}, [], "live_table"),
    "archive-is-live": ({"ARCHIVER_ARCHIVE_TABLE": "nic_cc_customer"}, [], "different tables"),
    "column-injection": ({"ARCHIVER_AGE_COLUMN": "created_at) OR (1=1"}, [], "age_column"),
    "column-quoted": ({"ARCHIVER_AGE_COLUMN": '"created_at"'}, [], "age_column"),
    "schema-comment": ({"ARCHIVER_SCHEMA": "public; --"}, [], "schema_name"),
    "related-injection": ({"ARCHIVER_RELATED_TABLES": "x;drop:y"}, [], "related_tables"),
    "retention-0": ({"ARCHIVER_RETENTION_DAYS": "0"}, [], "retention_days"),
    "retention-negative": ({"ARCHIVER_RETENTION_DAYS": "-1"}, [], "retention_days"),
    "retention-huge": ({"ARCHIVER_RETENTION_DAYS": "100000000000"}, [], "retention_days"),
    "retention-abc": ({"ARCHIVER_RETENTION_DAYS": "abc"}, [], "retention_days"),
    "retention-fraction": ({"ARCHIVER_RETENTION_DAYS": "1.5"}, [], "retention_days"),
    "retention-by-lob-abc": ({"ARCHIVER_RETENTION_BY_LOB": "Life=abc"}, [], "ARCHIVER_RETENTION_BY_LOB"),
    "retention-by-lob-0": ({"ARCHIVER_RETENTION_BY_LOB": "Life=0"}, [], "retention_by_lob"),
    "retention-by-lob-negative": ({"ARCHIVER_RETENTION_BY_LOB": "Life=-5"}, [], "retention_by_lob"),
    "batch-env-0": ({"ARCHIVER_BATCH_SIZE": "0"}, [], "batch_size"),
    "batch-env-negative": ({"ARCHIVER_BATCH_SIZE": "-1"}, [], "batch_size"),
    "batch-env-1e9": ({"ARCHIVER_BATCH_SIZE": "1000000000"}, [], "batch_size"),
    "batch-env-abc": ({"ARCHIVER_BATCH_SIZE": "abc"}, [], "batch_size"),
    "batch-flag-0": ({}, ["--batch-size", "0"], "batch_size"),
    "batch-flag-negative": ({}, ["--batch-size", "-1"], "batch-size"),
    "batch-flag-1e9": ({}, ["--batch-size", "1000000000"], "batch_size"),
    "batch-flag-abc": ({}, ["--batch-size", "abc"], "batch-size"),
    "timezone-unknown": ({"ARCHIVER_TIMEZONE": "Mars/Olympus_Mons"}, [], "timezone"),
    "timezone-path": ({"ARCHIVER_TIMEZONE": "../../../etc/passwd"}, [], "timezone"),
    "lease-abc": ({"ARCHIVER_LEASE_SECONDS": "abc"}, [], "lease_seconds"),
    "lease-0": ({"ARCHIVER_LEASE_SECONDS": "0"}, [], "lease_seconds"),
    "rules-unknown": ({"ARCHIVER_RULES": "drop_everything"}, [], "ARCHIVER_RULES"),
    "policy-file-injection": ({}, ["__policy_file__"], "live_table"),
}


JSON_CASES = ("table-semicolon", "retention-abc", "batch-flag-0")


def _policy_file(tmp: Path) -> Path:
    path = tmp / "hostile.toml"
    path.write_text('[policy]\nlive_table = "customer\\"; DROP TABLE nic_cc_archive_log; --"\n')
    return path


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> dict[str, tuple]:
    """Run every case once, in parallel (each is a fresh `archiver` process)."""
    policy_file = _policy_file(tmp_path_factory.mktemp("hostile"))

    def one(case: str):
        overrides, extra, _ = CASES[case]
        args = ["--policy", str(policy_file), "run"] if extra == ["__policy_file__"] else ["run", *extra]
        env = cli_env({"DATABASE_URL": NOWHERE, "ARCHIVER_LEASE_SECONDS": "30", **overrides})
        plain = run_cli(env, *args, timeout=60)
        as_json = run_cli(env, *args, "--json", timeout=60) if case in JSON_CASES else None
        return plain, as_json

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(CASES, pool.map(one, CASES), strict=True))


@pytest.mark.chaos
@pytest.mark.parametrize("case", list(CASES))
def test_hostile_configuration_is_refused_before_any_sql(refused, case, leak_watch, chaos_report):
    plain, as_json = refused[case]
    leak_watch.add("cli-stderr", plain.stderr)
    chaos_report.record("hostile configuration refused (exit 2)", runs=1, note=f"{len(CASES)} cases, none reached SQL")
    what = CASES[case][2]
    assert plain.returncode == 2, (plain.returncode, plain.stderr)
    assert "Traceback" not in plain.stderr
    errors = [line for line in plain.stderr.splitlines() if line.startswith("archiver: error:")]
    assert len(errors) == 1 and what in errors[0], plain.stderr
    assert "cannot connect" not in plain.stderr
    assert plain.stdout == ""
    if as_json is not None:  # --json: one JSON object on stdout, same code
        assert as_json.returncode == 2
        assert json.loads(as_json.stdout)["exit_code"] == 2


RESERVED = {"ARCHIVER_LIVE_TABLE": "order", "ARCHIVER_ARCHIVE_TABLE": "user", "ARCHIVER_LOG_TABLE": "select",
            "ARCHIVER_AGE_COLUMN": "when", "ARCHIVER_LOB_COLUMN": "group", "ARCHIVER_RETENTION_DAYS": "30"}


@pytest.mark.chaos
@pytest.mark.parametrize("names", [RESERVED, {"ARCHIVER_LIVE_TABLE": "c" * 63, "ARCHIVER_ARCHIVE_TABLE": "a" * 63,
                                              "ARCHIVER_AGE_COLUMN": "Created At".replace(" ", "_")}],
                         ids=["reserved-words", "63-byte-and-mixed-case-names"])
def test_legal_but_awkward_names_work_when_quoted(db, env, names, leak_watch, chaos_report):
    age = names.get("ARCHIVER_AGE_COLUMN", "created_at")
    lob = names.get("ARCHIVER_LOB_COLUMN", "line_of_business")
    table = names["ARCHIVER_LIVE_TABLE"]
    db.run(f'CREATE TABLE "{table}" (id bigserial PRIMARY KEY, "{age}" timestamptz, "{lob}" text, "from" text)')
    db.run(f'INSERT INTO "{table}" ("{age}", "{lob}", "from") SELECT now() - g * interval \'1 day\', \'Life\', \'x\''
           " FROM generate_series(1, 100) g")
    cenv = cli_env({**env, **names})
    assert run_cli(cenv, "migrate", watch=leak_watch).returncode == 0
    proc = run_cli(cenv, "run", "--json", watch=leak_watch)
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)
    days = int(names.get("ARCHIVER_RETENTION_DAYS", "60"))
    # Rows were made 1..100 days before the run's (later) now(): day N and older are past the cutoff.
    assert job["state"] == "succeeded" and job["archived"] == 101 - days
    archive = names["ARCHIVER_ARCHIVE_TABLE"]
    assert db.scalar(f'SELECT count(*) FROM "{archive}"') == 101 - days
    assert db.scalar(f'SELECT count(*) FROM "{table}"') == days - 1
    chaos_report.record("hostile configuration refused (exit 2)", note="reserved words and 63-byte names work quoted")
