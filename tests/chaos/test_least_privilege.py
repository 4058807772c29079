"""The runtime role needs only the privileges docs/security.md grants: this test runs that SQL
block as written, then the archive job (CLI) and the status API (`archiver serve`) as the role,
and checks that what the role should not do is refused."""

from __future__ import annotations

import json
import re
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from archiver.db import sqlstate
from archiver.exceptions import PermissionDeniedError
from tests.api_client import http, serve
from tests.conftest import ROOT
from tests.helpers import role_netloc

from .support import another, cli_env, record, run_cli, seed, verify

SECURITY_DOC = ROOT / "docs" / "security.md"


def documented_grants() -> str:
    blocks = re.findall(r"```sql\n(.*?)```", SECURITY_DOC.read_text(), re.S)
    assert len(blocks) == 1, "docs/security.md must hold exactly one SQL block: the grants"
    return blocks[0]


@pytest.fixture
def app_role(db, dbname):
    """The documented role, under a name of its own (roles are per server, tests share one)."""
    role = f"archiver_app_{uuid.uuid4().hex[:8]}"
    sql = documented_grants().replace("archiver_app", role).replace("appdb", f'"{dbname}"')
    yield role, [s.strip() for s in sql.split(";") if s.strip()]
    db.run(f'DROP OWNED BY "{role}"')
    db.run(f'DROP ROLE IF EXISTS "{role}"')


def _as_role(env: dict[str, str], role: str) -> dict[str, str]:
    parts = urlsplit(env["DATABASE_URL"])
    return cli_env({**env, "DATABASE_URL": urlunsplit(parts._replace(netloc=role_netloc(parts, role)))})


@pytest.mark.chaos
def test_the_job_and_the_status_api_run_with_exactly_the_documented_grants(
        db, env, policy, app_role, leak_watch, chaos_report, tmp_path):
    seed(db, policy, 3000)  # tables created by their owner (the test's superuser), as migrate would be
    role, statements = app_role
    role_env = _as_role(env, role)
    db.run(statements[0])  # CREATE ROLE: without its grants the role can do nothing
    denied = run_cli(role_env, "run", "--json", watch=leak_watch)
    assert denied.returncode != 0 and "permission denied" in denied.stdout + denied.stderr, denied
    for statement in statements[1:]:
        db.run(statement)
    # The archive job, as the role.
    proc = run_cli(role_env, "run", "--json", watch=leak_watch)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    job = json.loads(proc.stdout)
    assert job["state"] == "succeeded" and job["archived"] > 0
    # The status API, as the role: every route, and a run started over HTTP.
    with serve(role_env, tmp_path / "serve.log") as url:
        answers = {path: http("GET", url + path) for path in ("/health", "/runs", f"/runs/{job['job_id']}",
                                                              "/stats?days=7")}
        assert {p: c for p, (c, _) in answers.items()} == dict.fromkeys(answers, 200), answers
        assert answers["/health"][1]["status"] == "ok"
        code, started = http("POST", url + "/runs", {"dry_run": False})
        assert code == 202, started
        new_id = started["job_id"]
        deadline = time.monotonic() + 60
        while (run := http("GET", f"{url}/runs/{new_id}")[1])["state"] in ("pending", "running"):
            assert time.monotonic() < deadline, (run, (tmp_path / "serve.log").read_text()[-3000:])
            time.sleep(0.2)
        assert run["state"] == "succeeded", run
        code, _ = http("POST", f"{url}/runs/{new_id}/cancel")
        assert code == 409  # finished: refused by the rules, not by a missing privilege
    leak_watch.add("serve", (tmp_path / "serve.log").read_text())
    assert "permission denied" not in (tmp_path / "serve.log").read_text()
    # What the role must not be able to do.
    as_role = another(db, user=role)
    refused = 0
    for sql in ("UPDATE nic_cc_customer SET name = 'x' WHERE id = 1", "TRUNCATE nic_cc_customer_backup",
                "DELETE FROM nic_cc_customer_backup", "INSERT INTO nic_cc_customer (name) VALUES ('x')",
                "DROP TABLE nic_cc_archive_log", "CREATE TABLE chaos_intruder (id int)",
                "DELETE FROM nic_cc_call_log", "ALTER TABLE nic_cc_customer ADD COLUMN x int"):
        with pytest.raises(PermissionDeniedError) as err:
            as_role.run(sql)
        assert sqlstate(err.value) in ("42501",) or "must be owner" in str(err.value), (sql, err.value)
        refused += 1
    as_role.close()
    check = verify(db, policy)
    record(chaos_report, "least-privilege role (docs/security.md)", check, 2,
           note=f"job + status API as the role; {refused} forbidden statements refused")
    check.assert_intact()
