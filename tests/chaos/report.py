"""The chaos suite's figures: attacks tried, runs, rows checked, rows lost, duplicates.

Tests record what they did into one ``ChaosReport``; the suite's conftest prints it at the end
of the pytest run and saves it to ``.data/chaos-report.json``. ``python -m tests.chaos.report``
prints the last saved table again.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPORT_FILE = Path(__file__).resolve().parents[2] / ".data" / "chaos-report.json"
HEADERS = ("attack", "runs", "rows checked", "lost", "duplicates", "changed", "notes")


@dataclass
class AttackFigures:
    attack: str
    runs: int = 0
    rows_checked: int = 0
    lost: int = 0
    duplicates: int = 0
    changed: int = 0
    notes: list[str] = field(default_factory=list)


class ChaosReport:
    def __init__(self) -> None:
        self.attacks: dict[str, AttackFigures] = {}

    def record(self, attack: str, *, runs: int = 0, rows_checked: int = 0, lost: int = 0, duplicates: int = 0,
               changed: int = 0, note: str | None = None) -> None:
        fig = self.attacks.setdefault(attack, AttackFigures(attack))
        fig.runs += runs
        fig.rows_checked += rows_checked
        fig.lost += lost
        fig.duplicates += duplicates
        fig.changed += changed
        if note and note not in fig.notes:
            fig.notes.append(note)

    def rows(self) -> list[tuple[str, ...]]:
        out = [(f.attack, str(f.runs), str(f.rows_checked), str(f.lost), str(f.duplicates), str(f.changed),
                "; ".join(f.notes)) for f in self.attacks.values()]
        total = [sum(getattr(f, k) for f in self.attacks.values())
                 for k in ("runs", "rows_checked", "lost", "duplicates", "changed")]
        out.append(("TOTAL", *(str(t) for t in total), f"{len(self.attacks)} attacks"))
        return out

    def table(self) -> str:
        return format_table(HEADERS, self.rows())

    def save(self, path: Path = REPORT_FILE) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([asdict(f) for f in self.attacks.values()], indent=2))

    @classmethod
    def load(cls, path: Path = REPORT_FILE) -> ChaosReport:
        report = cls()
        for item in json.loads(path.read_text()):
            report.attacks[item["attack"]] = AttackFigures(**item)
        return report


def format_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    numeric = {1, 2, 3, 4, 5}

    def line(cells: tuple[str, ...]) -> str:
        padded = zip(cells, widths, strict=True)
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(padded))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join(s.rstrip() for s in [line(headers), rule, *(line(r) for r in rows[:-1]), rule, line(rows[-1])])


def main() -> int:
    if not REPORT_FILE.exists():
        print("no chaos report yet: run `make chaos`", file=sys.stderr)
        return 1
    print(ChaosReport.load().table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
