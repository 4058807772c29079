"""``archiver``: the command line. A thin runner over the core; errors map to exit codes here.

Exit codes: 0 succeeded, 1 the run failed (or ended partial), 2 bad usage or configuration,
3 another run of the same policy is active.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from archiver import grants, migration, slack
from archiver.config import (
    DEFAULT_PURGE_AFTER_DAYS,
    MAX_BATCH_SIZE,
    Policy,
    PolicySet,
    Settings,
    load_policies,
    load_settings,
)
from archiver.connection import open_database
from archiver.db import Database, check_writable, sqlstate
from archiver.engine import Archiver, BatchResult
from archiver.events import start_event
from archiver.exceptions import (
    AlreadyRunningError,
    ArchiverError,
    ConfigError,
    DatabaseUnavailableError,
    InvalidJobIdError,
    JobNotFoundError,
    JobStateError,
    SchemaError,
    ServerRefusedError,
)
from archiver.identifiers import qualified
from archiver.jobs import Job, JobStore, policy_of
from archiver.restore import Restorer, purge
from archiver.states import RunState
from archiver.worker import Deps, LocalInvoker

from . import demo, embedded
from .export_cli import EXPORT_COMMANDS, add_cold_restore_args, add_export_commands, cmd_restore_from
from .runner import drive

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 3


class UsageError(ArchiverError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit 2 with usage; keep that, add --json shape
        raise UsageError(message)


def _positive_int(text: str) -> int:
    if not re.fullmatch(r"\d+", text.strip()):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(text)


def _whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high], refused by the parser (exit 2) before anything starts."""
    def parse(text: str) -> int:
        value = _positive_int(text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {f'between {low} and {high}' if high else f'at least {low}'},"
                                             f" got {value}")
        return value
    return parse


def _table_flag(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--table", metavar="NAME", help=help_text + "; NAME is a policy's live table")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="archiver", description="Archive old rows of a PostgreSQL table, safely and in batches.")
    p.add_argument("--policy", help="policy file (TOML or JSON); default $ARCHIVER_POLICY_FILE")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_text, description=help_text)
        c.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
        return c

    m = cmd("migrate", "create or update the archive table, run log and indexes (idempotent)")
    _table_flag(m, "migrate only this table's policy (default: every policy)")
    s = cmd("seed-demo", "create the seed's demo tables and add demo customers")
    s.add_argument("--customers", type=_positive_int, default=10000)
    s.add_argument("--top-up", action="store_true", help="only add customers when none is eligible")
    s.add_argument("--no-related", action="store_true", help="do not create related rows")
    r = cmd("run", "run the archive job (or resume an interrupted one)")
    r.add_argument("--dry-run", action="store_true", help="count what would be archived; move nothing")
    r.add_argument("--batch-size", type=_positive_int, metavar="ROWS",
                   help="a fixed size for every batch of this run, no steering (default: start at the policy's"
                        " batch_size and steer toward ARCHIVER_TARGET_BATCH_MS)")
    r.add_argument("--max-batches", type=_whole_number(1), help="stop after N batches; resume later with --job")
    r.add_argument("--hop-seconds", type=float, help="time budget per hop (default: the Lambda's 900 s)")
    r.add_argument("--max-replica-lag", type=float, metavar="SECONDS",
                   help="between batches, wait while a standby's replay lag is above this (default: off)")
    r.add_argument("--job", help="resume this run (same cutoff, from where it stopped)")
    _table_flag(r, "run only this table's policy (default: every policy whose mode is not off, in turn)")
    st = cmd("status", "list recent runs, or show one")
    st.add_argument("job_id", nargs="?")
    st.add_argument("--limit", type=_positive_int, default=20)
    _table_flag(st, "only this table's runs (default: every table's)")
    rs = cmd("restore", "move archived rows back to the live table")
    g = rs.add_mutually_exclusive_group()
    g.add_argument("--job", help="restore the rows this run archived (with --from: this export's rows)")
    g.add_argument("--since", help="restore rows archived at or after this ISO timestamp")
    rs.add_argument("--dry-run", action="store_true")
    rs.add_argument("--batch-size", type=_positive_int, metavar="ROWS",
                    help="rows restored per batch (default: the policy's batch_size; with --from, 1000)")
    _table_flag(rs, "the table to restore (needed with --since when there are several)")
    add_cold_restore_args(rs)
    pg = cmd("purge", "delete archive rows older than the long-term retention")
    pg.add_argument("--older-than", default=None, help="e.g. 730d (default: the policy's purge_after_days)")
    pg.add_argument("--dry-run", action="store_true")
    pg.add_argument("--without-export", action="store_true",
                    help="also delete rows that no verified export holds (logged as such)")
    _table_flag(pg, "the table whose archive to purge (needed when there are several)")
    add_export_commands(cmd)
    sv = cmd("serve", "serve the status API on 127.0.0.1 (the status Lambda, locally)")
    sv.add_argument("--port", type=_whole_number(0, 65535), default=8000)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--remote", metavar="URL", help="serve the deployed API (and its page) here instead, each "
                                                    "request signed with your AWS credentials")
    sv.add_argument("--region", help="with --remote: the API's region, when its URL does not name it")
    cmd("stop-db", "stop the embedded PostgreSQL server")
    return p


