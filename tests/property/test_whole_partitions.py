"""Property of whole-partition moves over random layouts, on the real PostgreSQL: monthly range
partitions on the age column (some empty, one perhaps split by hash, with or without a default
partition), every age type, time zones with daylight saving, random retentions (so the cutoff falls
anywhere), a run stopped after a few batches and taken up again, then a restore (of the run's rows, or of the rows
archived since it started); perhaps the same again
(the archive partitions the first restore emptied are in place).

Invariants: exactly the leaves lying entirely past the cutoff (and holding rows) move whole, with their
row counts; those directly under the live table are attached to the archive (they leave the live table
and become the archive's partition of their range, named for it, holding exactly their rows), those
under the month split by hash are copied (they stay, empty); without a default partition in the live
table, an empty partition of an attached leaf's name and range takes its place; every row is live xor archived with its
content, exactly the eligible ones archived; the dry run counts what the run moves; the restore gives
the live table back its partitions (names and ranges) and puts every row back into the partition it came
from, nothing left in the archive.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from archiver import migration
from archiver.restore import Restorer
from tests.keyed_tables import (
    AGE_TYPES,
    archive_exactly_the_eligible,
    contents,
    drop,
    policy_for,
    restore,
    set_zone,
)
from tests.partitioned_tables import (
    archive_leaf,
    as_ages,
    clear_of,
    create_monthly,
    expected_how,
    homes,
    how_moved,
    leaf_name,
    month_starts,
    moved_whole,
    partitions,
    rows_in,
    seed,
    whole,
)
from tests.property.test_keys_and_ages import COMMON

ZONES = ("UTC", "America/New_York", "Europe/London", "Australia/Sydney")
_names = itertools.count()


@dataclass(frozen=True)
class Layout:
    zone: str
    age_type: str
    months_back: int  # the first partition starts this many months before this month
    in_months: tuple[tuple[float, ...], ...]  # per month, where its rows fall (share of the month)
    default: tuple[int, ...] | None  # days before the first month (>0) or after the last (<=0); None: no default
    hashed: int | None  # the month split by hash into two leaves
    retention_days: int
    batch_size: int
    killed_after: int | None
    restore_batch_size: int
    by_since: bool  # the restore selects the rows archived since the run started, not the run's rows
    again: bool  # archived and restored a second time

    def starts(self) -> list[date]:
        today = datetime.now(ZoneInfo(self.zone)).date()
        first = month_starts(date(today.year - 1, today.month, 1), 13 - self.months_back)[-1]
        return month_starts(first, len(self.in_months) + 1)

    def walls(self) -> list[datetime]:
        starts = self.starts()
        out = []
        for (lo, hi), shares in zip(pairwise(starts), self.in_months, strict=True):
            begin, end = datetime.combine(lo, time()), datetime.combine(hi, time())
            minutes = int((end - begin).total_seconds() // 60)
            out += [begin + timedelta(minutes=int(minutes * s)) for s in shares]  # whole minutes: never its end
        first, last = datetime.combine(starts[0], time()), datetime.combine(starts[-1], time())
        out += [first - timedelta(days=d) if d > 0 else last - timedelta(days=d) for d in self.default or ()]
        return out


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    months = draw(st.integers(1, 7))
    in_months = tuple(draw(st.lists(st.lists(st.floats(0, 1, exclude_max=True), max_size=3).map(tuple),
                                    min_size=months, max_size=months)))
    return Layout(zone=draw(st.sampled_from(ZONES)), age_type=draw(st.sampled_from(AGE_TYPES)),
                  months_back=draw(st.integers(1, 10)), in_months=in_months,
                  default=draw(st.none() | st.lists(st.integers(-60, 400), max_size=4).map(tuple)),
                  hashed=draw(st.none() | st.integers(0, months - 1)),
                  retention_days=draw(st.sampled_from([1, 20, 45, 60, 90, 150, 250])),
                  batch_size=draw(st.integers(1, 7)), killed_after=draw(st.none() | st.integers(1, 3)),
                  restore_batch_size=draw(st.integers(1, 7)), by_since=draw(st.booleans()),
                  again=draw(st.booleans()))


def check(db: Any, policy: Any, settings: Any, case: Layout) -> None:
    table = f"w{next(_names)}"
    set_zone(db, case.zone)
    starts = case.starts()
    hashed = None if case.hashed is None else starts[case.hashed]
    try:
        create_monthly(db, table, case.age_type, starts, default=case.default is not None, hashed=hashed)
        cutoff_wall = datetime.now(ZoneInfo(case.zone)).replace(tzinfo=None) - timedelta(days=case.retention_days)
        ages = as_ages(clear_of(case.walls(), cutoff_wall), case.zone, case.age_type)
        keys = seed(db, table, case.age_type, ages)
        original, before = contents(db, table, table)[0], homes(db, table)
        pol = policy_for(policy, table, case.zone, case.retention_days, case.batch_size)
        migration.migrate(db, pol)

        layout = partitions(db, table)
        for _ in range(2 if case.again else 1):
            job, cutoff = archive_exactly_the_eligible(db, pol, settings, keys, ages, original,
                                                       max_batches=case.killed_after)
            leaves = [leaf for lo, hi in pairwise(starts) if whole(hi, cutoff, case.zone)
                      for leaf in ([leaf_name(table, lo, h) for h in (0, 1)] if lo == hashed
                                   else [leaf_name(table, lo)])]
            counts = {leaf: sum(1 for h in before.values() if h == leaf) for leaf in leaves}
            assert moved_whole(job) == {leaf: n for leaf, n in counts.items() if n}
            assert how_moved(job) == {leaf: expected_how(leaf, table, hashed) for leaf in moved_whole(job)}
            attached = {leaf for leaf, how in how_moved(job).items() if how == "attached"}
            live_parts, archive_parts = partitions(db, table), partitions(db, f"{table}_backup")
            if case.default is not None:  # the default takes a backdated row of an attached leaf's range
                assert not attached & set(live_parts)
            else:  # an empty partition of the leaf's name and range takes its place
                assert all(live_parts[leaf] == layout[leaf] and rows_in(db, leaf) == 0 for leaf in attached)
            assert all(archive_parts[archive_leaf(table, leaf)] == layout[leaf] for leaf in attached)
            archived = homes(db, f"{table}_backup")
            assert all(archived[k] == archive_leaf(table, leaf) for k, leaf in before.items() if leaf in attached)
            assert all(rows_in(db, leaf) == 0 for leaf, how in how_moved(job).items() if how == "copied")
            if job.records_archived and case.by_since:
                done, result = Restorer(db, pol, batch_size=case.restore_batch_size).restore(since=job.started_at)
                assert done.state == "succeeded" and result.restored == job.records_archived
            elif job.records_archived:
                restore(db, pol, job, case.restore_batch_size)
            assert partitions(db, table) == layout
            assert homes(db, table) == before
            assert contents(db, table, f"{table}_backup") == (original, {})
    finally:
        drop(db, table, f"{table}_backup", f"{table}_log")


@hsettings(max_examples=10, **COMMON)
@given(case=layouts())
def test_exactly_the_wholly_old_leaves_move_whole_and_every_row_comes_back_to_a_partition_of_its_name(
        db, policy, settings, case):
    check(db, policy, settings, case)


@pytest.mark.slow
@pytest.mark.chaos
@hsettings(max_examples=300, **COMMON)
@given(case=layouts())
def test_whole_partitions_campaign(db, policy, settings, case):
    check(db, policy, settings, case)
