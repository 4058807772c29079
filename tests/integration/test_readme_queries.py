"""The monitoring queries in the README run, as written, against the run log."""

from __future__ import annotations

import re

from archiver.engine import Archiver
from archiver.restore import purge
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


def test_the_daily_check_counts_only_archive_runs(db, policy, settings):
    setup(db, policy, customers=200)
    archiver = Archiver(db, policy, settings)
    job = archiver.start()
    archiver.run_hop(job.id, owner="w", hop=1)
    purge(db, policy, 730, dry_run=True)  # a later run of another kind, in the same log
    (daily,) = [q for q in readme_queries() if q.startswith("-- Daily check")]
    rows = db.run(daily)
    assert len(rows) == 1 and rows[0][3] == "success"
    assert int(db.scalar("SELECT count(*) FROM nic_cc_archive_log")) == 2
