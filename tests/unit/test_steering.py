"""The adaptive batch size: how the engine steers it from the batch times it measures (no
database: the batch times are modelled as a fixed part plus a part per row)."""

from __future__ import annotations

from archiver.config import MAX_BATCH_SIZE
from archiver.steering import Steering, next_batch_size


def test_next_batch_size_moves_at_most_by_half_or_double():
    assert next_batch_size(1000, 10, 25) == 2000
    assert next_batch_size(1000, 20, 25) == 1250
    assert next_batch_size(1000, 400, 25) == 500
    assert next_batch_size(MAX_BATCH_SIZE - 1000, 1, 25) == MAX_BATCH_SIZE
    assert next_batch_size(1, 500, 25) == 1


def steer(fixed_ms: float, per_row_ms: float, target_ms: float, batches: int = 200) -> list[int]:
    """The sizes the adaptive steering picks when every batch costs ``fixed + per_row * size``."""
    steering, size, sizes = Steering(target_ms), 1000, []
    for _ in range(batches):
        size = steering.next(size, fixed_ms + per_row_ms * size)
        sizes.append(size)
    return sizes


def test_adaptive_batches_settle_at_the_target_time_when_the_fixed_cost_is_small():
    sizes = steer(fixed_ms=2.0, per_row_ms=0.0063, target_ms=10)

    assert all(abs(2.0 + 0.0063 * s - 10) < 0.5 for s in sizes[-50:])


def test_adaptive_batches_do_not_shrink_until_the_fixed_cost_of_a_batch_dominates():
    # Phase-2 rules: ~7 ms a batch whatever its size. Steering toward 10 ms alone shrank the
    # batches to one row each, still 7 ms a batch (a tenth of the speed).
    sizes = steer(fixed_ms=7.0, per_row_ms=0.048, target_ms=10)

    assert min(sizes[-100:]) >= 3 * 7.0 / 0.048 * 0.9
    assert all(7.0 / (7.0 + 0.048 * s) <= 0.27 for s in sizes[-100:])


def test_adaptive_batches_stretch_to_three_targets_rather_than_one_row_when_any_batch_costs_more_than_it():
    sizes = steer(fixed_ms=12.0, per_row_ms=0.048, target_ms=10)

    assert min(sizes[-100:]) >= (3 * 10 - 12.0) / 0.048 * 0.9  # stretched to 3x the target, not to one row
