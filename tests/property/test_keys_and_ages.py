"""Properties of archiving tables of every key kind, plain or range-partitioned, with every age type,
in time zones with daylight saving, on the real PostgreSQL: generated tables and rows (around the
cutoff and around DST transitions), a dry run, a run killed at a random batch and resumed, a restore.

Invariants: every original row is live xor archived with identical content; exactly the rows past
the cutoff (read in the policy's time zone) are archived, the others unchanged; the dry run counts
what the run moves; the restore gives back the original table.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from archiver import migration
from tests.keyed_tables import (
    AGE_TYPES,
    KEYS,
    archive_exactly_the_eligible,
    contents,
    create,
    drop,
    eligible,
    insert,
    policy_for,
    restore,
    set_zone,
)

# 2026's daylight-saving transitions, wall clock: a spring-forward gap and an autumn overlap each.
TRANSITIONS = {
    "America/New_York": (datetime(2026, 3, 8, 2, 0), datetime(2026, 11, 1, 1, 0)),
    "Europe/London": (datetime(2026, 3, 29, 1, 0), datetime(2026, 10, 25, 1, 0)),
    "Australia/Sydney": (datetime(2026, 10, 4, 2, 0), datetime(2026, 4, 5, 2, 0)),
}
TOO_CLOSE = timedelta(minutes=3)  # the dry run and the run pin their cutoffs seconds apart
_names = itertools.count()


@dataclass(frozen=True)
class Case:
    key: str
    partitioned: bool
    age_type: str
    zone: str
    retention_days: int
    walls: tuple[datetime, ...]  # the rows' ages, as wall-clock times in the zone
    batch_size: int
    killed_after: int | None  # batches before the worker stops; another one resumes the run

    def ages(self) -> list[Any]:
        tz = ZoneInfo(self.zone)
        if self.age_type == "date":
            return [w.date() for w in self.walls]
        if self.age_type == "timestamp":
            return list(self.walls)
        return [w.replace(tzinfo=tz) for w in self.walls]


def _cutoff_wall(zone: str, days: int) -> datetime:
    """Roughly where the run's cutoff falls, on the wall clock (now minus calendar days there)."""
    return datetime.now(ZoneInfo(zone)).replace(tzinfo=None) - timedelta(days=days)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    zone = draw(st.sampled_from(sorted(TRANSITIONS)))
    transitions = TRANSITIONS[zone]
    today = datetime.now(ZoneInfo(zone)).date()
    # A cutoff on a transition's day, or at an ordinary distance.
    retention = draw(st.sampled_from([*((today - t.date()).days for t in transitions), 1, 30, 60]))
    cutoff = _cutoff_wall(zone, retention)
    near_cutoff = st.integers(-3000, 3000).map(lambda m: cutoff + timedelta(minutes=m))
    near_dst = st.tuples(st.sampled_from(transitions), st.integers(-90, 150)).map(
        lambda tm: tm[0] + timedelta(minutes=tm[1]))
    anywhere = st.integers(0, 400 * 24 * 60).map(lambda m: datetime(2026, 1, 1) + timedelta(minutes=m))
    walls = draw(st.lists(st.one_of(near_cutoff, near_dst, anywhere), min_size=1, max_size=25))
    # Keep clear of the cutoff by a few minutes: each run pins its own.
    walls = [w + TOO_CLOSE * 2 if abs(w - cutoff) < TOO_CLOSE else w for w in walls]
    age_type = draw(st.sampled_from(AGE_TYPES))
    return Case(key=draw(st.sampled_from(sorted(KEYS))), partitioned=draw(st.booleans()), age_type=age_type,
                zone=zone, retention_days=retention, walls=tuple(walls), batch_size=draw(st.integers(1, 7)),
                killed_after=draw(st.none() | st.integers(1, 5)))


def check(db: Any, policy: Any, settings: Any, case: Case) -> None:
    table = f"p{next(_names)}"
    set_zone(db, case.zone)
    try:
        create(db, table, case.key, case.age_type, partitioned=case.partitioned)
        ages = case.ages()
        keys = insert(db, table, case.key, case.age_type, ages)
        original, _ = contents(db, table, table)
        pol = policy_for(policy, table, case.zone, case.retention_days, case.batch_size)
        migration.migrate(db, pol)
        job, _ = archive_exactly_the_eligible(db, pol, settings, keys, ages, original, max_batches=case.killed_after)
        if job.records_archived:
            restore(db, pol, job)
        assert contents(db, table, f"{table}_backup") == (original, {})
    finally:
        drop(db, table, f"{table}_backup", f"{table}_log")


COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@hsettings(max_examples=20, **COMMON)
@given(case=cases())
def test_every_row_live_xor_archived_and_restored_whatever_the_key_and_age_type(db, policy, settings, case):
    check(db, policy, settings, case)


@pytest.mark.slow
@pytest.mark.chaos
@hsettings(max_examples=400, **COMMON)
@given(case=cases())
def test_keys_and_ages_campaign(db, policy, settings, case):
    check(db, policy, settings, case)


def test_the_oracle_reads_ages_in_the_zone() -> None:
    """The oracle itself, on the cases the properties rely on: a timestamp in the gap is its wall
    clock, not the instant PostgreSQL would make of it; a date is its midnight there."""
    cutoff = datetime(2026, 3, 8, 7, 20, tzinfo=ZoneInfo("UTC"))  # 03:20 daylight time in New York
    assert eligible(datetime(2026, 3, 8, 2, 30), cutoff, "America/New_York")
    assert eligible(datetime(2026, 3, 8, 3, 10), cutoff, "America/New_York")
    assert not eligible(datetime(2026, 3, 8, 3, 30), cutoff, "America/New_York")
    assert eligible(date(2026, 3, 8), cutoff, "America/New_York")
    assert not eligible(date(2026, 3, 9), cutoff, "America/New_York")
