"""`make bench`: the archive job against the database's own limit, its flatness, and its effect on
live traffic, measured side by side in one run on one server. Prints a table of ratios and the
targets with PASS or MISS; writes results/latest.json and results/batch_latency.png.

Scenarios 1-5 (limit, job at two batch sizes, row by row, live traffic) run on the plain layouts
(no related tables, no foreign key to the customer); scenario 7 (related mode skip and move, the
Phase-2 rules) on the same customers with the six related tables, against the plain job.

ROWS=1000000 by default (ROWS=50000 is the quick smoke run); ROUNDS=3: the arrival layout runs
that many times, the live traffic four more (with the job on a CPU of its own, and as many again
on shared CPUs: bench/cpus.py), and the targets take the median round. See bench/README.md.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from archiver.config import Policy, Settings, load_policy, load_settings
from archiver.db import Database
from archiver.identifiers import qualified
from archiver.observability import logger

from . import cost, data, report
from .cpus import CpuSplit
from .harness import Bench, env_int, fsync_ms, say
from .live import BASELINE_S, CONTROL_STEP_MS, LiveRun, disk_writer, pooled, run_live, wal_rate
from .report import Target
from .scenarios import DEFAULT_RUN, JobRun, Moved, batch_label, run_job, run_limit, run_row_by_row
from .server import PGDATA, Server, open_server

DEFAULT_ROWS = 1_000_000
DEFAULT_ROUNDS = 3
MAIN_LAYOUT = "arrival"
# p99 over ~5 s of traffic beside the job is decided by one disk stall of a few hundred ms (a few a
# minute on a shared VM, in either window): the live traffic gets four rounds more than the rest.
LIVE_EXTRA_ROUNDS = 4
# Rounds of the same traffic beside the control (a plain file writer at the job's WAL rate).
CONTROL_ROUNDS = 3
BIG_BATCH = 5000
ROW_BY_ROW_SAMPLE = 5000
WORST_BATCH_MS = 100.0
QUICK_BELOW = 200_000  # rows: a smoke run, with a shorter traffic baseline


def related_moved(db: Database, policy: Policy) -> int:
    from archiver.related import related_graph
    from archiver.schema import related_archive_name

    return sum(int(db.scalar(f"SELECT count(*) FROM {qualified(schema, related_archive_name(policy, table))}"))
               for schema, table in related_graph(db, policy).tables)


@dataclass(frozen=True)
class Round:
    """One pass over a layout: the single statement, then the job at each batch size."""

    limit: Moved
    jobs: dict[int, JobRun]

    def ratio(self, batch_size: int) -> float:
        return self.jobs[batch_size].rows_per_s / self.limit.rows_per_s


def measure(bench: Bench, quick: bool, rate: int, rounds: int, control: bool) -> dict[str, Any]:
    """Every scenario, each on a fresh clone, in an order that keeps each ratio's two sides adjacent.
    The arrival layout runs ``rounds`` times and the live traffic ``rounds`` + LIVE_EXTRA_ROUNDS
    in each CPU arrangement (the targets take the median round: one disk stall on a shared VM must
    not decide a verdict);
    with ``control``, CONTROL_ROUNDS more of the traffic beside a file writer at the job's WAL rate;
    the rest once. Scenario 7
    (related mode skip and move, the rules) runs on the data with the six related tables."""
    policy, settings, size = bench.policy, bench.settings, bench.policy.batch_size

    def one_round(layout: str) -> Round:
        limit = bench.scenario("limit", layout, partial(run_limit, policy=policy, settings=settings))
        jobs = {n: bench.scenario(f"job_{n}", layout, partial(run_job, policy=policy, settings=settings,
                                                              batch_size=n))
                for n in (DEFAULT_RUN, size, BIG_BATCH)}
        return Round(limit, jobs)

    layouts = {layout: [one_round(layout) for _ in range(rounds if layout == MAIN_LAYOUT else 1)]
               for layout in data.LAYOUTS}
    sample = min(ROW_BY_ROW_SAMPLE, bench.rows // 10)
    rbr = bench.scenario("row_by_row", MAIN_LAYOUT,
                         partial(run_row_by_row, policy=policy, settings=settings, sample=sample))
    baseline_s = 5.0 if quick else BASELINE_S
    live_round = partial(run_live, url=bench.server.url(bench.clone_name("live")), policy=policy, settings=settings,
                         batch_size=DEFAULT_RUN, baseline_s=baseline_s, rate=rate)
    split, why_shared = bench.server.cpu_split()
    # The target's rounds have the job on a CPU of its own when the machine allows it; the same
    # number on shared CPUs, interleaved with them, so that the hour falls on both alike.
    arrangements = [split, None] if split else [None]
    by_cpus: dict[CpuSplit | None, list[LiveRun]] = {cpus: [] for cpus in arrangements}
    for i in range(rounds + LIVE_EXTRA_ROUNDS):
        for cpus in arrangements if i % 2 == 0 else arrangements[::-1]:
            by_cpus[cpus].append(bench.scenario("live", MAIN_LAYOUT, partial(live_round, cpus=cpus)))
    live, live_shared = by_cpus[split], by_cpus[None] if split else []
    controls: list[LiveRun] = []
    if control:
        with disk_writer(PGDATA.parent, wal_rate(live), statistics.median(lv.job.seconds for lv in live)) as writer:
            beside_writer = partial(run_live, url=bench.server.url(bench.clone_name("live_control")), policy=policy,
                                    settings=settings, batch_size=DEFAULT_RUN, baseline_s=baseline_s, rate=rate,
                                    beside=writer, cpus=split)
            controls = [bench.scenario("live_control", MAIN_LAYOUT, beside_writer) for _ in range(CONTROL_ROUNDS)]
    skip = bench.scenario("skip", data.RELATED, partial(run_job, policy=policy, settings=settings,
                                                        batch_size=DEFAULT_RUN))
    rules_policy = load_policy({"ARCHIVER_RULES": "all"})
    rules = bench.scenario("rules", data.RELATED,
                           partial(run_job, policy=rules_policy, settings=settings, batch_size=DEFAULT_RUN))
    move_policy = load_policy({}, related_mode="move")

    def move_mode(db: Database) -> tuple[JobRun, int]:
        return run_job(db, move_policy, settings, DEFAULT_RUN), related_moved(db, move_policy)

    move = bench.scenario("move", data.RELATED, move_mode)
    return {"layouts": layouts, "rbr": rbr, "live": live, "live_shared": live_shared,
            "live_cpus": split.describe() if split else f"shared ({why_shared})", "controls": controls,
            "skip": skip, "rules": rules, "move": move}


def main() -> int:
    logger.setLevel("WARNING")  # the handler's per-hop lines would drown the table
    rows = env_int("ROWS", DEFAULT_ROWS)
    rate = env_int("LIVE_RATE", 200)
    rounds = max(1, env_int("ROUNDS", DEFAULT_ROUNDS))
    policy, settings = load_policy({}), load_settings({})
    server = open_server(os.environ, policy.timezone)
    bench = Bench(server, policy, settings, rows)
    began, wall = datetime.now(UTC), time.perf_counter()
    say(f"bench: {rows:,} customers, {rounds} rounds, nproc {os.cpu_count()}, "
        f"PostgreSQL {server.settings()['server_version']}")
    disk = fsync_ms(PGDATA.parent)
    bench.seed()
    try:
        # The control writes to this machine's disk: it says nothing about a server elsewhere.
        control = not os.environ.get("DATABASE_URL")
        m = measure(bench, quick=rows < QUICK_BELOW, rate=rate, rounds=rounds, control=control)
    finally:
        bench.cleanup()
    results = assemble(rows, policy, settings, server, m)
    results["machine"]["disk_fsync_ms"] = disk
    results["started_at"], results["duration_s"] = began.isoformat(), round(time.perf_counter() - wall)
    print_results(results)
    path = report.write_json(results)
    series = {f"{layout}, {batch_label(n)}": run for layout, rs in m["layouts"].items()
              for n, run in rs[0].jobs.items()}
    series[f"{MAIN_LAYOUT}, live traffic"] = m["live"][0].job
    png = report.chart(series, WORST_BATCH_MS, report.RESULTS / "batch_latency.png")
    say(f"wrote {path} and {png} in {results['duration_s']} s")
    return 0


T = TypeVar("T")


def median_of(items: list[T], key: Callable[[T], float]) -> T:
    """The middle item by ``key`` (the lower of the two middles for an even count)."""
    return sorted(items, key=key)[(len(items) - 1) // 2]


def targets(h: dict[str, Any]) -> list[Target]:
    """On the headline figures (``assemble``): the default run, the one users get, except the worst
    batch, measured at a fixed 1000 rows as the issue asks."""
    return [
        Target(f"job, {batch_label(DEFAULT_RUN)} / single-statement limit", h["limit_ratio"], 0.5, at_most=False),
        Target("job / seeds' row-by-row rate", h["row_by_row_ratio"], 50, at_most=False),
        Target("flatness (last 10% of batches / first 10%)", h["flatness"], 1.3, at_most=True),
        Target(f"worst batch at {h['batch_size']} rows, ms", h["worst_batch_ms"], WORST_BATCH_MS,
               at_most=True),
        Target(f"live p99 during the job / without it, {h['live_cpus']}", h["live_p99_ratio"], 2.0, at_most=True),
        Target("lost updates (all rounds)", h["lost_updates"], 0, at_most=True),
    ]


def _layout(rounds: list[Round]) -> dict[str, Any]:
    return {"rounds": [{"limit": {"rows": r.limit.rows, "seconds": round(r.limit.seconds, 2),
                                  "rows_per_s": round(r.limit.rows_per_s)},
                        "jobs": {str(n): {**run.summary(), "limit_ratio": round(r.ratio(n), 3)}
                                 for n, run in r.jobs.items()}}
                       for r in rounds],
            "median_limit_ratio": {str(n): round(statistics.median(r.ratio(n) for r in rounds), 3)
                                   for n in rounds[0].jobs}}


def _control(controls: list[LiveRun]) -> dict[str, Any] | None:
    """The traffic beside a plain file writer at the job's WAL rate: not a target, the machine's part."""
    if not controls:
        return None
    rounds = [c.summary() for c in controls]
    return {"step_ms": CONTROL_STEP_MS, "seconds": round(controls[0].job.seconds, 2),
            "p99_ratio": round(statistics.median(c["p99_ratio"] for c in rounds), 2),
            "per_round": [c["p99_ratio"] for c in rounds], "pooled": pooled(controls),
            "lost_updates": sum(c.lost_updates for c in controls)}


def _live(lives: list[LiveRun]) -> dict[str, Any]:
    """The median round's ratio and added ms, every round, and the rounds pooled."""
    rounds = [lv.summary() for lv in lives]
    return {"p99_ratio": round(statistics.median(lv["p99_ratio"] for lv in rounds), 2),
            "p99_added_ms": round(statistics.median(lv["p99_added_ms"] for lv in rounds), 2),
            "pooled": pooled(lives), "lost_updates": sum(lv.lost_updates for lv in lives), "rounds": rounds}


