"""The monitoring queries in the README run, as written, against the run log."""

from __future__ import annotations

import re

from archiver.engine import Archiver
from tests.conftest import ROOT
from tests.helpers import setup


def readme_queries() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Monitoring queries", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    return [q.strip() for block in blocks for q in block.split(";") if q.strip()]


def test_every_monitoring_query_in_the_readme_runs(db, policy, settings):
    setup(db, policy, customers=500)
    archiver = Archiver(db, policy, settings)
    job = archiver.start()
    archiver.run_hop(job.id, owner="w", hop=1)
    queries = readme_queries()
    assert len(queries) >= 5
    for q in queries:
        db.run(q)
    last = db.run(queries[0])
    assert last[0][3] == "success"
