"""`make bench`: the archive job against the database's own limit, side by side in one run.

The headline runs over TCP against a **stock** PostgreSQL 18 (a fresh initdb, default settings, on
127.0.0.1); the **tuned** server over its Unix socket is the second column (bench/server.py). With
DATABASE_URL set, that server is the headline and there is no second column.

Per round, each scenario on a fresh clone, adjacent so each ratio's two sides share the hour:
the single statement (the limit), the default run, the default run with Nagle's algorithm left on
(before issue 20's fix), and the engine's batches beside the one-statement prototype at 1000 and
5000 rows (bench/onestatement.py). Once: the batch-size sweep (SIZES), the one-night scenario (a
day's rows on a ROWS and a 4 x ROWS table, against the single statement for those rows), and live
traffic from pgbench beside the default run (LIVE_ROUNDS rounds; reported, not a target except
lost updates). Targets take the median round. Writes results/latest.json and batch_latency.png.

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

from . import cost, data, report
from .harness import Bench, env_int, env_ints, say
from .onestatement import run_one_statement
from .report import Target
from .scenarios import DEFAULT_RUN, JobRun, Moved, run_batches, run_job, run_limit
from .server import Server, open_server, open_stock_server
from .traffic import LiveRun, run_live

DEFAULT_ROWS = 1_000_000
DEFAULT_ROUNDS = 3
SIZES = (250, 500, 1000, 2000, 5000, 10000)
PROTOTYPE_SIZES = (1000, 5000)
TARGETS = (25, 50, 100)  # target batch times (ms) the adaptive run is tried at, beside the sweep
NO_CLIFF = 1.10  # no size slower per row than a smaller one by more than this
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


def ratio(job: JobRun, limit: Moved) -> float:
    return round(job.rows_per_s / limit.rows_per_s, 3) if limit.rows_per_s else 0.0


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 3), "rounds": [round(v, 3) for v in values]}


def rounds_on(bench: Bench, rounds: int, extra: bool) -> list[dict[str, Any]]:
    """Each round: limit, default run; with ``extra`` (the headline server) also the default run with
    Nagle on and the engine beside the one-statement prototype, the order reversed every other round."""
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
        if extra:
            for n in PROTOTYPE_SIZES:
                pair = [(f"engine_{n}", partial(run_batches, policy=policy, settings=settings, batch_size=n)),
                        (f"one_statement_{n}", partial(run_one_statement, policy=policy, settings=settings,
                                                       batch_size=n))]
                steps += pair if r % 2 == 0 else pair[::-1]
        for name, fn in steps:
            found[name] = bench.scenario(name, "arrival", fn)
        out.append(found)
    return out


def sweep(bench: Bench, sizes: list[int], targets_ms: list[int]) -> tuple[dict[int, dict[str, Any]],
                                                                         dict[int, dict[str, Any]]]:
    """The job end to end at each fixed size, then adaptive at each target batch time, beside a limit
    of the same hour."""
    policy, settings = bench.policy, bench.settings
    limit = bench.scenario("limit", "arrival", partial(run_limit, policy=policy, settings=settings))

    def one(name: str, s: Settings, n: int) -> dict[str, Any]:
        job = bench.scenario(name, "arrival", partial(run_job, policy=policy, settings=s, batch_size=n))
        return {**job.summary(), "limit_ratio": ratio(job, limit),
                "us_per_row": round(job.seconds / max(job.archived, 1) * 1e6, 2),
                "mean_rows_per_batch": round(job.archived / max(len(job.working), 1))}

    by_size = {n: one(f"job_{n}", settings, n) for n in sizes}
    by_target = {t: one(f"target_{t}ms", settings.model_copy(update={"target_batch_ms": t}), DEFAULT_RUN)
                 for t in targets_ms}
    return by_size, by_target


def cliff(sweep_out: dict[int, dict[str, Any]]) -> float:
    """The worst time per row of a size over that of any smaller size (<= NO_CLIFF: no cliff)."""
    sizes = sorted(sweep_out)
    return round(max((sweep_out[b]["us_per_row"] / sweep_out[a]["us_per_row"]
                      for i, a in enumerate(sizes) for b in sizes[i + 1:]), default=1.0), 3)


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
        out[k] = {"limit_ratio": spread([ratio(r[k], r["limit"]) for r in rounds]),
                  "rows_per_s": spread([r[k].rows_per_s for r in rounds]),
                  "mean_batch_ms": spread([r[k].mean_ms for r in rounds]),
                  "mean_rows_per_batch": spread([r[k].archived / max(len(r[k].working), 1) for r in rounds])}
    for n in PROTOTYPE_SIZES:
        if f"engine_{n}" in first:
            out[f"one_statement_over_engine_{n}"] = spread(
                [r[f"one_statement_{n}"].rows_per_s / r[f"engine_{n}"].rows_per_s for r in rounds])
    return out


def main() -> int:
    logger.setLevel("WARNING")  # the handler's per-hop lines would drown the table
    rows = env_int("ROWS", DEFAULT_ROWS)
    rounds = max(1, env_int("ROUNDS", DEFAULT_ROUNDS))
    rate = env_int("LIVE_RATE", 200)
    quick = rows < QUICK_BELOW
    policy, settings = load_policy({}), load_settings({})
    external = bool(os.environ.get("DATABASE_URL"))
    head = open_server(os.environ, policy.timezone) if external else open_stock_server(policy.timezone)
    began, wall = datetime.now(UTC), time.perf_counter()
    say(f"bench: {rows:,} customers, {rounds} rounds, nproc {os.cpu_count()}, headline: {head.name} server over "
        f"{head.transport}, PostgreSQL {head.settings()['server_version']}")
    results: dict[str, Any] = {"rows": rows, "rounds": rounds, "started_at": began.isoformat(),
                               "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                                           "python": platform.python_version(),
                                           "command": f"ROWS={rows} {os.path.relpath(sys.executable)} -m bench.run"},
                               "defaults": {"start_batch_size": policy.batch_size,
                                            "target_batch_ms": settings.target_batch_ms}}
    bench = Bench(head, policy, settings, rows, templates=("arrival",))
    bench.seed()
    try:
        main_rounds = rounds_on(bench, rounds, extra=True)
        sizes = env_ints("SIZES", SIZES)
        swept, by_target = sweep(bench, sizes, env_ints("TARGETS", TARGETS))
        default_s = statistics.median(r["default"].seconds for r in main_rounds)
        lives = live(bench, env_int("LIVE_ROUNDS", rounds), rate, 3.0 if quick else 10.0, default_s)
    finally:
        bench.cleanup()
    results["headline"] = {"server": head.name, "transport": head.transport, "settings": head.settings(),
                           **summarise(main_rounds), "sweep": {str(n): v for n, v in swept.items()},
                           "targets_sweep": {str(t): v for t, v in by_target.items()},
                           "cliff": cliff(swept), "live": [lv.summary() for lv in lives]}
    start_s = process_start_s()
    results["night"] = {"process_start_s": round(start_s, 2),
                        "tables": [night(head, n, settings) for n in (rows, 4 * rows)]}
    if not external:
        tuned = open_server(os.environ, policy.timezone)
        tb = Bench(tuned, policy, settings, rows, templates=("arrival",))
        tb.seed()
        try:
            tuned_rounds = rounds_on(tb, rounds, extra=False)
        finally:
            tb.cleanup()
        results["tuned"] = {"server": tuned.name, "transport": tuned.transport, "settings": tuned.settings(),
                            **summarise(tuned_rounds)}
    results["cost"] = cost.model(main_rounds[0]["default"], settings)
    results["targets"] = [t.as_dict() for t in targets(results)]
    results["duration_s"] = round(time.perf_counter() - wall)
    print_results(results)
    path = report.write_json(results)
    png = report.chart({f"{head.name}, default run": main_rounds[0]["default"]}, 100.0,
                       report.RESULTS / "batch_latency.png")
    say(f"wrote {path} and {png} in {results['duration_s']} s")
    return 0


def targets(r: dict[str, Any]) -> list[Target]:
    """The issue's targets, each from the median round where there are rounds."""
    h = r["headline"]
    out = [Target(f"default run / single-statement limit, {h['server']} server over {h['transport']}",
                  h["default"]["limit_ratio"]["median"], 0.5, at_most=False)]
    if "tuned" in r:
        t = r["tuned"]
        out.append(Target(f"default run / single-statement limit, {t['server']} server over {t['transport']}",
                          t["default"]["limit_ratio"]["median"], 0.5, at_most=False))
    out.append(Target("sweep: worst time per row over a smaller size's (no cliffs)", h["cliff"], NO_CLIFF,
                      at_most=True))
    start = r["night"]["process_start_s"]
    for n in r["night"]["tables"]:
        out.append(Target(f"one night, {n['eligible']:,} rows on {n['rows']:,}: job / (3 x statement + start)",
                          round(n["job_s"] / (NIGHT_FACTOR * n["limit_s"] + start), 3), 1.0, at_most=True))
    out.append(Target("lost updates under pgbench traffic (all rounds)",
                      sum(lv["lost_updates"] for lv in h["live"]), 0, at_most=True))
    return out


