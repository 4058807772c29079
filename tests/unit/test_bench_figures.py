"""The benchmark's own arithmetic: how a run's flatness, the median round and the verdicts are
computed (no database: the figures come from made-up batches)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import cases
from bench.report import Target
from bench.run import batches_of, median_round, targets
from bench.scenarios import DEFAULT_RUN, Batch, JobRun, Moved
from bench.sweep import cliff, combine, rotated
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
    # Rows/s over the limit: time per row is its inverse, so 1000 at 0.6 and 5000 at 0.5 is x1.2 a row.
    assert cliff({250: 0.3, 1000: 0.6, 5000: 0.5, 10000: 0.75}) == 1.2  # against 250, 5000 is faster


def test_every_size_runs_at_every_place_of_the_round_once_the_rounds_cover_it() -> None:
    sizes = [250, 500, 1000]

    orders = [rotated(sizes, r, 3) for r in range(3)]

    assert orders == [[250, 500, 1000], [500, 1000, 250], [1000, 250, 500]]
    assert [rotated(list(range(9)), r, 3)[0] for r in range(3)] == [0, 3, 6]  # spread over the round


def test_a_sweep_entry_over_rounds_is_its_median_round_with_the_spread_beside_it() -> None:
    rounds = [{"limit_ratio": 0.9, "us_per_row": 30.0, "batches": 5}, {"limit_ratio": 0.3, "us_per_row": 90.0,
                                                                         "batches": 7},
              {"limit_ratio": 0.6, "us_per_row": 45.0, "batches": 6}]

    found = combine(rounds)

    assert found["batches"] == 6
    assert found["limit_ratio"] == {"median": 0.6, "rounds": [0.9, 0.3, 0.6]}
    assert found["us_per_row"]["median"] == 45.0


def test_the_median_round_is_chosen_by_the_run_s_ratio_to_its_own_limit() -> None:
    slow, mid, fast = (run_of(DEFAULT_RUN, [(10.0, n)]) for n in (100, 200, 300))
    rounds = [{"limit": Moved(1000, 1.0), "default": fast}, {"limit": Moved(100, 1.0), "default": slow},
              {"limit": Moved(1000, 1.0), "default": mid}]

    # Ratios 0.03, 0.1 (its limit was slower), 0.02: the median is fast's round, not mid's (by rows/s alone).
    assert median_round(rounds, "default") is fast


def test_a_run_s_batches_are_kept_with_the_time_before_the_first() -> None:
    run = JobRun(DEFAULT_RUN, 300, 2.0, 1, "succeeded", [Batch(0.5, 100.0, 200, 200), Batch(0.7, 150.0, 100, 100)])

    found = batches_of(run)

    assert found["batches"] == [[200, 100.0], [100, 150.0]]
    assert found["before_first_s"] == pytest.approx(0.4) and found["in_batches_s"] == pytest.approx(0.25)


def test_every_target_is_reported_with_pass_or_miss_and_a_miss_is_not_dropped() -> None:
    results = {"headline": {"server": "stock", "transport": "TCP", "default": {"limit_ratio": {"median": 0.45}},
                            "sweep": {"cliff": 1.05}, "live": [{"lost_updates": 0}, {"lost_updates": 0}]},
               "tuned": {"server": "tuned", "transport": "Unix socket",
                         "default": {"limit_ratio": {"median": 0.55}}},
               "night": {"process_start_s": 1.0, "tables": [{"rows": 10, "eligible": 1, "limit_s": 1.0,
                                                             "job_s": 5.0}]},
               "cases": {"skip": {"limit_ratio": {"median": 0.59}}, "rules": {"limit_ratio": {"median": 0.2}}}}

    assert [t.as_dict()["result"] for t in targets(results)] == ["MISS", "PASS", "PASS", "MISS", "MISS", "PASS"]


def test_a_run_of_some_parts_reports_only_the_targets_it_measured() -> None:
    results = {"headline": {"server": "stock", "transport": "TCP", "sweep": {"cliff": 1.2}},
               "cases": {"skip": {"limit_ratio": {"median": 0.61}}}}

    assert [(t.name.split(":")[0], t.as_dict()["result"]) for t in targets(results)] == [
        ("sweep", "MISS"), ("skip mode, six related tables", "PASS")]


def test_skip_mode_is_the_one_case_with_a_target_the_others_are_reported() -> None:
    assert [t.bound for t in cases.targets({"skip": {"limit_ratio": {"median": 0.7}}, "rules": {}})] == [0.6]
    assert cases.targets({}) == []


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