def assemble(rows: int, policy: Policy, settings: Settings, server: Server, m: dict[str, Any]) -> dict[str, Any]:
    size = policy.batch_size
    rounds: list[Round] = m["layouts"][MAIN_LAYOUT]
    defaults = [r.jobs[DEFAULT_RUN] for r in rounds]
    main_job = median_of(defaults, lambda j: j.rows_per_s)
    rbr: Moved = m["rbr"]
    lives: list[LiveRun] = m["live"]
    live, shared = _live(lives), _live(m["live_shared"]) if m["live_shared"] else None
    job_rows_per_s = statistics.median(j.rows_per_s for j in defaults)
    headline: dict[str, Any] = {
        "rows": rows,
        "job_rows_per_s": round(job_rows_per_s),
        "limit_rows_per_s": round(statistics.median(r.limit.rows_per_s for r in rounds)),
        "limit_ratio": round(statistics.median(r.ratio(DEFAULT_RUN) for r in rounds), 3),
        "row_by_row_rows_per_s": round(rbr.rows_per_s),
        "row_by_row_ratio": round(job_rows_per_s / rbr.rows_per_s, 1),
        "flatness": round(statistics.median(j.flatness() for j in defaults), 3),
        "worst_batch_ms": round(statistics.median(r.jobs[size].worst_ms for r in rounds), 1),
        "live_p99_ratio": live["p99_ratio"],
        # Not a target: what the job adds to the traffic's p99 moves less with the machine's hour
        # than the ratio, whose divisor is that hour's p99 without the job (bench/README.md).
        "live_p99_added_ms": live["p99_added_ms"],
        "live_cpus": m["live_cpus"],
        # Not a target: the same traffic with every process on shared CPUs (bench/cpus.py).
        "live_shared_p99_ratio": shared["p99_ratio"] if shared else None,
        "lost_updates": sum(lv.lost_updates for lv in lives + m["live_shared"]),
        "batch_size": size,
        "rounds": len(rounds),
    }
    skip, rules = m["skip"], m["rules"]
    move_job, move_related = m["move"]
    return {
        **headline,
        "default_run": {"start_batch_size": size, "target_batch_ms": settings.target_batch_ms,
                        "mean_batch_ms": round(main_job.mean_ms, 1),
                        "mean_rows_per_batch": round(main_job.archived / max(len(main_job.working), 1))},
        "per_round": {"limit_ratio": [round(r.ratio(DEFAULT_RUN), 3) for r in rounds],
                      "flatness": [round(j.flatness(), 3) for j in defaults],
                      "worst_batch_ms": [round(r.jobs[size].worst_ms, 1) for r in rounds],
                      "live_p99_ratio": [lv["p99_ratio"] for lv in live["rounds"]],
                      "live_p99_added_ms": [lv["p99_added_ms"] for lv in live["rounds"]]},
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "command": f"ROWS={rows} {os.path.relpath(sys.executable)} -m bench.run"},
        "server": server.settings(),
        "layouts": {layout: _layout(rs) for layout, rs in m["layouts"].items()},
        "row_by_row": {"rows": rbr.rows, "seconds": round(rbr.seconds, 2), "rows_per_s": round(rbr.rows_per_s)},
        "live": {**live, "cpus": m["live_cpus"], "job_wal_bytes_per_s": round(wal_rate(lives)),
                 "shared": shared, "control": _control(m["controls"])},
        "eligibility": {
            "plain": main_job.summary(),
            "skip": {**skip.summary(), "vs_plain": round(skip.rows_per_s / job_rows_per_s, 3)},
            "rules": {**rules.summary(), "vs_plain": round(rules.rows_per_s / job_rows_per_s, 3)},
            "move": {**move_job.summary(), "related_rows_moved": move_related,
                     "vs_plain": round(move_job.rows_per_s / job_rows_per_s, 3)},
        },
        "cost": cost.model(main_job, settings),
        "targets": [t.as_dict() for t in targets(headline)],
    }


