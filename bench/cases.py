"""Issue 20, point 6: the default run against its own single-statement limit on other data and
policies. Each limit is the one statement that moves exactly that case's eligible rows (the same
eligibility SQL, the same foreign keys firing), on a clone of the same template, adjacent in the
round and in alternating order:

* ``skip``: related mode ``skip`` (the default) on the customers with the seed's six related
  tables, each with a foreign key to the customer (``local/demo.py``, data.RELATED): a customer
  with a related row stays live;
* ``rules``: the same data and mode with the four Phase-2 rules on (``ARCHIVER_RULES=all``);
* ``uncorrelated``: the plain customers with every age drawn again at random, so the batch walk in
  age order visits the heap in random order (bench/data.py).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from archiver.config import load_policy

from . import data
from .harness import Bench
from .report import Target
from .scenarios import DEFAULT_RUN, run_job, run_limit
from .sweep import ratio, rotated, spread

CASES: dict[str, tuple[str, dict[str, str]]] = {
    "skip": (data.RELATED, {}),
    "rules": (data.RELATED, {"ARCHIVER_RULES": "all"}),
    "uncorrelated": ("uncorrelated", {}),
}
TEMPLATES = ("uncorrelated", data.RELATED)
SKIP_TARGET = 0.6  # skip mode with the related tables, of its own limit (issue 20)


def run_cases(bench: Bench, rounds: int) -> dict[str, Any]:
    """Each case's limit and default run, per round; the cases' order rotated, the pair's alternated."""
    found: dict[str, list[tuple[Any, Any]]] = {name: [] for name in CASES}
    for r in range(rounds):
        for name in rotated(list(CASES), r, rounds):
            layout, env = CASES[name]
            policy = load_policy(env)
            limit = partial(run_limit, policy=policy, settings=bench.settings)
            job = partial(run_job, policy=policy, settings=bench.settings, batch_size=DEFAULT_RUN)
            if r % 2 == 0:
                pair = (bench.scenario(f"{name}_limit", layout, limit), bench.scenario(f"{name}_job", layout, job))
            else:
                j = bench.scenario(f"{name}_job", layout, job)
                pair = (bench.scenario(f"{name}_limit", layout, limit), j)
            found[name].append(pair)
    return {name: summarise(pairs) for name, pairs in found.items()}


def summarise(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    return {"eligible": pairs[0][0].rows,
            "archived": [job.archived for _, job in pairs],
            "limit_rows_per_s": spread([limit.rows_per_s for limit, _ in pairs]),
            "limit_ratio": spread([ratio(job.rows_per_s, limit) for limit, job in pairs]),
            "mean_rows_per_batch": spread([job.archived / max(len(job.working), 1) for _, job in pairs]),
            "mean_batch_ms": spread([job.mean_ms for _, job in pairs])}


def targets(cases: dict[str, Any]) -> list[Target]:
    """Skip mode is a target; the rules and the uncorrelated layout are reported (print_cases)."""
    if "skip" not in cases:
        return []
    return [Target("skip mode, six related tables: default run / its own limit",
                   cases["skip"]["limit_ratio"]["median"], SKIP_TARGET, at_most=False)]
