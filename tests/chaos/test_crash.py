"""Crash at every point: `archiver run` is SIGKILLed at random moments and run again, as the next
hop or the next night would. Nothing may be lost, duplicated or altered, and the run log's
counts must equal the archive's rows per run."""

from __future__ import annotations

import json
import random
import subprocess
import time

import pytest

from archiver.identifiers import qualified

from .support import cli_env, eligible_left, record, run_cli, seed, start_cli, verify

ATTACK = "SIGKILL of `archiver run`, resumed"
LEASE_SECONDS = 5  # the smallest lease the settings accept: a dead worker's run is free after 5 s


def _wait_until_takeover_possible(db, policy, deadline_s: float = 30) -> None:
    """A dead worker's run can be taken over once its lease has expired."""
    log = qualified(policy.schema_name, policy.log_table)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        busy = db.scalar(f"SELECT count(*) FROM {log} WHERE state IN ('pending', 'running')"
                         " AND lease_expires_at >= now()")
        if not busy:
            return
        time.sleep(0.2)
    raise AssertionError("the killed worker's lease never expired")


def _archived(db, policy) -> int:
    return int(db.scalar(f"SELECT count(*) FROM {qualified(policy.schema_name, policy.archive_table)}"))


def kill_campaign(db, env, policy, settings, watch, report, *, customers: int, kills: int, batch_size: int,
                  rng_seed: int, window: tuple[float, float]) -> None:
    rng = random.Random(rng_seed)
    seed(db, policy, customers)
    cenv = cli_env(env, ARCHIVER_LEASE_SECONDS=str(LEASE_SECONDS), ARCHIVER_BATCH_SIZE=str(batch_size))
    runs = killed = killed_while_moving = killed_with_work_left = 0
    while killed < kills:
        _wait_until_takeover_possible(db, policy)
        before = _archived(db, policy)
        proc = start_cli(cenv, "run", "--json")
        runs += 1
        try:
            out, err = proc.communicate(timeout=rng.uniform(*window))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            killed += 1
            moved = _archived(db, policy) > before
            killed_while_moving += moved
            killed_with_work_left += eligible_left(db, policy, settings) > 0
        watch.add("cli-stdout", out)
        watch.add("cli-stderr", err)
        assert proc.returncode in (0, -9), err  # finished, or killed: never a failed run
    # Resume to the end, as the next night would.
    while True:
        _wait_until_takeover_possible(db, policy)
        proc = run_cli(cenv, "run", "--json", watch=watch)
        runs += 1
        assert proc.returncode == 0, proc.stderr
        if json.loads(proc.stdout)["state"] == "succeeded" and eligible_left(db, policy, settings) == 0:
            break
    check = verify(db, policy)
    record(report, ATTACK, check, runs,
           note=f"{killed} SIGKILLs at {window[0]}-{window[1]} s ({killed_while_moving} after the process had "
                f"moved rows, {killed_with_work_left} with rows still to move), batch {batch_size}")
    check.assert_intact()
    assert check.archived > 0
    assert db.scalar(f"SELECT count(*) FROM {qualified(policy.schema_name, policy.log_table)}"
                     " WHERE state IN ('pending', 'running')") == 0


@pytest.mark.chaos
def test_sigkill_at_random_moments_loses_nothing_quick(db, env, policy, settings, leak_watch, chaos_report):
    kill_campaign(db, env, policy, settings, leak_watch, chaos_report, customers=20_000, kills=4,
                  batch_size=100, rng_seed=7, window=(0.2, 2.5))


@pytest.mark.chaos
@pytest.mark.slow
def test_sigkill_fifty_times_on_200k_rows_loses_nothing(db, env, policy, settings, leak_watch, chaos_report):
    kill_campaign(db, env, policy, settings, leak_watch, chaos_report, customers=200_000, kills=50,
                  batch_size=25, rng_seed=2026, window=(0.3, 2.0))