# -- output ---------------------------------------------------------------------------------
def _emit(args: argparse.Namespace, obj: dict[str, Any], human: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(obj, default=str))
    else:
        print(human)


def _table(job: dict[str, Any]) -> str:
    keys = ["job_id", "table", "kind", "state", "dry_run", "eligible", "archived", "failed", "batches", "hops",
            "duration_ms", "cutoff", "message", "error"]
    rows = [(k, job.get(k)) for k in keys if job.get(k) is not None]
    if job.get("by_line_of_business"):
        rows += [(f"  {lob}", n) for lob, n in job["by_line_of_business"].items()]
    rows += [("warning", w) for w in job.get("warnings", [])]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


class Progress:
    """A progress bar on stderr for long runs (a line every few seconds when not a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.hop = 1

    def batch(self, job: Job, result: BatchResult) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < (0.2 if self.tty else 5.0)):
            return
        self.last = now
        total = max(int(job.eligible or 0), 1)
        done = int(job.records_archived) + int(job.records_failed)
        frac = min(done / total, 1.0)
        bar = "#" * int(frac * 30)
        line = f"[{bar:<30}] {frac:6.1%} {done}/{job.eligible} rows, {job.batches} batches, hop {job.hop}"
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def hop_done(self, n: int, result: dict[str, Any]) -> None:
        if self.enabled and result.get("status") == "continue":
            print(("\n" if self.tty else "") + f"hop {n} handed over to hop {result.get('next_hop')}",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty and self.last:
            print(file=sys.stderr)


# -- commands -------------------------------------------------------------------------------
def _exit_for(job: dict[str, Any]) -> int:
    return EXIT_FAILED if job["state"] in (RunState.FAILED, RunState.PARTIAL) else EXIT_OK


def _hop_seconds(args: argparse.Namespace, settings: Settings) -> float:
    """The time budget per hop, refused before a run exists when no batch could ever fit in it: a hop
    keeps the reserve free at its end, so a budget within it hands over empty, hop after hop."""
    hop_seconds = float(args.hop_seconds if args.hop_seconds is not None else settings.hop_seconds)
    if not 0 < hop_seconds <= 900:
        raise ConfigError(f"--hop-seconds must be in (0, 900], got {hop_seconds:g}")
    if hop_seconds * 1000 <= settings.reserve_ms:
        raise ConfigError(f"--hop-seconds {hop_seconds:g} is within the reserve each hop keeps free at its end"
                          f" (ARCHIVER_RESERVE_MS={settings.reserve_ms}):"
                          f" give more than {settings.reserve_ms / 1000:g} s")
    return hop_seconds


def run_policy(args: argparse.Namespace, db: Database, policy: Policy, settings: Settings,
               dry_run: bool | None = None) -> dict[str, Any]:
    """Run (or resume) one policy's job to its end or its bound; the run's status view."""
    if dry_run is not None:
        args = argparse.Namespace(**{**vars(args), "dry_run": dry_run})
    hop_seconds = _hop_seconds(args, settings)
    grants.check(db, policy, "dry-run" if args.dry_run else "run")
    progress = Progress(enabled=not args.json)
    deps = Deps(db=db, policy=policy, settings=settings, invoker=LocalInvoker(),
                alerts=slack.local_sink(os.environ), on_batch=progress.batch, max_batches=args.max_batches)
    archiver = Archiver(db, policy, settings)
    if args.job:
        event: dict[str, Any] = {"action": "resume", "job_id": JobStore(db, policy).get(args.job).id}
    else:
        try:
            if args.max_replica_lag is not None and not 0 <= args.max_replica_lag <= 3600:
                raise ConfigError("--max-replica-lag must be in [0, 3600] seconds")
            job = archiver.start(dry_run=args.dry_run, fixed_batch_size=args.batch_size, trigger="cli",
                                 max_replica_lag=args.max_replica_lag)
            event = start_event(job.id)
        except AlreadyRunningError as exc:
            active = archiver.jobs.active()
            now = db.scalar("SELECT now()")
            if args.dry_run or active is None or not active.may_take_over(now):
                raise exc
            print(f"resuming run {active.id}, whose worker is gone", file=sys.stderr)
            event = {"action": "resume", "job_id": active.id}
    job_id = event["job_id"]
    failed_error = None
    try:
        drive(event, deps, hop_seconds, on_hop=progress.hop_done)
    except (DatabaseUnavailableError, SchemaError):
        raise
    except Exception as exc:  # noqa: BLE001 - the worker has marked the run failed and alerted
        failed_error = str(exc)  # RunFailedError: already free of row data
    finally:
        progress.close()
    db.ensure_alive()
    out = JobStore(db, policy).get(job_id).as_dict()
    if failed_error and not out.get("error"):
        out["error"] = failed_error
    if out["state"] == RunState.RUNNING:
        out["message"] = f"paused after {out['batches']} batches; resume with: archiver run --job {job_id}"
    return out


def cmd_run(args: argparse.Namespace, db: Database, policy: Policy, settings: Settings) -> int:
    out = run_policy(args, db, policy, settings)
    _emit(args, out, _table(out))
    return _exit_for(out)


# The exit code of several runs is the worst of theirs: a bad set-up, then a failure, then a busy table.
_SEVERITY = {EXIT_OK: 0, EXIT_BUSY: 1, EXIT_FAILED: 2, EXIT_USAGE: 3}


def cmd_run_all(args: argparse.Namespace, db: Database, policies: PolicySet, settings: Settings) -> int:
    """Every enabled policy in turn, as the night would run it (mode dry_run and the days before
    dry_run_until: dry runs); one table's error does not stop the others."""
    runs: list[dict[str, Any]] = []
    codes = [EXIT_OK]
    now = datetime.now(UTC)
    for policy in policies.enabled:
        dry = True if args.dry_run or policy.scheduled_dry_run(now) else None
        try:
            out = run_policy(args, db, policy, settings, dry_run=dry)
            code = _exit_for(out)
        except DatabaseUnavailableError:
            raise
        except AlreadyRunningError as exc:
            out, code = {"table": policy.live_table, "error": str(exc), "job_id": exc.job_id}, EXIT_BUSY
        except (ConfigError, SchemaError, JobStateError) as exc:
            out, code = {"table": policy.live_table, "error": str(exc)}, EXIT_USAGE
        except ArchiverError as exc:
            out, code = {"table": policy.live_table, "error": str(exc)}, EXIT_FAILED
        runs.append(out)
        codes.append(code)
        if not args.json:
            print(f"== {policy.live_table}\n" + (_table(out) if "job_id" in out and "state" in out else
                                                  f"error: {out['error']}"), flush=True)
    if args.json:
        print(json.dumps({"runs": runs}, default=str))
    return max(codes, key=_SEVERITY.__getitem__)