def _col(s: dict[str, Any], key: str) -> str:
    if key not in s:
        return "-"
    v = s[key]["limit_ratio"]
    return f"{v['median']:.3f} ({min(v['rounds']):.2f}-{max(v['rounds']):.2f})"


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
    print("\nvs the single-statement limit: median (min-max over rounds)")
    col2 = f"{t['server']}, {t['transport']}" if t else "-"
    rows = [["single statement, rows/s", f"{h['limit_rows_per_s']['median']:,.0f}",
             f"{t['limit_rows_per_s']['median']:,.0f}" if t else "-"],
            [f"default run (start {r['defaults']['start_batch_size']}, target {r['defaults']['target_batch_ms']} ms)",
             _col(h, "default"), _col(t, "default")],
            ["default run, Nagle on (before the fix)", _col(h, "nagle"), "-"]]
    for n in PROTOTYPE_SIZES:
        rows += [[f"engine batches of {n} (batch time only)", _col(h, f"engine_{n}"), "-"],
                 [f"one-statement prototype, {n}", _col(h, f"one_statement_{n}"), "-"]]
    print(report.table(["", f"{h['server']}, {h['transport']}", col2], rows))
    d = h["default"]
    print(f"default run: {d['mean_rows_per_batch']['median']:.0f} rows a batch, {d['mean_batch_ms']['median']:.1f} ms"
          " a batch (median round)")
    for n in PROTOTYPE_SIZES:
        k = f"one_statement_over_engine_{n}"
        if k in h:
            print(f"one statement / engine at {n}: x{h[k]['median']:.2f} (rounds "
                  f"{', '.join(f'{x:.2f}' for x in h[k]['rounds'])})")
    print(f"\nbatch-size sweep ({h['server']}, {h['transport']}; the job end to end at a fixed size, one round)")
    print(report.table(["batch", "rows/s", "vs limit", "us/row", "mean ms", "worst ms"],
                       [[int(n), s["rows_per_s"], s["limit_ratio"], s["us_per_row"], s["mean_batch_ms"],
                         s["worst_batch_ms"]] for n, s in h["sweep"].items()]))
    print("\nthe adaptive run at other target batch times (same hour as the sweep)")
    print(report.table(["target ms", "rows/s", "vs limit", "rows/batch", "mean ms", "worst ms"],
                       [[int(t), s["rows_per_s"], s["limit_ratio"], s["mean_rows_per_batch"], s["mean_batch_ms"],
                         s["worst_batch_ms"]] for t, s in h["targets_sweep"].items()]))
    ni = r["night"]
    print(f"\none night (a day's rows; process start {ni['process_start_s']} s)")
    print(report.table(["table rows", "eligible", "statement s", "job s", "batches", "job / statement"],
                       [[n["rows"], n["eligible"], n["limit_s"], n["job_s"], n["batches"],
                         round(n["job_s"] / max(n["limit_s"], 1e-9), 2)] for n in ni["tables"]]))
    print(f"\nlive traffic: pgbench at {h['live'][0]['rate_tps']} tx/s (read + update a random customer), "
          "alone then beside the default run; reported, not a target")
    print(report.table(["round", "p50 ms", "p99 ms", "max ms", "failed", "p50 during", "p99 during", "max during",
                        "failed during", "lost"],
                       [[i + 1, lv["without"]["p50_ms"], lv["without"]["p99_ms"], lv["without"]["max_ms"],
                         lv["without"]["failed"], lv["during"]["p50_ms"], lv["during"]["p99_ms"],
                         lv["during"]["max_ms"], lv["during"]["failed"], lv["lost_updates"]]
                        for i, lv in enumerate(h["live"])]))
    print(f"\ntargets (median of {r['rounds']} rounds where there are rounds)")
    for tg in r["targets"]:
        print(f"{tg['result']}  {tg['name']}: {tg['value']:g} (target {tg['target']})")
    stretch = h["default"]["limit_ratio"]["median"]
    print(f"      stretch: default run >= 0.6 of the limit on the {h['server']} server: "
          f"{'PASS' if stretch >= 0.6 else 'MISS'} ({stretch:g})")


if __name__ == "__main__":
    sys.exit(main())
