"""`make bench`: the archive job against the database's own limit, its flatness, and its effect on
live traffic, measured side by side in one run on one server. Prints a table of ratios and the
targets with PASS or MISS; writes results/latest.json and results/batch_latency.png.

Scenarios 1-5 (limit, job at two batch sizes, row by row, live traffic) run on the plain layouts
(no related tables, no foreign key to the customer); scenario 7 (related mode skip and move, the
Phase-2 rules) on the same customers with the six related tables, against the plain job.

ROWS=1000000 by default (ROWS=50000 is the quick smoke run). See bench/README.md.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

from archiver.config import Policy, Settings, load_policy, load_settings
from archiver.db import Database
from archiver.identifiers import qualified
from archiver.observability import logger

from . import cost, data, report
from .harness import Bench, say
from .live import LiveRun, run_live
from .report import Target
from .scenarios import DEFAULT_RUN, JobRun, Moved, batch_label, run_job, run_limit, run_row_by_row
from .server import Server, open_server

DEFAULT_ROWS = 1_000_000
BIG_BATCH = 5000
ROW_BY_ROW_SAMPLE = 5000
WORST_BATCH_MS = 100.0
QUICK_BELOW = 200_000  # rows: a smoke run, with a shorter traffic baseline


def related_moved(db: Database, policy: Policy) -> int:
    from archiver.related import related_tables
    from archiver.schema import related_archive_name

    return sum(int(db.scalar(f"SELECT count(*) FROM {qualified(r.schema, related_archive_name(policy, r.table))}"))
               for r in related_tables(db, policy))


def measure(bench: Bench, quick: bool, rate: int) -> dict[str, Any]:
    """Every scenario, each on a fresh clone, in an order that keeps each ratio's two sides adjacent.
    Scenarios 1-5 run on the plain layouts; 7 (related mode skip and move, the rules) on the data with
    the six related tables, each set against the plain job."""
    policy, settings, size = bench.policy, bench.settings, bench.policy.batch_size
    layouts: dict[str, dict[str, Any]] = {}
    for layout in data.LAYOUTS:
        limit = bench.scenario("limit", layout, partial(run_limit, policy=policy, settings=settings))
        runs = {n: bench.scenario(f"job_{n}", layout, partial(run_job, policy=policy, settings=settings, batch_size=n))
                for n in (DEFAULT_RUN, size, BIG_BATCH)}
        layouts[layout] = {"limit": limit, "jobs": runs}
    sample = min(ROW_BY_ROW_SAMPLE, bench.rows // 10)
    rbr = bench.scenario("row_by_row", "arrival",
                         partial(run_row_by_row, policy=policy, settings=settings, sample=sample))
    url = bench.server.url(bench.clone_name("live"))
    live = bench.scenario("live", "arrival", partial(run_live, url=url, policy=policy, settings=settings,
                                                     batch_size=DEFAULT_RUN, baseline_s=5.0 if quick else 20.0,
                                                     rate=rate))
    skip = bench.scenario("skip", data.RELATED, partial(run_job, policy=policy, settings=settings,
                                                        batch_size=DEFAULT_RUN))
    rules_policy = load_policy({"ARCHIVER_RULES": "all"})
    rules = bench.scenario("rules", data.RELATED,
                           partial(run_job, policy=rules_policy, settings=settings, batch_size=DEFAULT_RUN))
    move_policy = load_policy({}, related_mode="move")

    def move_mode(db: Database) -> tuple[JobRun, int]:
        return run_job(db, move_policy, settings, DEFAULT_RUN), related_moved(db, move_policy)

    move = bench.scenario("move", data.RELATED, move_mode)
    return {"layouts": layouts, "rbr": rbr, "live": live, "skip": skip, "rules": rules, "move": move}


def main() -> int:
    logger.setLevel("WARNING")  # the handler's per-hop lines would drown the table
    rows = int(os.environ.get("ROWS") or DEFAULT_ROWS)
    rate = int(os.environ.get("LIVE_RATE") or 200)
    policy, settings = load_policy({}), load_settings({})
    server = open_server(os.environ, policy.timezone)
    bench = Bench(server, policy, settings, rows)
    began, wall = datetime.now(UTC), time.perf_counter()
    say(f"bench: {rows:,} customers, nproc {os.cpu_count()}, PostgreSQL {server.settings()['server_version']}")
    bench.seed()
    try:
        m = measure(bench, quick=rows < QUICK_BELOW, rate=rate)
    finally:
        bench.cleanup()
    results = assemble(rows, policy, settings, server, m["layouts"], m["rbr"], m["live"], m["skip"], m["rules"],
                       m["move"])
    results["started_at"], results["duration_s"] = began.isoformat(), round(time.perf_counter() - wall)
    print_results(results)
    path = report.write_json(results)
    series = {f"{layout}, {n}": run for layout, d in m["layouts"].items() for n, run in d["jobs"].items()}
    series["arrival, live traffic"] = m["live"].job
    png = report.chart(series, WORST_BATCH_MS, report.RESULTS / "batch_latency.png")
    say(f"wrote {path} and {png} in {results['duration_s']} s")
    return 0


def targets(job: JobRun, fixed: JobRun, limit: Moved, rbr: Moved, live: LiveRun) -> list[Target]:
    """``job`` is the default run (the one users get), ``fixed`` the run at a fixed 1000 rows."""
    live_sum = live.summary()
    return [
        Target(f"job, {batch_label(job.batch_size)} / single-statement limit",
               round(job.rows_per_s / limit.rows_per_s, 3), 0.5, at_most=False),
        Target("job / seeds' row-by-row rate", round(job.rows_per_s / rbr.rows_per_s, 1), 50, at_most=False),
        Target("flatness (last 10% of batches / first 10%)", round(job.flatness(), 3), 1.3, at_most=True),
        Target(f"worst batch at {fixed.batch_size} rows, ms", round(fixed.worst_ms, 1), WORST_BATCH_MS,
               at_most=True),
        Target("live p99 during the job / without it", live_sum["p99_ratio"], 2.0, at_most=True),
        Target("lost updates", live.lost_updates, 0, at_most=True),
    ]


def assemble(rows: int, policy: Policy, settings: Settings, server: Server, layouts: dict[str, dict[str, Any]],
             rbr: Moved, live: LiveRun, skip: JobRun, rules: JobRun, move: tuple[JobRun, int]) -> dict[str, Any]:
    size = policy.batch_size
    main_job, main_limit = layouts["arrival"]["jobs"][DEFAULT_RUN], layouts["arrival"]["limit"]
    fixed_job = layouts["arrival"]["jobs"][size]
    checks = targets(main_job, fixed_job, main_limit, rbr, live)
    move_job, move_related = move
    return {
        "rows": rows,
        "job_rows_per_s": round(main_job.rows_per_s),
        "limit_rows_per_s": round(main_limit.rows_per_s),
        "limit_ratio": round(main_job.rows_per_s / main_limit.rows_per_s, 3),
        "row_by_row_rows_per_s": round(rbr.rows_per_s),
        "row_by_row_ratio": round(main_job.rows_per_s / rbr.rows_per_s, 1),
        "flatness": round(main_job.flatness(), 3),
        "worst_batch_ms": round(fixed_job.worst_ms, 1),
        "default_run": {"start_batch_size": size, "target_batch_ms": settings.target_batch_ms,
                        "mean_batch_ms": round(main_job.mean_ms, 1),
                        "mean_rows_per_batch": round(main_job.archived / max(len(main_job.working), 1))},
        "live_p99_ratio": live.summary()["p99_ratio"],
        "lost_updates": live.lost_updates,
        "batch_size": size,
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "command": f"ROWS={rows} {os.path.relpath(sys.executable)} -m bench.run"},
        "server": server.settings(),
        "layouts": {layout: {"limit": {"rows": d["limit"].rows, "seconds": round(d["limit"].seconds, 2),
                                       "rows_per_s": round(d["limit"].rows_per_s)},
                             "jobs": {str(n): {**run.summary(),
                                               "limit_ratio": round(run.rows_per_s / d["limit"].rows_per_s, 3)}
                                      for n, run in d["jobs"].items()}}
                    for layout, d in layouts.items()},
        "row_by_row": {"rows": rbr.rows, "seconds": round(rbr.seconds, 2), "rows_per_s": round(rbr.rows_per_s)},
        "live": live.summary(),
        "eligibility": {
            "plain": main_job.summary(),
            "skip": {**skip.summary(), "vs_plain": round(skip.rows_per_s / main_job.rows_per_s, 3)},
            "rules": {**rules.summary(), "vs_plain": round(rules.rows_per_s / main_job.rows_per_s, 3)},
            "move": {**move_job.summary(), "related_rows_moved": move_related,
                     "vs_plain": round(move_job.rows_per_s / main_job.rows_per_s, 3)},
        },
        "cost": cost.model(main_job, settings),
        "targets": [t.as_dict() for t in checks],
    }


def print_results(r: dict[str, Any]) -> None:
    size = r["batch_size"]
    rows: list[list[object]] = []
    for layout, d in r["layouts"].items():
        lim = d["limit"]
        rows.append([layout, "single statement (limit)", lim["rows"], lim["seconds"], lim["rows_per_s"], 1.0,
                     "", "", "", ""])
        for n, j in d["jobs"].items():
            rows.append([layout, f"job, {batch_label(int(n))}", j["archived"], j["seconds"], j["rows_per_s"],
                         j["limit_ratio"], 1.0 if layout == "arrival" and int(n) == DEFAULT_RUN else "",
                         j["mean_batch_ms"], j["worst_batch_ms"], j["flatness"]])
    rb = r["row_by_row"]
    rows.append(["arrival", "row by row (seed 001)", rb["rows"], rb["seconds"], rb["rows_per_s"],
                 round(rb["rows_per_s"] / r["limit_rows_per_s"], 3), "", "", "", ""])
    el = r["eligibility"]
    for label, key in (("job, related mode skip", "skip"), ("job, Phase-2 rules on", "rules"),
                       ("job, related mode move", "move")):
        j = el[key]
        rows.append([data.RELATED, f"{label}, default", j["archived"], j["seconds"], j["rows_per_s"], "",
                     j["vs_plain"], j["mean_batch_ms"], j["worst_batch_ms"], j["flatness"]])
    print()
    print(f"{r['rows']:,} customers, nproc {r['machine']['nproc']}; {r['machine']['command']}")
    print("layouts arrival and uncorrelated are plain (no related tables); related = arrival with the six related"
          " tables.\nvs limit: against the single statement on the same data; vs plain job: customers/s against the"
          f" arrival job as users run it (default: adaptive from batch {size}).")
    print(report.table(["data", "scenario", "rows", "seconds", "rows/s", "vs limit", "vs plain job", "mean ms",
                        "worst ms", "flatness"], rows))
    lv = r["live"]
    print(f"\nlive traffic, {lv['rate_ops_per_s']} ops/s: p50 {lv['p50_without_ms']} -> {lv['p50_during_ms']} ms, "
          f"p99 {lv['p99_without_ms']} -> {lv['p99_during_ms']} ms (x{lv['p99_ratio']}); "
          f"{lv['updates_applied']} updates applied, {lv['lost_updates']} lost, {lv['errors']} errors; "
          f"rows {lv['rows_before']} -> {lv['rows_after']}")
    print(f"on the related data: skip mode x{el['skip']['vs_plain']} of plain; rules on: "
          f"x{el['rules']['vs_plain']} of plain; move mode: x{el['move']['vs_plain']} of plain "
          f"(customers/s), {el['move']['related_rows_moved']} related rows moved with them")
    est = r["cost"]["estimates"]
    a = r["cost"]["assumptions"]
    print(f"\nAWS Lambda model: {a['memory_mb']} MB, hop budget {a['hop_seconds']:g} s less {a['reserve_ms']} ms "
          f"reserve and twice the worst batch; {batch_label(a['batch_size'])} at {a['mean_batch_ms']} ms measured "
          f"+ {a['round_trips_per_batch']} x {a['rtt_ms']} ms network; {a['cold_start_s']} s cold start per hop; "
          f"${a['usd_per_gb_s']}/GB-s, ${a['usd_per_request'] * 1e6:.2f}/M requests")
    print(report.table(["rows", "batches", "batches/hop", "invocations", "seconds", "GB-s", "USD"],
                       [[e["rows"], e["batches"], e["batches_per_hop"], e["invocations"], e["seconds"],
                         e["gb_seconds"], e["usd"]] for e in est]))
    print("\ntargets (arrival layout, default batch size)")
    for t in r["targets"]:
        print(f"{t['result']}  {t['name']}: {t['value']:g} (target {t['target']})")
    unc = r["layouts"].get("uncorrelated", {}).get("jobs", {}).get(str(size))
    if unc:
        print(f"      uncorrelated layout beside it: vs limit {unc['limit_ratio']}, flatness {unc['flatness']}, "
              f"worst batch {unc['worst_batch_ms']} ms")


if __name__ == "__main__":
    sys.exit(main())