def cmd_status(args: argparse.Namespace, db: Database, policies: PolicySet) -> int:
    policy = policies.get(args.table) if args.table else policies.policies[0]
    if args.job_id and not args.table:
        policy = policy_of(db, policies, args.job_id)
    store = JobStore(db, policy)
    keys = [policy.key] if args.table else [p.key for p in policies.policies]
    if args.job_id:
        job = store.get(args.job_id).as_dict()
        _emit(args, job, _table(job))
        return EXIT_OK
    if not 1 <= args.limit <= 1000:
        raise ConfigError("--limit must be between 1 and 1000")
    runs = [j.as_dict() for j in store.recent(args.limit, keys=keys)]
    width = max([5, *(len(r["table"]) for r in runs)])
    lines = [f"{'job_id':36}  {'table':{width}}  {'kind':7}  {'state':11}  {'dry':3}  {'archived':>9}  {'ms':>8}"
             "  run_date"]
    lines += [f"{r['job_id']:36}  {r['table']:{width}}  {r['kind']:7}  {r['state']:11}  "
              f"{'yes' if r['dry_run'] else 'no':3}  {r['archived']:>9}  {r['duration_ms'] or '':>8}  {r['run_date']}"
              for r in runs]
    _emit(args, {"runs": runs}, "\n".join(lines) if runs else "no runs yet")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace, db: Database, policy: Policy) -> int:
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError:
            raise ConfigError(f"--since: not an ISO timestamp: {args.since!r}") from None
        if since.tzinfo is None:
            raise ConfigError("--since needs a time zone, e.g. 2026-11-20T02:00:00+04:00")
    if args.batch_size is not None and not 1 <= args.batch_size <= MAX_BATCH_SIZE:
        raise ConfigError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}")
    grants.check(db, policy, "restore")
    if args.from_dest is not None:
        out, human, code = cmd_restore_from(args, db, policy, since)
        _emit(args, out, human)
        return code
    run, result = Restorer(db, policy, args.batch_size).restore(job_id=args.job, since=since, dry_run=args.dry_run)
    out = {**run.as_dict(), **result.as_dict()}
    _emit(args, out, _table(out) + f"\nrestored   {result.restored}\nconflicts  {result.conflict_count}")
    return _exit_for(out)  # partial: rows already live again were left in the archive


