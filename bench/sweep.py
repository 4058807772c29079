"""The batch-size sweep: the job end to end at each fixed size (SIZES) and adaptive at each target
batch time (TARGETS), every one in every round, in an order rotated each round, beside a limit of
the same round; each figure is the median over rounds, with the spread.

One round a size, sizes in ascending order, let the machine's hour draw the curve: a 1.19 "cliff"
at 5000 rows in one run was gone in the next (docs/decisions/sweep-rounds.md).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from functools import partial
from typing import Any, TypeVar

from archiver.config import Settings

from .harness import Bench
from .scenarios import DEFAULT_RUN, JobRun, Moved, run_job, run_limit

T = TypeVar("T")
NO_CLIFF = 1.10  # no size slower per row than a smaller one by more than this


def rotated(items: Sequence[T], r: int, rounds: int) -> list[T]:
    """``items`` starting at a different place each round, spread evenly over ``rounds``: no item
    always runs first after the limit, nor always in the same part of the round."""
    k = (r * len(items)) // max(rounds, 1) % max(len(items), 1)
    return [*items[k:], *items[:k]]


def ratio(rows_per_s: float, limit: Moved) -> float:
    return round(rows_per_s / limit.rows_per_s, 3) if limit.rows_per_s else 0.0


def spread(values: Sequence[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 3), "rounds": [round(v, 3) for v in values]}


def entry(job: JobRun, limit: Moved) -> dict[str, Any]:
    return {**job.summary(), "limit_ratio": ratio(job.rows_per_s, limit),
            "us_per_row": round(job.seconds / max(job.archived, 1) * 1e6, 2),
            "mean_rows_per_batch": round(job.archived / max(len(job.working), 1))}


def combine(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration over its rounds: the median round's figures (by its ratio to the limit),
    the ratio's and the time per row's spread beside them."""
    ordered = sorted(entries, key=lambda e: e["limit_ratio"])
    return {**ordered[(len(ordered) - 1) // 2], "limit_ratio": spread([e["limit_ratio"] for e in entries]),
            "us_per_row": spread([e["us_per_row"] for e in entries])}


def cliff(ratios: dict[int, float]) -> float:
    """The worst time per row of a size over that of any smaller size, from each size's rows/s over the
    limit of its round (time per row is its inverse): <= NO_CLIFF, no cliff."""
    sizes = sorted(ratios)
    return round(max((ratios[a] / ratios[b] for i, a in enumerate(sizes) for b in sizes[i + 1:] if ratios[b]),
                     default=1.0), 3)


def sweep(bench: Bench, sizes: list[int], targets_ms: list[int], rounds: int) -> dict[str, Any]:
    """Every size and target in every round, rotated; the cliff from the median ratios, and per round."""
    policy, settings = bench.policy, bench.settings
    configs = [("size", n) for n in sizes] + [("target", t) for t in targets_ms]
    found: dict[tuple[str, int], list[dict[str, Any]]] = {c: [] for c in configs}
    for r in range(rounds):
        limit = bench.scenario("limit", "arrival", partial(run_limit, policy=policy, settings=settings))
        for kind, value in rotated(configs, r, rounds):
            s: Settings = settings.model_copy(update={"target_batch_ms": value}) if kind == "target" else settings
            job = bench.scenario(f"{kind}_{value}", "arrival",
                                 partial(run_job, policy=policy, settings=s,
                                         batch_size=value if kind == "size" else DEFAULT_RUN))
            found[(kind, value)].append(entry(job, limit))
    by_size = {n: combine(found[("size", n)]) for n in sizes}
    return {"rounds": rounds, "sizes": by_size,
            "targets": {t: combine(found[("target", t)]) for t in targets_ms},
            "cliff": cliff({n: s["limit_ratio"]["median"] for n, s in by_size.items()}),
            "cliff_by_round": [cliff({n: found[("size", n)][r]["limit_ratio"] for n in sizes})
                               for r in range(rounds)]}
