"""Targets with PASS or MISS, the printed table, results/latest.json and the batch-latency chart."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .scenarios import JobRun

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Target:
    name: str
    value: float
    bound: float
    at_most: bool  # True: value <= bound passes; False: value >= bound passes

    @property
    def passed(self) -> bool:
        return self.value <= self.bound if self.at_most else self.value >= self.bound

    def as_dict(self) -> dict[str, Any]:
        op = "<=" if self.at_most else ">="
        return {"name": self.name, "value": self.value, "target": f"{op} {self.bound:g}",
                "result": "PASS" if self.passed else "MISS"}


def percentile(values: Sequence[float], q: int) -> float:
    """The q-th percentile (1..99) of ``values``, interpolated between the closest two; 0 for fewer than two."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else 0.0


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Text left, numbers right."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    numeric = [all(isinstance(row[i], int | float) or row[i] == "" for row in rows) for i in range(len(header))]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric, strict=True))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}" if abs(value) >= 0.1 or value == 0 else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_json(results: dict[str, Any], name: str = "latest.json") -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def chart(series: dict[str, JobRun], worst_target_ms: float, path: Path) -> Path:
    """Batch latency over the run, one line per run, batch size 1000 on top and 5000 below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({run.batch_size for run in series.values()})
    fig, axes = plt.subplots(len(sizes), 1, figsize=(11, 3.6 * len(sizes)), squeeze=False)
    for ax, size in zip(axes[:, 0], sizes, strict=True):
        for label, run in series.items():
            if run.batch_size != size:
                continue
            times = [b.ms for b in run.working]
            ax.plot(range(1, len(times) + 1), times, linewidth=0.8, label=f"{label} (worst {max(times):.0f} ms)")
        if size == 1000:
            ax.axhline(worst_target_ms, color="red", linestyle="--", linewidth=1,
                       label=f"worst-batch target {worst_target_ms:.0f} ms")
        ax.set_title("batch time over the run, " + (f"{size} rows per batch" if size else
                                                     "default run (batch size adapted to the target time)"))
        ax.set_xlabel("batch")
        ax.set_ylabel("ms")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
