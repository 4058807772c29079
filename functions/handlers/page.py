"""The status page served at ``GET /``: one HTML document with its style and script inlined.

The files under ``web/`` are read once per container. The recent runs are rendered into the
document here, so the history reads without JavaScript; the script then keeps it current through
the documented API. Every value is escaped; only counts, ids, states, timings and the run log's
own messages appear (never a row of the live table).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from html import escape
from pathlib import Path
from typing import Any

from archiver.config import MAX_BATCH_SIZE
from archiver.states import ACTIVE_STATES

WEB = Path(__file__).with_name("web")
PAGE_RUNS = 20  # the history's length, as the script asks GET /runs for it
CONTENT_TYPE = "text/html; charset=utf-8"


@dataclass(frozen=True)
class Assets:
    template: str
    headers: dict[str, str]


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@cache
def assets() -> Assets:
    """The template with its style, script and batch-size bound inlined, and headers allowing those two alone."""
    style = (WEB / "app.css").read_text(encoding="utf-8")
    script = (WEB / "app.js").read_text(encoding="utf-8")
    template = (WEB / "index.html").read_text(encoding="utf-8")
    template = (template.replace("%%STYLE%%", style).replace("%%SCRIPT%%", script)
                .replace("%%MAX_BATCH_SIZE%%", str(MAX_BATCH_SIZE))
                .replace("%%MAX_BATCH_SIZE_TEXT%%", f"{MAX_BATCH_SIZE:,}"))
    # The page talks only to the API it came from; no other origin can frame it or be reached.
    csp = ("default-src 'none'; "
           f"script-src {_sha256(script)}; style-src {_sha256(style)}; "
           "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    headers = {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Frame-Options": "DENY"}
    return Assets(template=template, headers=headers)


def duration(ms: int | None) -> str:
    """1.2 s, 3 min 4 s, 2 h 5 min (the script's ``duration`` says the same)."""
    if ms is None:
        return "–"
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _when(iso: str | None) -> str:
    return "–" if not iso else iso[:19].replace("T", " ")


def kind_label(run: Mapping[str, Any]) -> str:
    return f"{run.get('kind', '')}{' · dry run' if run.get('dry_run') else ''}"


def history_row(run: Mapping[str, Any]) -> str:
    """One ``<tr>`` of the history, every value escaped."""
    job = str(run.get("job_id", ""))
    state = str(run.get("state", ""))
    error = run.get("error")
    text = error or run.get("message") or ""
    cells = [
        f'<td class="when" title="{escape(str(run.get("run_date") or ""))}">{escape(_when(run.get("run_date")))}</td>',
        f'<td class="job" title="{escape(job)}">{escape(job[:8])}</td>',
        f"<td>{escape(kind_label(run))}</td>",
        f'<td><span class="state state-{escape(state)}">{escape(state)}</span></td>',
        f'<td class="num">{escape(_count(run.get("eligible")))}</td>',
        f'<td class="num">{escape(_count(run.get("archived")))}</td>',
        f'<td class="num">{escape(_count(run.get("failed")))}</td>',
        f'<td class="num">{escape(duration(run.get("duration_ms")))}</td>',
        f'<td class="text{" error" if error else ""}">{escape(str(text))}</td>',
    ]
    return f'<tr data-job="{escape(job)}">' + "".join(cells) + "</tr>"


def render(table: str, runs: Iterable[Mapping[str, Any]] | None, note: str | None = None) -> str:
    """The page for ``table``, with ``runs`` (newest first) in its history; ``note`` when they could not be read."""
    runs = list(runs or [])
    if runs:
        rows = "\n".join(history_row(r) for r in runs)
    else:
        rows = f'<tr><td colspan="9">{escape(note or "No runs yet.")}</td></tr>'
    active = next((r for r in runs if r.get("state") in ACTIVE_STATES), None)
    current = (f"Run {escape(str(active['job_id'])[:8])} is {escape(str(active['state']))}."
               if active else "No run is active.")
    return (assets().template
            .replace("%%TABLE%%", escape(table))
            .replace("%%CURRENT%%", current)
            .replace("%%NOSCRIPT_NOTE%%", "The controls and live progress need JavaScript; the history below does not.")
            .replace("%%HISTORY%%", rows))
