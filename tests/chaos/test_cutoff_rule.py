"""The cutoff rule, pinned at its edges.

A row is archived when ``created_at < cutoff`` (strictly); ``cutoff = now() - N days`` where the
N days are calendar days in the policy's time zone (across a daylight-saving change a "day" is
23 or 25 hours). NULL and future ``created_at`` are never archived.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from archiver import migration
from archiver.config import load_policy
from archiver.engine import Archiver
from local import demo

from .support import another, fingerprint, record, verify

EDGE_ROWS = {  # name -> created_at, relative to the pinned cutoff
    "null": None,
    "future": timedelta(days=400),
    "exactly at cutoff": timedelta(0),
    "1 microsecond before": timedelta(microseconds=-1),
    "1 microsecond after": timedelta(microseconds=1),
    "a year before": timedelta(days=-365),
}
ARCHIVED = {"1 microsecond before", "a year before"}


def _prepare(db, policy) -> None:
    demo.create_tables(db, policy)
    db.run("ALTER TABLE nic_cc_customer ALTER COLUMN created_at DROP NOT NULL")
    migration.migrate(db, policy)


def _insert(db, rows: dict[str, datetime | None]) -> None:
    for name, at in rows.items():
        db.run("INSERT INTO nic_cc_customer (name, created_at) VALUES (:n, :t)", n=name, t=at)


def _run(db, policy, settings, job) -> dict[str, str]:
    outcome = Archiver(db, policy, settings).run_hop(job.id, owner="w", hop=1)
    assert outcome.status == "done" and outcome.job.state == "succeeded"
    return dict(db.run("SELECT name, 'archived' FROM nic_cc_customer_backup UNION ALL"
                       " SELECT name, 'live' FROM nic_cc_customer"))


@pytest.mark.chaos
def test_null_future_and_exact_cutoff_rows_are_kept_older_ones_archived(db, policy, settings, leak_watch,
                                                                         chaos_report):
    _prepare(db, policy)
    job = Archiver(db, policy, settings).start()
    cutoff = job.cutoff
    _insert(db, {n: (None if d is None else cutoff + d) for n, d in EDGE_ROWS.items()})
    fingerprint(db, policy)
    where = _run(db, policy, settings, job)
    assert {n for n, w in where.items() if w == "archived"} == ARCHIVED, where
    check = verify(db, policy)
    record(chaos_report, "cutoff edges: NULL, future, exactly at cutoff", check, 1,
           note="strict created_at < cutoff; NULL and future kept")
    check.assert_intact()


def _days_across_a_dst_change(tz: ZoneInfo, now: datetime) -> int:
    """The smallest retention whose window contains a daylight-saving change in ``tz``."""
    local = now.astimezone(tz)
    for days in range(1, 367):
        if (local - timedelta(days=days)).utcoffset() != local.utcoffset():
            return days
    raise AssertionError(f"{tz} has no daylight saving")


@pytest.mark.chaos
@pytest.mark.parametrize("zone", ["Europe/London", "America/New_York"])
def test_retention_counts_calendar_days_in_the_configured_zone_across_dst(db, env, settings, zone, leak_watch,
                                                                          chaos_report):
    tz = ZoneInfo(zone)
    days = _days_across_a_dst_change(tz, datetime.now(UTC)) + 1
    policy = load_policy({**env, "ARCHIVER_TIMEZONE": zone, "ARCHIVER_RETENTION_DAYS": str(days)})
    zdb = another(db, timezone=zone)  # as the CLI and the Lambda open it: session in the policy's zone
    _prepare(zdb, policy)
    job = Archiver(zdb, policy, settings).start()
    as_of = datetime.fromisoformat(job.options["cutoffs"]["as_of"])
    # Calendar days: the same wall-clock time N days earlier in the zone (Python's aware arithmetic).
    calendar = (as_of.astimezone(tz) - timedelta(days=days)).astimezone(UTC)
    fixed_24h = as_of - timedelta(hours=24 * days)
    assert job.cutoff == calendar, (job.cutoff, calendar)
    assert calendar != fixed_24h  # the window really spans a DST change
    early, late = sorted((calendar, fixed_24h))
    middle = early + (late - early) / 2
    rows = {"just before calendar cutoff": calendar - timedelta(minutes=1),
            "at calendar cutoff": calendar,
            "between the two rules": middle,
            "just before 24h cutoff": fixed_24h - timedelta(minutes=1)}
    _insert(zdb, rows)
    fingerprint(zdb, policy)
    where = _run(zdb, policy, settings, job)
    expected = {name for name, at in rows.items() if at < calendar}
    assert {n for n, w in where.items() if w == "archived"} == expected, where
    check = verify(zdb, policy)
    zdb.close()
    record(chaos_report, "cutoff across a DST change", check, 1,
           note="cutoff = now() - N calendar days in the policy zone (Europe/London, America/New_York)")
    check.assert_intact()
