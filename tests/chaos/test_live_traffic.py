"""Live traffic during the job: the application updates, reads and inserts customers at a fixed
rate in another process while `archiver run` works. Zero lost updates, zero errors, and the
application's latency before and during the run reported."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

from .support import cli_env, record, run_cli, seed, verify

ATTACK = "live traffic during the run"


def percentiles(ms: list[float]) -> str:
    if len(ms) < 2:
        return "-"
    q = statistics.quantiles(ms, n=100)
    return f"p50 {q[49]:.1f} / p95 {q[94]:.1f} / p99 {q[98]:.1f} ms"


def traffic_campaign(db, env, policy, settings, watch, report, tmp_path, *, customers: int, rate: float) -> None:
    seed(db, policy, customers)
    stop, out = tmp_path / "stop", tmp_path / "traffic.json"
    traffic = subprocess.Popen(
        [sys.executable, "-m", "tests.chaos.traffic", "--url", env["DATABASE_URL"], "--rate", str(rate),
         "--max-id", str(customers), "--stop-file", str(stop), "--out", str(out)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "functions")})
    time.sleep(3)  # baseline: the application alone
    run_started = time.time()
    proc = run_cli(cli_env(env), "run", "--json", watch=watch)
    run_ended = time.time()
    time.sleep(2)
    stop.touch()
    assert traffic.wait(60) == 0
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)
    result = json.loads(out.read_text())
    ops = result["ops"]
    errors = [o for o in ops if o[3].startswith("error")]
    during = [o[2] for o in ops if run_started <= o[0] <= run_ended]
    before = [o[2] for o in ops if o[0] < run_started]
    # Every update the application saw committed is in the row, wherever the row lives now.
    committed = {int(k): v for k, v in result["committed"].items()}
    found = dict(db.run("SELECT id, CAST(amount_due AS text) FROM nic_cc_customer WHERE id = ANY(:ids)"
                        " UNION ALL SELECT id, CAST(amount_due AS text) FROM nic_cc_customer_backup"
                        " WHERE id = ANY(:ids)", ids=list(committed)))
    lost_updates = sum(1 for cid, v in committed.items() if found.get(cid) != v)
    inserted_missing = len(result["inserted"]) - int(db.scalar(
        "SELECT count(*) FROM nic_cc_customer WHERE id = ANY(:ids)", ids=result["inserted"]))
    check = verify(db, policy, changed_ids=committed)
    gone = sum(1 for o in ops if o[3] == "gone")
    record(report, ATTACK, check, 1,
           note=f"{len(ops)} app ops at {rate:g}/s ({len(during)} during a {job['duration_ms']} ms run), "
                f"{len(errors)} errors, {lost_updates} lost updates, {gone} updates found the row archived; "
                f"latency before {percentiles(before)}, during {percentiles(during)}")
    check.assert_intact()
    assert not errors, errors[:5]
    assert lost_updates == 0 and inserted_missing == 0
    assert job["state"] == "succeeded" and job["archived"] > 0
    assert len(during) > rate  # the traffic really ran alongside the job


@pytest.mark.chaos
def test_live_traffic_loses_no_update_and_sees_no_error_quick(db, env, policy, settings, leak_watch, chaos_report,
                                                              tmp_path):
    traffic_campaign(db, env, policy, settings, leak_watch, chaos_report, tmp_path, customers=60_000, rate=200)


@pytest.mark.chaos
@pytest.mark.slow
def test_live_traffic_on_200k_rows_loses_no_update_and_sees_no_error(db, env, policy, settings, leak_watch,
                                                                     chaos_report, tmp_path):
    traffic_campaign(db, env, policy, settings, leak_watch, chaos_report, tmp_path, customers=200_000, rate=300)
