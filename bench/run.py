"""`make bench`: the archive job against the database's own limit, side by side in one run.

The headline runs over TCP against a **stock** PostgreSQL 18 (a fresh initdb, default settings, on
127.0.0.1); the **tuned** server over its Unix socket is the second column (bench/server.py). With
DATABASE_URL set, that server is the headline and there is no second column.

PARTS (default: all) names what runs, each on fresh clones, each ratio's two sides adjacent:
``rounds``: per round the single statement (the limit), the default run, and the default run with
Nagle's algorithm left on (before issue 20's fix); ``sweep``: every batch size (SIZES) and
target batch time (TARGETS) in every round, rotated (bench/sweep.py); ``cases``: skip mode with the
related tables, the Phase-2 rules and the uncorrelated layout, each against its own limit
(bench/cases.py); ``night``: a day's rows on a ROWS and a 4 x ROWS table; ``live``: pgbench traffic
beside the default run (reported; only lost updates are a target); ``tuned``: the rounds on the
tuned server. Targets take the median round. Writes results/latest.json and batch_latency.png.

ROWS=1000000 by default (`make bench-quick`: 50000), ROUNDS=3, LIVE_RATE=200 transactions/s.
"""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

import archiver.db
from archiver.config import Policy, Settings, load_policy, load_settings
from archiver.db import Database
from archiver.observability import logger

from . import cases, cost, data, report
from .harness import Bench, env_int, env_ints, say
from .report import Target
from .scenarios import DEFAULT_RUN, JobRun, run_job, run_limit
from .server import Server, open_server, open_stock_server
from .sweep import NO_CLIFF, ratio, spread, sweep
from .traffic import LiveRun, run_live

DEFAULT_ROWS = 1_000_000
DEFAULT_ROUNDS = 3
SIZES = (250, 500, 1000, 2000, 5000, 10000)
TARGETS = (25, 50, 100)  # target batch times (ms) the adaptive run is tried at, beside the sweep
PARTS = ("rounds", "sweep", "cases", "night", "live", "tuned")  # PARTS=rounds,sweep: only those
NIGHT_FACTOR = 3.0  # one night: the job within 3x the single statement, plus the process start
QUICK_BELOW = 200_000


