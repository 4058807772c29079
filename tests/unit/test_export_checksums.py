"""Properties of the export's Parquet encoding and checksums (no database)."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.export import checksum, column_spec, from_parquet, row_digest, to_parquet

pytest.importorskip("pyarrow")

SPECS = [column_spec(n, t) for n, t in (
    ("id", "bigint"), ("name", "text"), ("amount", "numeric(12,2)"), ("ratio", "double precision"),
    ("flag", "boolean"), ("born", "date"), ("at", "timestamp with time zone"), ("photo", "bytea"),
    ("tags", "text[]"), ("scores", "integer[]"), ("doc", "jsonb"))]

rows = st.lists(st.tuples(
    st.integers(-2**63, 2**63 - 1),
    st.none() | st.text(),
    st.none() | st.decimals(min_value=Decimal("-9999999999.99"), max_value=Decimal("9999999999.99"),
                            places=2, allow_nan=False),
    st.none() | st.floats(allow_nan=False),
    st.none() | st.booleans(),
    st.none() | st.dates(),
    st.none() | st.datetimes(timezones=st.just(UTC)),
    st.none() | st.binary(max_size=20),
    st.none() | st.lists(st.none() | st.text(max_size=5), max_size=4),
    st.none() | st.lists(st.integers(-2**31, 2**31 - 1), max_size=4),
    st.none() | st.just('{"a": [1, 2.50]}'),
), max_size=30)


@settings(max_examples=60, deadline=None)
@given(rows)
def test_every_row_reads_back_from_parquet_with_the_same_digest(data):
    back = from_parquet(to_parquet(SPECS, data, {}), [s.name for s in SPECS])
    assert [row_digest(r) for r in back] == [row_digest(r) for r in data]


@given(st.lists(st.integers(0, 2**128 - 1), max_size=20), st.randoms())
def test_the_checksum_of_a_set_of_rows_does_not_depend_on_their_order(digests, rnd):
    shuffled = list(digests)
    rnd.shuffle(shuffled)
    assert checksum(digests) == checksum(shuffled)


def test_a_changed_value_changes_the_digest():
    assert row_digest([1, "a", Decimal("1.10")]) != row_digest([1, "a", Decimal("1.1")])
    assert row_digest([1, None]) != row_digest([1, "None"])
