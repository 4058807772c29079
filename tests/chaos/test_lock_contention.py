"""Lock contention: the application holds row locks on eligible rows for the whole run. The job
must skip them without waiting, finish, and archive them on a later run (with the
application's changes)."""

from __future__ import annotations

import time

import pytest

from archiver.eligibility import pin_cutoffs
from archiver.engine import Archiver
from archiver.events import start_event
from local.runner import drive

from .support import another, eligible_left, make_deps, record, seed, verify


def _eligible_ids(db, policy, settings, n: int) -> list[int]:
    archiver = Archiver(db, policy, settings)
    stmts = archiver.statements(pin_cutoffs(db, policy))
    return [r[0] for r in db.run(f"SELECT l.id FROM nic_cc_customer l WHERE {stmts.elig.sql}"
                                 " ORDER BY random() LIMIT :n", n=n, **stmts.params)]


def _run(db, policy, settings, sink) -> tuple[dict, float]:
    deps = make_deps(another(db), policy, settings, sink)
    started = time.monotonic()
    job = Archiver(deps.db, policy, settings).start(fixed_batch_size=200)
    result = drive(start_event(job.id), deps, 900).last
    deps.db.close()
    return result["job"], time.monotonic() - started


@pytest.mark.chaos
def test_rows_the_application_keeps_locked_are_skipped_and_archived_by_a_later_run(
        db, policy, settings, leak_watch, chaos_report):
    seed(db, policy, 8000)
    ids = _eligible_ids(db, policy, settings, 60)
    for_update, updated = ids[:30], ids[30:]
    selecting = another(db, "app-select-for-update")
    updating = another(db, "app-update")
    selecting.run("START TRANSACTION")
    selecting.run("SELECT id FROM nic_cc_customer WHERE id = ANY(:ids) FOR UPDATE", ids=for_update)
    updating.run("START TRANSACTION")
    updating.run("UPDATE nic_cc_customer SET status = 'in-dispute', updated_at = now() WHERE id = ANY(:ids)",
                 ids=updated)
    sink = leak_watch.sink()
    first, seconds = _run(db, policy, settings, sink)
    assert first["state"] == "succeeded"
    assert seconds * 1000 < settings.lock_timeout_ms  # skipped, never waited for
    assert eligible_left(db, policy, settings) == len(ids)
    still_live = db.scalar("SELECT count(*) FROM nic_cc_customer WHERE id = ANY(:ids)", ids=ids)
    assert still_live == len(ids)
    selecting.run("COMMIT")
    updating.run("COMMIT")
    selecting.close()
    updating.close()
    second, _ = _run(db, policy, settings, sink)
    assert second["state"] == "succeeded" and second["archived"] == len(ids)
    assert eligible_left(db, policy, settings) == 0
    assert db.scalar("SELECT count(*) FROM nic_cc_customer_backup WHERE id = ANY(:ids) AND status = 'in-dispute'",
                     ids=updated) == len(updated)  # the application's change travelled with the row
    check = verify(db, policy, changed_ids=updated)
    record(chaos_report, "application holds row locks during the run", check, 2,
           note=f"{len(ids)} rows locked (FOR UPDATE, UPDATE) for the whole run: skipped, archived next run")
    check.assert_intact()
    assert not sink.alerts