@contextmanager
def nagle_on() -> Iterator[None]:
    """Connections opened in the block keep Nagle's algorithm on, as pg8000 left them before issue 20."""
    original = archiver.db.tcp_socket

    def with_nagle(host: str, port: int, timeout: float) -> socket.socket:
        sock = original(host, port, timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        return sock

    archiver.db.tcp_socket = with_nagle  # type: ignore[assignment]
    try:
        yield
    finally:
        archiver.db.tcp_socket = original  # type: ignore[assignment]


def job_with_nagle(db: Database, policy: Policy, settings: Settings) -> JobRun:
    db.close()
    with nagle_on():
        db.ensure_alive()
    return run_job(db, policy, settings, DEFAULT_RUN)


def rounds_on(bench: Bench, rounds: int, extra: bool) -> list[dict[str, Any]]:
    """Each round: limit, default run; with ``extra`` (the headline server over TCP) also the default run
    with Nagle on, the two in reversed order every other round."""
    policy, settings = bench.policy, bench.settings
    out = []
    for r in range(rounds):
        limit = bench.scenario("limit", "arrival", partial(run_limit, policy=policy, settings=settings))
        found: dict[str, Any] = {"limit": limit}
        steps: list[tuple[str, Callable[[Database], JobRun]]] = [
            ("default", partial(run_job, policy=policy, settings=settings, batch_size=DEFAULT_RUN))]
        if extra and bench.server.transport == "TCP":
            steps.append(("nagle", partial(job_with_nagle, policy=policy, settings=settings)))
            steps = steps if r % 2 == 0 else steps[::-1]  # neither always first after the limit
        for name, fn in steps:
            found[name] = bench.scenario(name, "arrival", fn)
        out.append(found)
    return out


def process_start_s() -> float:
    """What the CLI's process takes to start (interpreter, imports), the one night's allowance."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import local.cli, handlers.archive"], check=True,
                   env={**os.environ, "PYTHONPATH": "functions"})
    return time.perf_counter() - started


def night(server: Server, rows: int, settings: Settings) -> dict[str, Any]:
    """One night: ``rows`` customers over data.HISTORY_DAYS, a policy whose cutoff leaves one day's
    rows eligible; the default run against the single statement for those rows, on clones."""
    policy = load_policy({}, retention_days=data.HISTORY_DAYS - 1)
    bench = Bench(server, policy, settings, rows, templates=("arrival",))
    name = f"night_{rows}"
    bench.template = lambda _layout: f"bench_tmpl_{name}"  # type: ignore[method-assign]
    bench.seed()
    try:
        limit = bench.scenario("night_limit", "arrival", partial(run_limit, policy=policy, settings=settings))
        job = bench.scenario("night_job", "arrival", partial(run_job, policy=policy, settings=settings,
                                                             batch_size=DEFAULT_RUN))
    finally:
        bench.cleanup()
    return {"rows": rows, "eligible": limit.rows, "limit_s": round(limit.seconds, 3), "job_s": round(job.seconds, 3),
            "batches": len(job.working), "hops": job.hops}


def live(bench: Bench, rounds: int, rate: int, baseline_s: float, job_s: float) -> list[LiveRun]:
    policy, settings = bench.policy, bench.settings
    out = []
    for _ in range(rounds):
        dbname = bench.clone_name("live")
        out.append(bench.scenario("live", "arrival", partial(
            run_live, server=bench.server, dbname=dbname, policy=policy,
            job=partial(run_job, policy=policy, settings=settings, batch_size=DEFAULT_RUN),
            rate=rate, baseline_s=baseline_s, job_s=job_s)))
    return out


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    first = rounds[0]
    keys = [k for k in first if k != "limit"]
    out: dict[str, Any] = {"limit_rows_per_s": spread([r["limit"].rows_per_s for r in rounds])}
    for k in keys:
        out[k] = {"limit_ratio": spread([ratio(r[k].rows_per_s, r["limit"]) for r in rounds]),
                  "rows_per_s": spread([r[k].rows_per_s for r in rounds]),
                  "mean_batch_ms": spread([r[k].mean_ms for r in rounds]),
                  "mean_rows_per_batch": spread([r[k].archived / max(len(r[k].working), 1) for r in rounds])}
    return out


def median_round(rounds: list[dict[str, Any]], key: str) -> JobRun:
    """The round whose ``key`` run has the median ratio to its limit (the one a target reads)."""
    ordered = sorted(rounds, key=lambda r: ratio(r[key].rows_per_s, r["limit"]))
    return ordered[(len(ordered) - 1) // 2][key]


def batches_of(job: JobRun) -> dict[str, Any]:
    """A run's batches as [rows, ms] pairs, and where its time went outside them."""
    inside = sum(b.ms for b in job.batches) / 1000
    first = job.batches[0].at_s - job.batches[0].ms / 1000 if job.batches else 0.0
    return {"seconds": round(job.seconds, 3), "in_batches_s": round(inside, 3), "before_first_s": round(first, 3),
            "batches": [[b.locked, round(b.ms, 1)] for b in job.batches]}


def main() -> int:
    logger.setLevel("WARNING")  # the handler's per-hop lines would drown the table
    rows = env_int("ROWS", DEFAULT_ROWS)
    rounds = max(1, env_int("ROUNDS", DEFAULT_ROUNDS))
    parts = set(os.environ.get("PARTS", ",".join(PARTS)).split(","))
    quick = rows < QUICK_BELOW
    policy, settings = load_policy({}), load_settings({})
    external = bool(os.environ.get("DATABASE_URL"))
    head = open_server(os.environ, policy.timezone) if external else open_stock_server(policy.timezone)
    began, wall = datetime.now(UTC), time.perf_counter()
    say(f"bench: {rows:,} customers, {rounds} rounds, nproc {os.cpu_count()}, headline: {head.name} server over "
        f"{head.transport}, PostgreSQL {head.settings()['server_version']}; parts {', '.join(sorted(parts))}")
    command = " ".join(f"{k}={os.environ[k]}" for k in ("ROWS", "ROUNDS", "PARTS", "SIZES", "TARGETS", "LIVE_ROUNDS")
                       if os.environ.get(k))
    results: dict[str, Any] = {"rows": rows, "rounds": rounds, "started_at": began.isoformat(),
                               "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                                           "python": platform.python_version(),
                                           "command": f"{command or f'ROWS={rows}'} python -m bench.run"},
                               "defaults": {"start_batch_size": policy.batch_size,
                                            "target_batch_ms": settings.target_batch_ms}}
    templates = ("arrival", *(cases.TEMPLATES if "cases" in parts else ()))
    bench = Bench(head, policy, settings, rows, templates=templates)
    bench.seed()
    h: dict[str, Any] = {"server": head.name, "transport": head.transport, "settings": head.settings()}
    results["headline"] = h
    main_rounds: list[dict[str, Any]] = []
    try:
        if "rounds" in parts:
            main_rounds = rounds_on(bench, rounds, extra=True)
            h.update(summarise(main_rounds))
            h["default_run"] = batches_of(median_round(main_rounds, "default"))
        if "sweep" in parts:
            h["sweep"] = sweep(bench, env_ints("SIZES", SIZES), env_ints("TARGETS", TARGETS),
                               max(1, env_int("SWEEP_ROUNDS", rounds)))
        if "cases" in parts:
            results["cases"] = cases.run_cases(bench, rounds)
        if "live" in parts:
            job_s = statistics.median(r["default"].seconds for r in main_rounds) if main_rounds else 60.0
            lives = live(bench, env_int("LIVE_ROUNDS", rounds), env_int("LIVE_RATE", 200), 3.0 if quick else 10.0,
                         job_s)
            h["live"] = [lv.summary() for lv in lives]
    finally:
        bench.cleanup()
    if "night" in parts:
        results["night"] = {"process_start_s": round(process_start_s(), 2),
                            "tables": [night(head, n, settings) for n in (rows, 4 * rows)]}
    if "tuned" in parts and not external:
        tuned = open_server(os.environ, policy.timezone)
        tb = Bench(tuned, policy, settings, rows, templates=("arrival",))
        tb.seed()
        try:
            tuned_rounds = rounds_on(tb, rounds, extra=False)
        finally:
            tb.cleanup()
        results["tuned"] = {"server": tuned.name, "transport": tuned.transport, "settings": tuned.settings(),
                            **summarise(tuned_rounds)}
    if main_rounds:
        results["cost"] = cost.model(main_rounds[0]["default"], settings)
    results["targets"] = [t.as_dict() for t in targets(results)]
    results["duration_s"] = round(time.perf_counter() - wall)
    print_results(results)
    path = report.write_json(results)
    say(f"wrote {path} in {results['duration_s']} s")
    if main_rounds:
        png = report.chart({f"{head.name}, default run": median_round(main_rounds, "default")}, 100.0,
                           report.RESULTS / "batch_latency.png")
        say(f"wrote {png}")
    return 0