def cmd_purge(args: argparse.Namespace, db: Database, policy: Policy) -> int:
    days = policy.purge_after_days or DEFAULT_PURGE_AFTER_DAYS
    if args.older_than is not None:
        m = re.fullmatch(r"(\d+)d?", args.older_than.strip())
        if not m:
            raise ConfigError(f"--older-than: expected days like 730d, got {args.older_than!r}")
        days = int(m.group(1))
    grants.check(db, policy, "purge")
    job = purge(db, policy, days, dry_run=args.dry_run, without_export=args.without_export).as_dict()
    _emit(args, job, _table(job))
    return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if "LOG_LEVEL" not in env:  # a terminal user wants the summary, not the JSON log lines
        from archiver.observability import logger
        logger.setLevel("WARNING")
    if args.command == "stop-db":
        stopped = embedded.stop_server(embedded.data_dir(env))
        _emit(args, {"stopped": stopped}, "embedded PostgreSQL stopped" if stopped else "it was not running")
        return EXIT_OK
    if args.command == "serve" and args.remote:  # no database here: the remote API has its own
        from .remote import serve_remote
        serve_remote(args.host, args.port, args.remote, args.region)
        return EXIT_OK
    policies = load_policies(env, path=None if args.policy is None else _path(args.policy),
                             batch_size=getattr(args, "batch_size", None) if args.command == "run" else None)
    table = getattr(args, "table", None)
    policy = policies.get(table) if table else policies.policies[0]
    settings = load_settings(env)
    if args.command == "serve":
        from .localapi import serve
        serve(args.host, args.port, env, policies)
        return EXIT_OK
    db = open_database(env, settings, policy.timezone, fallback=embedded.socket_for)
    try:
        return _on_database(args, db, policies, settings)
    finally:
        db.close()