def _print_live(live: dict[str, Any], cpus: str) -> None:
    for i, lv in enumerate(live["rounds"], 1):
        print(f"live traffic round {i}, {lv['rate_ops_per_s']} ops/s: p50 {lv['p50_without_ms']} -> "
              f"{lv['p50_during_ms']} ms, p99 {lv['p99_without_ms']} -> {lv['p99_during_ms']} ms "
              f"(x{lv['p99_ratio']}); {lv['updates_applied']} updates applied, {lv['lost_updates']} lost, "
              f"{lv['errors']} errors; rows {lv['rows_before']} -> {lv['rows_after']}")
    pool = live["pooled"]
    print(f"live traffic ({cpus}), the {len(live['rounds'])} rounds' operations pooled: p99 "
          f"{pool['p99_without_ms']} -> {pool['p99_during_ms']} ms (x{pool['p99_ratio']}) over "
          f"{pool['ops_without_job']:,} operations without the job and {pool['ops_during_job']:,} during it")
    added = [lv["p99_added_ms"] for lv in live["rounds"]]
    print(f"what the job added to the traffic's p99 ({cpus}): {live['p99_added_ms']:g} ms in the median round"
          f" (rounds {', '.join(f'{x:g}' for x in added)}; pooled {pool['p99_added_ms']:g} ms)")


