"""The batch size of a run and the hop's time budget: how the size steers toward a target time per
batch, and when a hop stops to hand over to the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import MAX_BATCH_SIZE, Settings


def kept_back_ms(settings: Settings, slowest_ms: float) -> float:
    """What a hop keeps back from its time budget: twice its slowest batch so far, plus the reserve.
    Below it the hop hands over (``hands_over``); a pause between batches may not eat into it."""
    return 2 * slowest_ms + settings.reserve_ms


def hands_over(settings: Settings, remaining_ms: float, slowest_ms: float, batches: int) -> bool:
    """Whether a hop with ``batches`` done so far stops here and hands over to the next. It keeps
    ``kept_back_ms`` back, but moves at least one batch when one fits (the slowest plus the reserve):
    after one slow batch, hops that handed over empty-handed would follow each other up to max_hops."""
    if batches == 0 and remaining_ms >= slowest_ms + settings.reserve_ms:
        return False
    return remaining_ms < kept_back_ms(settings, slowest_ms)


def next_batch_size(size: int, ms: float, target_ms: float) -> int:
    """Steer the batch size toward ``target_ms`` per batch: at most doubling or halving at a time,
    so one slow batch (a checkpoint, a busy neighbour) cannot swing it far."""
    wanted = int(size * target_ms / max(ms, 0.1))
    return max(1, min(MAX_BATCH_SIZE, size * 2, max(size // 2, wanted)))


# A batch costs a fixed part (round trips, planning, the commit) plus a part per row. Steering
# toward the target never shrinks a batch so far that the fixed part is more than a quarter of it.
ROWS_PER_FIXED = 3.0
MAX_STRETCH = 3.0  # ... nor stretches a batch past this many times the target for it
DISTINCT_SIZES = 1.5  # two batches this far apart in size tell the fixed part from the rows' part


@dataclass
class Steering:
    """The adaptive batch size of one hop: toward ``target_ms`` per batch (``next_batch_size``),
    but not below the size where the batch's fixed cost would dominate.

    Without that floor, a fixed cost near the target (the Phase-2 rules plan ten anti-joins for
    every batch, ~7 ms) shrank batches to a single row, each still taking the fixed cost: the run
    crawled at a tenth of its speed. The fixed part is estimated from consecutive batches whose
    sizes differ enough (``ms = fixed + per_row * size``), never above either batch's own time;
    a disturbed batch skews one estimate, the average with the next halves the error. Costs are
    not quite linear (larger batches cost less a row), so the estimate runs high: the floor never
    stretches a batch past MAX_STRETCH times the target.
    """

    target_ms: float
    fixed_ms: float = 0.0
    _last: tuple[int, float] | None = field(default=None, init=False, repr=False)

    def next(self, size: int, ms: float) -> int:
        if self._last is not None:
            size0, ms0 = self._last
            if max(size, size0) >= DISTINCT_SIZES * min(size, size0):
                per_row = (ms - ms0) / (size - size0)
                if per_row > 0:
                    estimate = min(max(0.0, ms - per_row * size), ms, ms0)
                    self.fixed_ms = estimate if not self.fixed_ms else (self.fixed_ms + estimate) / 2
        self._last = (size, ms)
        wanted = next_batch_size(size, ms, self.target_ms)
        if self.fixed_ms and ms > self.fixed_ms:
            floor = int(ROWS_PER_FIXED * self.fixed_ms * size / (ms - self.fixed_ms))
            stretched = int(size * MAX_STRETCH * self.target_ms / ms)
            wanted = max(wanted, min(floor, stretched, size * 2, MAX_BATCH_SIZE))
        return wanted