def _on_database(args: argparse.Namespace, db: Database, policies: PolicySet, settings: Settings) -> int:
    """The commands that work on the database, each given the policy its flags name."""
    table = getattr(args, "table", None)
    policy = policies.get(table) if table else policies.policies[0]
    if args.command != "status":  # every other command writes, a dry run too (its run log row)
        check_writable(db)
    if args.command == "migrate":
        return cmd_migrate(args, db, policies)
    if args.command == "seed-demo":
        return _seed(args, db, policy, settings)
    if args.command == "run":
        if args.job and not table:
            policy = policy_of(db, policies, args.job)
        elif not table and len(policies.policies) > 1:
            return cmd_run_all(args, db, policies, settings)
        return cmd_run(args, db, policy, settings)
    if args.command == "status":
        return cmd_status(args, db, policies)
    if args.command == "restore":
        if args.job and not table:
            policy = policy_of(db, policies, args.job)
        elif not table:
            policy = policies.get(None)  # --since: which table's archive must be said
        return cmd_restore(args, db, policy)
    if args.command in EXPORT_COMMANDS:
        out, human, code = EXPORT_COMMANDS[args.command](args, db, policies.get(table))
        _emit(args, out, human)
        return code
    return cmd_purge(args, db, policies.get(table))


def cmd_migrate(args: argparse.Namespace, db: Database, policies: PolicySet) -> int:
    chosen = [policies.get(args.table)] if args.table else list(policies.policies)
    reports = [{"table": p.live_table, **migration.migrate(db, p).as_dict()} for p in chosen]
    if len(reports) == 1:  # one policy: the report as it always was
        report = {k: v for k, v in reports[0].items() if k != "table"}
        _emit(args, report, "\n".join(f"{k}: {', '.join(v) or '-'}" for k, v in report.items()))
    else:
        _emit(args, {"migrated": reports}, "\n".join(f"{r['table']} {k}: {', '.join(v) or '-'}"
                                                     for r in reports for k, v in r.items() if k != "table"))
    return EXIT_OK


def _seed(args: argparse.Namespace, db: Database, policy: Policy, settings: Settings) -> int:
    if not 1 <= args.customers <= 50_000_000:
        raise ConfigError("--customers must be between 1 and 50,000,000")
    demo.create_tables(db, policy)
    migration.migrate(db, policy)
    added = 0
    eligible = None
    if args.top_up:
        eligible = Archiver(db, policy, settings).count_eligible()
    if not args.top_up or not eligible:
        added = demo.seed(db, policy, args.customers, related=not args.no_related)
    migration.migrate(db, policy)  # indexes on the related tables' foreign keys
    live = db.scalar(f"SELECT count(*) FROM {qualified(policy.schema_name, policy.live_table)}")
    out = {"added": added, "live_rows": int(live), "eligible_before": eligible}
    human = f"added {added} demo customers; {live} rows in {policy.live_table}" if added else \
        f"{eligible} rows already eligible: no demo customers added"
    _emit(args, out, human)
    return EXIT_OK


def _path(text: str) -> Any:
    from pathlib import Path
    return Path(text)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
        return _dispatch(args)
    except KeyboardInterrupt:
        return _fail(as_json, "interrupted", EXIT_FAILED)
    except AlreadyRunningError as exc:
        return _fail(as_json, str(exc), EXIT_BUSY, job_id=exc.job_id)
    except (UsageError, ConfigError, SchemaError, ServerRefusedError, InvalidJobIdError, JobNotFoundError,
            JobStateError) as exc:
        return _fail(as_json, str(exc), EXIT_USAGE)
    except ArchiverError as exc:
        return _fail(as_json, str(exc), EXIT_FAILED)
    except Exception as exc:  # noqa: BLE001 - a bug: its type only, as its text may quote data
        code = sqlstate(exc)
        return _fail(as_json, f"unexpected {type(exc).__name__}{f' (SQLSTATE {code})' if code else ''}",
                     EXIT_FAILED)


def _fail(as_json: bool, message: str, code: int, **extra: Any) -> int:
    print(f"archiver: error: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": message, "exit_code": code, **extra}))
    return code


if __name__ == "__main__":
    sys.exit(main())
