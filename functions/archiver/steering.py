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
RECENT = 5  # batches whose median cost a row steers the next size (one slow batch does not halve it)
ESTIMATES = 16  # fixed-part estimates whose median is the fixed part


@dataclass
class Steering:
    """The adaptive batch size of one hop: toward ``target_ms`` per batch (``next_batch_size``),
    but not below the size where the batch's fixed cost would dominate.

    Without that floor, a fixed cost near the target (the Phase-2 rules plan ten anti-joins for
    every batch, ~7 ms) shrank batches to a single row, each still taking the fixed cost: the run
    crawled at a tenth of its speed. The fixed part is estimated from pairs of recent batches whose
    sizes differ enough (``ms = fixed + per_row * size``), never above either batch's own time.

    On a shared server a batch's time varies by +-30% and more from one batch to the next
    (docs/decisions/adaptive-steering.md). Steered by the last batch alone, one fast batch doubled
    the next and one stall halved it; estimated from the last pair alone, the fixed part took the
    noise for a fixed cost and stretched batches to 10,000 rows and 3.7 times the target. So the
    size follows the median cost a row of the last RECENT batches, and the fixed part is the median
    of the last ESTIMATES pair estimates.
    """

    target_ms: float
    fixed_ms: float = 0.0
    _recent: list[tuple[int, float]] = field(default_factory=list, init=False, repr=False)
    _estimates: list[float] = field(default_factory=list, init=False, repr=False)

    def next(self, size: int, ms: float) -> int:
        for size0, ms0 in self._recent:
            if max(size, size0) >= DISTINCT_SIZES * min(size, size0):
                per_row = (ms - ms0) / (size - size0)
                if per_row > 0:
                    self._estimates.append(min(max(0.0, ms - per_row * size), ms, ms0))
        del self._estimates[:-ESTIMATES]
        if self._estimates:
            self.fixed_ms = sorted(self._estimates)[len(self._estimates) // 2]
        self._recent.append((size, ms))
        del self._recent[:-RECENT]
        typical = sorted(m / s for s, m in self._recent)[len(self._recent) // 2] * size
        wanted = next_batch_size(size, typical, self.target_ms)
        if self.fixed_ms and typical > self.fixed_ms:
            floor = int(ROWS_PER_FIXED * self.fixed_ms * size / (typical - self.fixed_ms))
            stretched = int(size * MAX_STRETCH * self.target_ms / typical)
            wanted = max(wanted, min(floor, stretched, size * 2, MAX_BATCH_SIZE))
        return wanted
