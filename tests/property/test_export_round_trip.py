"""Properties of export -> verify -> purge -> restore on the real PostgreSQL, for every key kind, plain
or partitioned: generated archives whose rows are of many ages (some too young to export), exported
in files of any size, the export interrupted after a few files and continued.

Invariants: exactly the archive rows past the export age are exported, each once, and purged; the
others stay, unchanged; the restore from the export gives back every purged row with identical content.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from archiver import migration
from archiver.cold_restore import restore_from
from archiver.cold_storage import LocalStorage
from archiver.export import export
from archiver.restore import purge
from tests.keyed_tables import KEYS, archive, contents, create, drop, insert, policy_for
from tests.property.test_keys_and_ages import COMMON

pytest.importorskip("pyarrow")

EXPORT_AGE = 730
_names = itertools.count()


@dataclass(frozen=True)
class Case:
    key: str
    partitioned: bool
    shifts: tuple[int, ...]  # days each archive row's archived_at goes back, in key order
    rows_per_file: int
    stopped_after: int | None  # files before the first export pauses; the next one continues it


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(1, 18))
    # Around the export age (a row exactly at it would race the cutoff) and across months.
    shifts = draw(st.lists(st.sampled_from([0, 100, 725, 736, 760, 800, 850, 1000]), min_size=n, max_size=n))
    return Case(key=draw(st.sampled_from(sorted(KEYS))), partitioned=draw(st.booleans()), shifts=tuple(shifts),
                rows_per_file=draw(st.integers(1, 7)), stopped_after=draw(st.none() | st.integers(1, 3)))


def check(db, policy, settings, root: Path, case: Case) -> None:
    table = f"x{next(_names)}"
    backup = f"{table}_backup"
    now = datetime.now(UTC)
    try:
        create(db, table, case.key, "timestamptz", partitioned=case.partitioned)
        ages = [now - timedelta(days=90, minutes=i) for i in range(len(case.shifts))]
        insert(db, table, case.key, "timestamptz", ages)
        pol = policy_for(policy, table, policy.timezone, 60, batch_size=5)
        migration.migrate(db, pol)
        assert archive(db, pol, settings)[1].records_archived == len(case.shifts)
        db.run(f"WITH o AS (SELECT ctid AS c, row_number() OVER (ORDER BY {', '.join(KEYS[case.key][1])}) AS n"
               f" FROM {backup}) UPDATE {backup} b SET archived_at = archived_at"
               f" - make_interval(days => (CAST(:s AS int[]))[o.n]) FROM o WHERE b.ctid = o.c",
               s=list(case.shifts))
        _, before = contents(db, table, backup)
        old = {k for k, in db.run(f"SELECT CAST(ROW({', '.join(KEYS[case.key][1])}) AS text) FROM {backup}"
                                  f" WHERE archived_at < now() - interval '{EXPORT_AGE} days'")}
        storage = LocalStorage(root / table)
        first = export(db, pol, storage, EXPORT_AGE, rows_per_file=case.rows_per_file, max_files=case.stopped_after)
        result = first if first.done else export(db, pol, storage, EXPORT_AGE, rows_per_file=case.rows_per_file)
        assert result.verified and result.exported == len(old)
        assert result.export_id == first.export_id or not old
        assert purge(db, pol, EXPORT_AGE).as_dict()["purged"] == len(old)
        _, left = contents(db, table, backup)
        assert left == {k: v for k, v in before.items() if k not in old}  # the young rows, unchanged
        if old:
            _, restored = restore_from(db, pol, storage)
            assert restored.restored == len(old) and restored.conflict_count == 0
        assert contents(db, table, backup)[1] == before
    finally:
        drop(db, table, backup, f"{table}_log", f"{backup}_exported")


@hsettings(max_examples=12, **COMMON)
@given(case=cases())
def test_exactly_the_old_rows_are_exported_once_purged_and_restored_whatever_the_key(
        db, policy, settings, tmp_path_factory, case):
    check(db, policy, settings, tmp_path_factory.mktemp("cold"), case)
