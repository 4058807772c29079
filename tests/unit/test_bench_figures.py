"""The benchmark's own arithmetic: how a run's flatness, the median round and the verdicts are
computed (no database: the figures come from made-up batches)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.report import Target
from bench.run import cliff, targets
from bench.scenarios import DEFAULT_RUN, Batch, JobRun
from bench.traffic import _parse


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


def test_a_size_slower_per_row_than_any_smaller_one_is_a_cliff() -> None:
    swept = {250: {"us_per_row": 10.0}, 1000: {"us_per_row": 5.0}, 5000: {"us_per_row": 6.0},
             10000: {"us_per_row": 4.0}}

    assert cliff(swept) == 1.2  # 5000 against 1000; against 250 it is faster


def test_every_target_is_reported_with_pass_or_miss_and_a_miss_is_not_dropped() -> None:
    results = {"headline": {"server": "stock", "transport": "TCP", "default": {"limit_ratio": {"median": 0.45}},
                            "cliff": 1.05, "live": [{"lost_updates": 0}, {"lost_updates": 0}]},
               "tuned": {"server": "tuned", "transport": "Unix socket",
                         "default": {"limit_ratio": {"median": 0.55}}},
               "night": {"process_start_s": 1.0, "tables": [{"rows": 10, "eligible": 1, "limit_s": 1.0,
                                                             "job_s": 5.0}]}}

    assert [t.as_dict()["result"] for t in targets(results)] == ["MISS", "PASS", "PASS", "MISS", "PASS"]


@pytest.mark.parametrize(("value", "at_most", "result"), [(2.0, True, "PASS"), (2.01, True, "MISS"),
                                                          (0.5, False, "PASS"), (0.49, False, "MISS")])
def test_a_target_on_its_bound_passes(value: float, at_most: bool, result: str) -> None:
    assert Target("t", value, 2.0 if at_most else 0.5, at_most=at_most).as_dict()["result"] == result


def test_pgbench_latency_counts_from_the_scheduled_start_and_failures_apart(tmp_path: Path) -> None:
    # client, number, time us, script, epoch s, epoch us, schedule lag us
    log = tmp_path / "tx.log"
    log.write_text("0 1 2000 0 100 0 500\n0 2 failed 0 101 0 0\n1 1 3000 0 102 500000 1000\n0 3 1000 0 200 0 0\n")

    found = _parse(log, 100.0, 150.0)

    assert found.ms == [2.5, 4.0] and found.failed == 1
    assert found.summary()["max_ms"] == 4.0
