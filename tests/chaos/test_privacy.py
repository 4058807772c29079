"""No customer data in logs, alerts or the run log, even when a failure's database error would
quote the failing row (PostgreSQL's DETAIL: "Failing row contains (...)").

Every test of this suite is also watched by the ``leak_watch`` fixture; these provoke the
failures whose messages are most likely to carry a row."""

from __future__ import annotations

import json

import pytest

from archiver.engine import Archiver
from archiver.events import start_event
from local.runner import drive

from .support import SEEDED_VALUES, cli_env, make_deps, record, run_cli, seed, verify

# The archive refuses every row: the batch fails with a check violation naming the row.
REFUSE_ROWS = "ALTER TABLE nic_cc_customer_backup ADD CONSTRAINT chaos_refuses_all CHECK (archived_by = 'nobody')"


@pytest.mark.chaos
def test_a_failing_batch_alerts_and_logs_without_the_rows_content(db, policy, settings, leak_watch, chaos_report):
    seed(db, policy, 500)
    db.run(REFUSE_ROWS)
    sink = leak_watch.sink()
    deps = make_deps(db, policy, settings, sink)
    job = Archiver(db, policy, settings).start()
    with pytest.raises(Exception):  # noqa: B017 - the worker re-raises after failing the run
        drive(start_event(job.id), deps, 900)
    assert [a.kind for a in sink.alerts] == ["failure"]
    assert "check constraint" in sink.alerts[0].summary
    error = db.scalar("SELECT error_message FROM nic_cc_archive_log WHERE job_id = CAST(:j AS uuid)", j=job.id)
    assert error and not SEEDED_VALUES.search(error), error
    check = verify(db, policy)
    record(chaos_report, "failing batch: error text without row data", check, 1,
           note="CHECK violation in the archive; alert, log line and run log carry no row")
    check.assert_intact()


@pytest.mark.chaos
def test_the_cli_reports_a_failing_run_without_the_rows_content(db, env, policy, leak_watch, chaos_report):
    seed(db, policy, 500)
    db.run(REFUSE_ROWS)
    proc = run_cli(cli_env(env), "run", "--json", watch=leak_watch)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["state"] == "failed"
    assert "Traceback" not in proc.stderr
    check = verify(db, policy)
    record(chaos_report, "failing batch: error text without row data", check, 1)
    check.assert_intact()
