"""`python -m bench.partitions`: whole-partition moves against the single-statement row limit, on the
demo's customers (ROWS, default 200,000; 240 days of history) in a table range-partitioned by month on
``created_at`` (plus a default partition), on the stock server over TCP (DATABASE_URL: that server).

Two templates of the same rows: the archive partitioned like the live table (what ``migrate`` creates
for it: months wholly past the cutoff are detached and attached to the archive, no row copied) and a
plain archive (an archive created before that: the months are copied and truncated). Each round, on
fresh clones, adjacent and in rotated order: the limit (every eligible row in one ``DELETE … RETURNING``
into ``INSERT``, one transaction) and the default run on each template (start to finish through the
handler: the wholly old months move whole, the month straddling the cutoff and the default partition
by row batches). Reported: the whole moves' rows/s (their transactions' time) and the whole run's
rows/s, each over the limit's, median and min-max over ROUNDS (default 3).
Writes results/partitions.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from functools import partial
from itertools import pairwise
from typing import Any

from archiver import migration
from archiver.config import Policy, load_policy, load_settings
from archiver.db import Database
from archiver.identifiers import qualified, quote
from archiver.jobs import JobStore
from local import demo

from . import data
from .harness import Bench, env_int, say
from .report import RESULTS, table
from .scenarios import DEFAULT_RUN, run_job, run_limit
from .server import Server, open_server, open_stock_server

LAYOUT, PLAIN = "monthly", "monthly_plain"  # the archive partitioned like the live table, or a plain table


def seed_monthly(db: Database, policy: Policy, rows: int, plain_archive: bool = False) -> int:
    """The demo's customers (arrival layout, no related tables) moved into a table partitioned by month
    on the age column, with a default partition; migrated (with ``plain_archive``, the archive created
    first as a plain table, as before archives were partitioned), analysed. Returns the number of months."""
    demo.seed(db, policy, rows, days=data.HISTORY_DAYS, related=False)
    for related in demo.RELATED_DDL:
        db.run(f"DROP TABLE {qualified(policy.schema_name, related)}")
    live, age = qualified(policy.schema_name, policy.live_table), quote(policy.age_column)
    source = qualified(policy.schema_name, f"{policy.live_table}_unpartitioned")
    db.run(f"ALTER TABLE {live} RENAME TO {quote(policy.live_table + '_unpartitioned')}")
    db.run(f"CREATE TABLE {live} (LIKE {source} INCLUDING DEFAULTS, PRIMARY KEY (id, {age}))"
           f" PARTITION BY RANGE ({age})")
    starts = [r[0] for r in db.run(
        f"SELECT CAST(m AS date) FROM generate_series(date_trunc('month', (SELECT min({age}) FROM {source})),"
        f" date_trunc('month', now()) + interval '1 month', interval '1 month') m")]
    for m, end in pairwise(starts):
        db.run(f"CREATE TABLE {quote(f'{policy.live_table}_{m:%Y%m}')} PARTITION OF {live}"
               f" FOR VALUES FROM ('{m}') TO ('{end}')")
    db.run(f"CREATE TABLE {quote(policy.live_table + '_default')} PARTITION OF {live} DEFAULT")
    db.run(f"INSERT INTO {live} SELECT * FROM {source}")
    db.run(f"DROP TABLE {source} CASCADE")  # and the id sequence's default with it: nothing inserts here
    if plain_archive:
        migration.sync_archive_table(db, policy.schema_name, policy.live_table, policy.archive_table,
                                     migration.ARCHIVE_META, migration.MigrationReport())
    migration.migrate(db, policy)
    db.run("VACUUM ANALYZE")
    return len(starts) - 1


def run_whole(db: Database, policy: Policy, settings: Any) -> dict[str, Any]:
    """The default run, start to finish; the whole moves are its first batches (partitions.py)."""
    job = run_job(db, policy, settings, DEFAULT_RUN)
    moved = JobStore(db, policy).get(job.job_id).options.get("whole_partitions", [])
    whole = job.batches[:len(moved)]
    rows, seconds = sum(b.moved for b in whole), sum(b.ms for b in whole) / 1000
    return {"run_rows": job.archived, "run_s": job.seconds, "partitions": len(moved), "whole_rows": rows,
            "whole_s": seconds, "batches": len(job.working) - len(moved),
            "how": sorted({str(m.get("how")) for m in moved})}


def main() -> int:
    rows, rounds = env_int("ROWS", 200_000), env_int("ROUNDS", 3)
    policy, settings = load_policy({}), load_settings({})
    server: Server = open_server(os.environ, policy.timezone) if os.environ.get("DATABASE_URL") else \
        open_stock_server(policy.timezone)
    bench = Bench(server, policy, settings, rows, templates=(LAYOUT, PLAIN))
    for layout in (LAYOUT, PLAIN):
        template = server.create(bench.template(layout))
        try:
            months = seed_monthly(template, policy, rows, plain_archive=layout == PLAIN)
        finally:
            template.close()
    say(f"seeded {rows:,} customers in {months} monthly partitions and a default one, twice ({server.name})")
    limit = partial(run_limit, policy=policy, settings=settings)
    whole = partial(run_whole, policy=policy, settings=settings)
    found = []
    try:
        for r in range(rounds):
            steps = [("limit", LAYOUT, limit), ("attached", LAYOUT, whole), ("copied", PLAIN, whole)]
            steps = steps[r % 3:] + steps[:r % 3]
            got = {name: bench.scenario(name, layout, fn) for name, layout, fn in steps}
            lim = got["limit"]
            found.append({"limit_rows": lim.rows, "limit_rows_per_s": lim.rows_per_s,
                          **{f"{way}_{k}": v for way in ("attached", "copied") for k, v in got[way].items()},
                          **{f"{way}_whole_ratio": got[way]["whole_rows"] / got[way]["whole_s"] / lim.rows_per_s
                             for way in ("attached", "copied")},
                          **{f"{way}_run_ratio": got[way]["run_rows"] / got[way]["run_s"] / lim.rows_per_s
                             for way in ("attached", "copied")}})
    finally:
        bench.cleanup()

    def cell(key: str) -> str:
        values = [f[key] for f in found]
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    med = found[sorted(range(rounds), key=lambda i: found[i]["attached_whole_ratio"])[rounds // 2]]
    print(f"whole partitions vs the single-statement limit, {server.name} server over {server.transport},"
          f" {rows:,} customers, {months} months, {rounds} rounds: median (min-max)")
    print(table(["figure", "attached (partitioned archive)", "copied (plain archive)"], [
        ["single statement, rows/s (median round)", round(med["limit_rows_per_s"]), ""],
        ["whole moves, rows/s (median round)", *(round(med[f"{w}_whole_rows"] / med[f"{w}_whole_s"])
                                                 for w in ("attached", "copied"))],
        ["whole moves / limit", cell("attached_whole_ratio"), cell("copied_whole_ratio")],
        ["default run (whole + batches) / limit", cell("attached_run_ratio"), cell("copied_run_ratio")],
        ["partitions moved whole / their rows", *(f"{med[f'{w}_partitions']} / {med[f'{w}_whole_rows']:,}"
                                                  for w in ("attached", "copied"))],
        ["rows by batches / batches", *(f"{med[f'{w}_run_rows'] - med[f'{w}_whole_rows']:,} / {med[f'{w}_batches']}"
                                        for w in ("attached", "copied"))],
        ["how the partitions moved", *(",".join(med[f"{w}_how"]) for w in ("attached", "copied"))],
    ]))
    out = {"rows": rows, "months": months, "server": server.name, "transport": server.transport,
           "settings": server.settings(), "rounds": found}
    (RESULTS / "partitions.json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    return 0

if __name__ == "__main__":
    sys.exit(main())