def print_results(r: dict[str, Any]) -> None:
    size, n_rounds = r["batch_size"], r["rounds"]
    rows: list[list[object]] = []
    for layout, d in r["layouts"].items():
        for i, rnd in enumerate(d["rounds"], 1):
            lim = rnd["limit"]
            label = str(i) if len(d["rounds"]) > 1 else ""
            rows.append([layout, label, "single statement (limit)", lim["rows"], lim["seconds"], lim["rows_per_s"],
                         1.0, "", "", "", ""])
            for n, j in rnd["jobs"].items():
                rows.append([layout, label, f"job, {batch_label(int(n))}", j["archived"], j["seconds"],
                             j["rows_per_s"], j["limit_ratio"], "", j["mean_batch_ms"], j["worst_batch_ms"],
                             j["flatness"]])
    rb = r["row_by_row"]
    rows.append([MAIN_LAYOUT, "", "row by row (seed 001)", rb["rows"], rb["seconds"], rb["rows_per_s"],
                 round(rb["rows_per_s"] / r["limit_rows_per_s"], 3), "", "", "", ""])
    el = r["eligibility"]
    for label, key in (("job, related mode skip", "skip"), ("job, Phase-2 rules on", "rules"),
                       ("job, related mode move", "move")):
        j = el[key]
        rows.append([data.RELATED, "", f"{label}, default", j["archived"], j["seconds"], j["rows_per_s"], "",
                     j["vs_plain"], j["mean_batch_ms"], j["worst_batch_ms"], j["flatness"]])
    disk = r["machine"].get("disk_fsync_ms", {})
    print()
    print(f"{r['rows']:,} customers, nproc {r['machine']['nproc']}; {r['machine']['command']}")
    if disk:
        print(f"this machine's disk, 8 kB write + fdatasync at 100/s for {disk['seconds']:g} s: p50 {disk['p50']} ms,"
              f" p99 {disk['p99']} ms, max {disk['max']} ms")
    print(f"layouts arrival and uncorrelated are plain (no related tables); related = arrival with the six related"
          f" tables.\nvs limit: against the single statement of the same round; vs plain job: customers/s against"
          f" the median arrival job as users run it (default: adaptive from batch {size}).")
    print(report.table(["data", "round", "scenario", "rows", "seconds", "rows/s", "vs limit", "vs plain job",
                        "mean ms", "worst ms", "flatness"], rows))
    print()
    _print_live(r["live"], r["live"]["cpus"])
    if r["live"]["shared"]:
        _print_live(r["live"]["shared"], "shared CPUs, not the target")
    ctl = r["live"].get("control")
    if ctl:
        print(f"the same traffic beside a plain file writer at the job's WAL rate ("
              f"{r['live']['job_wal_bytes_per_s'] / 1e6:.0f} MB/s, an fdatasync every {ctl['step_ms']} ms, no database"
              f" work), not a target: p99 x{ctl['p99_ratio']} (rounds {', '.join(f'{x:g}' for x in ctl['per_round'])};"
              f" pooled x{ctl['pooled']['p99_ratio']}), {ctl['lost_updates']} lost")
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
    per = r["per_round"]
    print(f"\ntargets ({MAIN_LAYOUT} layout, default run; median of {n_rounds} rounds, live traffic"
          f" {len(per['live_p99_ratio'])}, where a figure has rounds)")
    rounds_of = {"limit": per["limit_ratio"], "flatness": per["flatness"], "worst batch": per["worst_batch_ms"],
                 "live p99": per["live_p99_ratio"]}
    for t in r["targets"]:
        spread = next((v for k, v in rounds_of.items() if k in t["name"]), None)
        rounds = f"  rounds: {', '.join(f'{x:g}' for x in spread)}" if spread and len(spread) > 1 else ""
        print(f"{t['result']}  {t['name']}: {t['value']:g} (target {t['target']}){rounds}")
    shared = r["live"]["shared"]
    if shared:
        spread = ", ".join(str(lv["p99_ratio"]) for lv in shared["rounds"])
        print(f"      live p99 on shared CPUs beside it: x{shared['p99_ratio']} (rounds {spread}), the job adding"
              f" {shared['p99_added_ms']:g} ms")
    unc = r["layouts"].get("uncorrelated", {}).get("rounds", [{}])[0].get("jobs", {}).get(str(DEFAULT_RUN))
    if unc:
        print(f"      uncorrelated layout beside it: vs limit {unc['limit_ratio']}, flatness {unc['flatness']}, "
              f"worst batch {unc['worst_batch_ms']} ms")


if __name__ == "__main__":
    sys.exit(main())