def targets(r: dict[str, Any]) -> list[Target]:
    """The issue's targets that this run measured, each from the median round where there are rounds."""
    h, out = r["headline"], []
    for s in (h, r.get("tuned")):
        if s and "default" in s:
            out.append(Target(f"default run / single-statement limit, {s['server']} server over {s['transport']}",
                              s["default"]["limit_ratio"]["median"], 0.5, at_most=False))
    if "sweep" in h:
        out.append(Target("sweep: worst time per row over a smaller size's (no cliffs), median ratios",
                          h["sweep"]["cliff"], NO_CLIFF, at_most=True))
    if "night" in r:
        start = r["night"]["process_start_s"]
        for n in r["night"]["tables"]:
            out.append(Target(f"one night, {n['eligible']:,} rows on {n['rows']:,}: job / (3 x statement + start)",
                              round(n["job_s"] / (NIGHT_FACTOR * n["limit_s"] + start), 3), 1.0, at_most=True))
    out += cases.targets(r.get("cases", {}))
    if "live" in h:
        out.append(Target("lost updates under pgbench traffic (all rounds)",
                          sum(lv["lost_updates"] for lv in h["live"]), 0, at_most=True))
    return out


def _col(s: dict[str, Any], key: str) -> str:
    if key not in s:
        return "-"
    v = s[key]["limit_ratio"]
    return f"{v['median']:.3f} ({min(v['rounds']):.2f}-{max(v['rounds']):.2f})"


def _mm(v: dict[str, Any]) -> str:
    return f"{v['median']:.2f} ({min(v['rounds']):.2f}-{max(v['rounds']):.2f})"


def print_results(r: dict[str, Any]) -> None:
    h, t = r["headline"], r.get("tuned", {})
    m = r["machine"]
    print(f"\n{r['rows']:,} customers (75% past the cutoff), arrival layout; nproc {m['nproc']}; {r['rounds']} rounds;"
          f" command: {m['command']}")
    for s in (h, t):
        if s:
            st = s["settings"]
            print(f"  {s['server']}: PostgreSQL {st['server_version']} over {s['transport']}, shared_buffers "
                  f"{st['shared_buffers']}, max_wal_size {st['max_wal_size']}, min_wal_size {st['min_wal_size']}")
    if "default" in h:
        print_rounds(r, h, t)
    if "sweep" in h:
        print_sweep(h)
    if "cases" in r:
        print_cases(r["cases"])
    if "night" in r:
        ni = r["night"]
        print(f"\none night (a day's rows; process start {ni['process_start_s']} s)")
        print(report.table(["table rows", "eligible", "statement s", "job s", "batches", "job / statement"],
                           [[n["rows"], n["eligible"], n["limit_s"], n["job_s"], n["batches"],
                             round(n["job_s"] / max(n["limit_s"], 1e-9), 2)] for n in ni["tables"]]))
    if "live" in h:
        print_live(h["live"])
    print(f"\ntargets (median of {r['rounds']} rounds where there are rounds)")
    for tg in r["targets"]:
        print(f"{tg['result']}  {tg['name']}: {tg['value']:g} (target {tg['target']})")
    if "default" in h:
        stretch = h["default"]["limit_ratio"]["median"]
        print(f"      stretch: default run >= 0.6 of the limit on the {h['server']} server: "
              f"{'PASS' if stretch >= 0.6 else 'MISS'} ({stretch:g})")


