"""Benchmark data: the demo's customers in two layouts, plain, and once with the six related tables.

* ``arrival``: ids rise with ``created_at`` plus a few hours of noise, as a real table grows
  (the demo seed as it is);
* ``uncorrelated``: the same rows with every age drawn again at random, so the batch walk in
  ``(created_at, id)`` order visits the heap in random order (the hard case);
* ``related``: the arrival layout with the demo's six related tables and their rows, each with a
  foreign key to the customer (scenario 7: related mode ``skip`` and ``move``, the Phase-2 rules).

``arrival`` and ``uncorrelated`` are plain: the related tables are dropped, so no foreign key
points at the customer table and no trigger fires per deleted customer, as in the issue's targets.

240 days of history under the 60-day retention: 75% of the customers are past the cutoff. On the
``related`` data the default policy (related mode ``skip``) leaves those with related rows (about
18%) live.
"""

from __future__ import annotations

from archiver import migration
from archiver.config import Policy
from archiver.db import Database
from archiver.identifiers import qualified, quote
from local import demo

LAYOUTS = ("arrival", "uncorrelated")
RELATED = "related"
TEMPLATES = (*LAYOUTS, RELATED)
HISTORY_DAYS = 240


def seed(db: Database, policy: Policy, rows: int, name: str) -> None:
    """Seed ``rows`` customers as ``name`` (one of TEMPLATES), migrate, and leave the statistics fresh."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown data {name!r}; known: {', '.join(TEMPLATES)}")
    related = name == RELATED
    demo.seed(db, policy, rows, days=HISTORY_DAYS, related=related)
    if not related:  # empty, but their foreign keys would still fire a trigger per deleted customer
        for table in demo.RELATED_DDL:
            db.run(f"DROP TABLE {qualified(policy.schema_name, table)}")
    if name == "uncorrelated":
        live, age = qualified(policy.schema_name, policy.live_table), quote(policy.age_column)
        db.run(f"UPDATE {live} SET {age} = now() - random() * make_interval(days => :d)",
               d=HISTORY_DAYS)
        db.run(f"VACUUM FULL {live}")  # no dead versions left behind by the redraw
    migration.migrate(db, policy)
    db.run("VACUUM ANALYZE")
