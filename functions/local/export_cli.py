"""The ``archiver`` commands of the archive's cold life: export, verify, erase, restore --from.

Kept apart from cli.py, which maps their errors to exit codes and prints what they return:
each command returns (JSON object, human text, exit code).
"""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from archiver import slack
from archiver.cold_restore import restore_from
from archiver.cold_storage import open_storage
from archiver.config import DEFAULT_PURGE_AFTER_DAYS, Policy
from archiver.db import Database
from archiver.erasure import ERASURE_KEY_ENV, ErasureKey, erase, key_from_secret
from archiver.exceptions import ConfigError
from archiver.export import DEFAULT_ROWS_PER_FILE, check_table, export, parse_days, verify_export

Outcome = tuple[dict[str, Any], str, int]


def add_cold_restore_args(rs: argparse.ArgumentParser) -> None:
    rs.add_argument("--from", dest="from_dest", help="restore from an export: s3://bucket/prefix or a directory")
    rs.add_argument("--to", dest="to_table", choices=("archive", "live"), default="archive",
                    help="with --from: where the rows go (default archive)")


def add_export_commands(cmd: Callable[[str, str], argparse.ArgumentParser]) -> None:
    ex = cmd("export", "export archive rows past an age to Parquet (a directory or S3), then verify them")
    ex.add_argument("--table", metavar="NAME", help="the live table whose archive to export (default: the only policy)")
    ex.add_argument("--older-than", help="archived more than this long ago, e.g. 730d (default: purge_after_days)")
    ex.add_argument("--to", dest="dest", required=True, help="s3://bucket/prefix or a directory")
    ex.add_argument("--dry-run", action="store_true", help="count rows and files; write nothing")
    ex.add_argument("--rows-per-file", type=int, default=DEFAULT_ROWS_PER_FILE)
    ex.add_argument("--job", help="continue this export (default: an unfinished export to the same place)")
    vf = cmd("verify", "read an export back and check it against its manifest and the database")
    vf.add_argument("--from", dest="from_dest", required=True)
    vf.add_argument("--job", required=True, help="the export id")
    er = cmd("erase", "erase one record from the live table, the archive and every exported file")
    er.add_argument("--table", metavar="NAME", help="the live table (default: the only policy)")
    er.add_argument("--key", required=True,
                    help="the record's key; a key of several columns as a JSON array: '[1, \"2026-01-01\"]'")
    er.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    er.add_argument("--by", help="who asked (default: the user running the command)")


def cmd_export(args: argparse.Namespace, db: Database, policy: Policy) -> Outcome:
    check_table(policy, args.table)
    days = parse_days(args.older_than, policy.purge_after_days or DEFAULT_PURGE_AFTER_DAYS)
    result = export(db, policy, open_storage(args.dest), days, dry_run=args.dry_run,
                    sink=slack.local_sink(os.environ), rows_per_file=args.rows_per_file, job_id=args.job,
                    trigger="cli")
    out = result.as_dict()
    verb = "would export" if result.dry_run else "exported"
    related = "".join(f", {n} of {t}" for t, n in result.related.items())
    human = (f"{verb} {result.exported} rows{related} in {result.files} files to {args.dest}"
             + ("" if result.dry_run else f"; verified: {'yes' if result.verified else 'NO'}; "
                f"export id {result.export_id}")
             + "".join(f"\nproblem: {p}" for p in result.problems))
    return out, human, 0 if result.dry_run or result.verified else 1


def cmd_verify(args: argparse.Namespace, db: Database, policy: Policy) -> Outcome:
    problems = verify_export(db, policy, open_storage(args.from_dest), args.job, sink=slack.local_sink(os.environ))
    out = {"export_id": args.job, "verified": not problems, "problems": problems}
    human = "verified" if not problems else "NOT verified:\n" + "\n".join(problems)
    return out, human, 0 if not problems else 1


def cmd_erase(args: argparse.Namespace, db: Database, policy: Policy) -> Outcome:
    by = args.by or os.environ.get("ARCHIVER_ERASED_BY") or getpass.getuser()
    result = erase(db, policy, args.key, table=args.table, dry_run=args.dry_run, erased_by=by,
                   erasure_key=_erasure_key())
    out = result.as_dict()
    lines = [f"{'would remove' if args.dry_run else 'removed'}: "
             + ", ".join(f"{k} {v}" for k, v in result.removed.items()),
             f"exported files {'to rewrite' if args.dry_run else 'rewritten'}: {len(result.files)}"]
    return out, "\n".join(lines), 0


def _erasure_key() -> ErasureKey | None:
    """Against a deployed database, the stack's key (its secret's ARN); else the database's own."""
    def fetch(arn: str) -> str:
        from archiver import aws  # boto3: only against a deployed database

        return aws.fetch_secret(arn)

    return key_from_secret(os.environ.get(ERASURE_KEY_ENV), fetch)


def cmd_restore_from(args: argparse.Namespace, db: Database, policy: Policy, since: datetime | None) -> Outcome:
    """``restore --from``: ``since`` as cmd_restore parsed it."""
    if args.dry_run:
        raise ConfigError("--dry-run is not available with --from")
    run, result = restore_from(db, policy, open_storage(args.from_dest), export_id=args.job, since=since,
                               to=args.to_table, batch_size=args.batch_size or 1000, erasure_key=_erasure_key())
    out = {**run.as_dict(), **result.as_dict()}
    human = f"restored   {result.restored}\nconflicts  {result.conflict_count}\nrun        {run.id}"
    return out, human, 0


EXPORT_COMMANDS: dict[str, Callable[[argparse.Namespace, Database, Policy], Outcome]] = {
    "export": cmd_export, "verify": cmd_verify, "erase": cmd_erase}