def print_rounds(r: dict[str, Any], h: dict[str, Any], t: dict[str, Any]) -> None:
    print("\nvs the single-statement limit: median (min-max over rounds)")
    col2 = f"{t['server']}, {t['transport']}" if t else "-"
    rows = [["single statement, rows/s", f"{h['limit_rows_per_s']['median']:,.0f}",
             f"{t['limit_rows_per_s']['median']:,.0f}" if t else "-"],
            [f"default run (start {r['defaults']['start_batch_size']}, target {r['defaults']['target_batch_ms']} ms)",
             _col(h, "default"), _col(t, "default")],
            ["default run, Nagle on (before the fix)", _col(h, "nagle"), "-"]]
    print(report.table(["", f"{h['server']}, {h['transport']}", col2], rows))
    d, run = h["default"], h["default_run"]
    print(f"default run: {d['mean_rows_per_batch']['median']:.0f} rows a batch, {d['mean_batch_ms']['median']:.1f} ms"
          f" a batch (median round); in that round {run['in_batches_s']:.2f} s of {run['seconds']:.2f} s in batches,"
          f" {run['before_first_s']:.2f} s before the first")


def print_sweep(h: dict[str, Any]) -> None:
    sw = h["sweep"]
    print(f"\nbatch-size sweep ({h['server']}, {h['transport']}; the job end to end at a fixed size; every size in"
          f" each of {sw['rounds']} rounds, rotated; median (min-max))")
    print(report.table(["batch", "vs limit", "us/row", "rows/batch", "mean ms", "worst ms"],
                       [[f"{int(n):,}", _mm(s["limit_ratio"]), _mm(s["us_per_row"]), s["mean_rows_per_batch"],
                         s["mean_batch_ms"], s["worst_batch_ms"]] for n, s in sw["sizes"].items()]))
    print(f"no cliffs: worst per-row slowdown over a smaller size {sw['cliff']:g} from the medians; by round: "
          f"{', '.join(f'{c:g}' for c in sw['cliff_by_round'])}")
    print("\nthe adaptive run at other target batch times (same rounds as the sweep)")
    print(report.table(["target ms", "vs limit", "us/row", "rows/batch", "mean ms", "worst ms"],
                       [[f"{int(t)}", _mm(s["limit_ratio"]), _mm(s["us_per_row"]), s["mean_rows_per_batch"],
                         s["mean_batch_ms"], s["worst_batch_ms"]] for t, s in sw["targets"].items()]))


def print_cases(found: dict[str, Any]) -> None:
    print("\nother data and policies, the default run against each one's own single statement (issue 20, point 6)")
    print(report.table(["case", "eligible", "limit rows/s", "vs own limit", "rows/batch", "mean ms"],
                       [[name, c["eligible"], c["limit_rows_per_s"]["median"], _mm(c["limit_ratio"]),
                         c["mean_rows_per_batch"]["median"], c["mean_batch_ms"]["median"]]
                        for name, c in found.items()]))


def print_live(lives: list[dict[str, Any]]) -> None:
    print(f"\nlive traffic: pgbench at {lives[0]['rate_tps']} tx/s (read + update a random customer), "
          "alone then beside the default run; reported, not a target")
    print(report.table(["round", "p50 ms", "p99 ms", "max ms", "failed", "p50 during", "p99 during", "max during",
                        "failed during", "lost"],
                       [[i + 1, lv["without"]["p50_ms"], lv["without"]["p99_ms"], lv["without"]["max_ms"],
                         lv["without"]["failed"], lv["during"]["p50_ms"], lv["during"]["p99_ms"],
                         lv["during"]["max_ms"], lv["during"]["failed"], lv["lost_updates"]]
                        for i, lv in enumerate(lives)]))


if __name__ == "__main__":
    sys.exit(main())
