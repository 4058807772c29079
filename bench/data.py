"""Benchmark data: the demo's customers and six related tables, in two layouts.

* ``arrival``: ids rise with ``created_at`` plus a few hours of noise, as a real table grows
  (the demo seed as it is);
* ``uncorrelated``: the same rows with every age drawn again at random, so the batch walk in
  ``(created_at, id)`` order visits the heap in random order (the hard case).

240 days of history under the 60-day retention: 75% of the customers are past the cutoff. The
default policy (related mode ``skip``) then leaves those with related rows (about 18%) live.
"""

from __future__ import annotations

from archiver import demo, schema
from archiver.config import Policy
from archiver.db import Database
from archiver.identifiers import qualified, quote

LAYOUTS = ("arrival", "uncorrelated")
HISTORY_DAYS = 240


def seed(db: Database, policy: Policy, rows: int, layout: str) -> None:
    """Seed ``rows`` customers in ``layout``, migrate, and leave the statistics fresh."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    demo.seed(db, policy, rows, days=HISTORY_DAYS)
    if layout == "uncorrelated":
        live, age = qualified(policy.schema_name, policy.live_table), quote(policy.age_column)
        db.run(f"UPDATE {live} SET {age} = now() - random() * make_interval(days => :d)",
               d=HISTORY_DAYS)
        db.run(f"VACUUM FULL {live}")  # no dead versions left behind by the redraw
    schema.migrate(db, policy)
    db.run("VACUUM ANALYZE")
