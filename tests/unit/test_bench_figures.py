"""The benchmark's own arithmetic: how a run's flatness, the median round and the verdicts are
computed (no database: the figures come from made-up batches)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bench.live import CONTROL_STEP_MS, LiveRun, disk_writer, pooled
from bench.report import Target
from bench.run import median_of, targets
from bench.scenarios import DEFAULT_RUN, Batch, JobRun


def run_of(batch_size: int, batches: list[tuple[float, int]]) -> JobRun:
    """A finished run from (ms, rows) pairs, ending with the empty batch that ends every run."""
    made = [Batch(i * 0.1, ms, rows, rows) for i, (ms, rows) in enumerate(batches)]
    made.append(Batch(len(batches) * 0.1, 1.0, 0, 0))
    return JobRun(batch_size, sum(r for _, r in batches), 10.0, 1, "succeeded", made)


def test_flatness_of_fixed_batches_compares_batch_times_of_the_last_tenth_with_the_first() -> None:
    run = run_of(1000, [(10.0, 1000)] * 10 + [(12.0, 1000)] * 80 + [(15.0, 1000)] * 10)

    assert run.flatness() == pytest.approx(1.5)


def test_flatness_of_fixed_batches_ignores_the_short_last_batch() -> None:
    run = run_of(1000, [(10.0, 1000)] * 20 + [(2.0, 120)])

    assert run.flatness() == pytest.approx(1.0)


def test_flatness_of_the_adaptive_run_is_time_per_row_because_its_batch_time_is_steered() -> None:
    # Same 25 ms per batch throughout, but the batches shrink to half: each row costs twice as much.
    run = run_of(DEFAULT_RUN, [(25.0, 2000)] * 10 + [(25.0, 1500)] * 80 + [(25.0, 1000)] * 10 + [(5.0, 10)])

    assert run.flatness() == pytest.approx(2.0)


def test_the_median_round_is_the_middle_one_and_the_lower_middle_of_an_even_count() -> None:
    assert median_of([3.0, 1.0, 2.0], key=float) == 2.0
    assert median_of([4.0, 1.0, 3.0, 2.0], key=float) == 2.0
    assert median_of([7.0], key=float) == 7.0


def test_every_target_is_reported_with_pass_or_miss_and_a_miss_is_not_dropped() -> None:
    headline = {"limit_ratio": 0.45, "row_by_row_ratio": 70.0, "flatness": 1.1, "batch_size": 1000,
                "worst_batch_ms": 120.0, "live_p99_ratio": 1.5, "live_cpus": "shared", "lost_updates": 0}

    assert [t.as_dict()["result"] for t in targets(headline)] == ["MISS", "PASS", "PASS", "MISS", "PASS", "PASS"]


@pytest.mark.parametrize(("value", "at_most", "result"), [(2.0, True, "PASS"), (2.01, True, "MISS"),
                                                          (0.5, False, "PASS"), (0.49, False, "MISS")])
def test_a_target_on_its_bound_passes(value: float, at_most: bool, result: str) -> None:
    assert Target("t", value, 2.0 if at_most else 0.5, at_most=at_most).as_dict()["result"] == result


def live_of(without: list[float], during: list[float]) -> LiveRun:
    return LiveRun(run_of(DEFAULT_RUN, [(10.0, 100)]), 200, without, during, 0, Decimal(0), 0, 0, 0)


def test_the_live_p99_pools_every_rounds_operations_so_one_stalled_round_does_not_decide_it() -> None:
    # Three rounds of 1,000 operations each side. One round meets a stall that queues 15
    # operations at 100 ms: its own p99 is the stall's, the pool's p99 is not.
    quiet = live_of([1.0] * 1000, [1.5] * 1000)
    stalled = live_of([1.0] * 1000, [1.5] * 985 + [100.0] * 15)

    assert stalled.summary()["p99_ratio"] == 100.0
    assert pooled([quiet, stalled, quiet])["p99_ratio"] == 1.5
    assert pooled([quiet, stalled, quiet])["ops_during_job"] == 3000


def test_what_the_job_adds_to_the_p99_is_in_milliseconds_beside_the_ratio() -> None:
    # The same 2 ms added to a quiet hour's p99 and to a busy one's: the ratios differ, the ms do not.
    quiet, busy = live_of([1.0] * 1000, [3.0] * 1000), live_of([3.0] * 1000, [5.0] * 1000)

    assert [r.summary()["p99_ratio"] for r in (quiet, busy)] == [3.0, 1.67]
    assert [r.summary()["p99_added_ms"] for r in (quiet, busy)] == [2.0, 2.0]


def test_the_control_writer_writes_its_rate_in_whole_pages_and_leaves_no_file_behind(tmp_path: Path) -> None:
    with disk_writer(tmp_path, bytes_per_s=1_000_000, seconds=0.2, file_bytes=1 << 20) as write:
        [path] = tmp_path.iterdir()
        assert path.read_bytes() == bytes(1 << 20)  # written in full (zeros) before the measurement
        run = write(None)  # type: ignore[arg-type]  # the control does no database work
        data = path.read_bytes()

    # 10,000 bytes a step at 1 MB/s, rounded to whole 8 kB pages; at most one step per
    # CONTROL_STEP_MS, fewer if the disk stalls (it does, on a shared VM).
    pages = [data[i:i + 8192] for i in range(0, len(data), 8192)]
    written = sum(page != bytes(8192) for page in pages)
    assert 0 < written <= 200 // CONTROL_STEP_MS + 1
    assert run.seconds >= 0.2 and run.archived == 0
    assert list(tmp_path.iterdir()) == []
