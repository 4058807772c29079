"""What the chaos tests share: the invariant check, the CLI runner, the customer-data watch and
a fault-injecting Database.

The invariant: every row the live table held before the attack exists exactly once afterwards
(live XOR archive) with the same content (an md5 of the row's original columns, taken before),
and each run's ``records_archived`` equals the archive rows carrying its job id.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from archiver import alerts, catalogue, migration
from archiver.config import Policy, Settings
from archiver.db import Database
from archiver.identifiers import qualified, quote
from archiver.observability import logger
from archiver.worker import Deps, LocalInvoker
from local import demo
from tests.api_client import ARCHIVER_BIN  # noqa: E402

from .report import ChaosReport

FINGERPRINT = "chaos_fingerprint"

# What demo.seed writes into a customer row: none of it may reach a log line or an alert.
SEEDED_VALUES = re.compile(r"Customer \d+|customer\d+@example\.mu|\+230 ?5\d{7}|POL-\d{8}")


# -- the invariant --------------------------------------------------------------------------
def _row_hash(names: Iterable[str], alias: str) -> str:
    return f"md5(ROW({', '.join(f'{alias}.{quote(n)}' for n in names)})::text)"


def seed(db: Database, policy: Policy, customers: int, related: bool = True) -> int:
    """Demo customers (and related rows), the job's schema, and the fingerprint of every row."""
    demo.seed(db, policy, customers, related=related)
    migration.migrate(db, policy)
    return fingerprint(db, policy)


def fingerprint(db: Database, policy: Policy) -> int:
    """Remember every live row's id and content hash, in the database itself."""
    shape = catalogue.live_shape(db, policy)
    live = qualified(policy.schema_name, policy.live_table)
    with db.transaction():
        db.run("SET LOCAL TimeZone = 'UTC'")  # row text of timestamptz depends on the session zone
        db.run(f"DROP TABLE IF EXISTS {FINGERPRINT}")
        db.run(f"CREATE TABLE {FINGERPRINT} AS SELECT l.{quote(shape.pk)} AS id, "
               f"{_row_hash(shape.names, 'l')} AS h FROM {live} l")
        db.run(f"ALTER TABLE {FINGERPRINT} ADD PRIMARY KEY (id)")
    return int(db.scalar(f"SELECT count(*) FROM {FINGERPRINT}"))


@dataclass
class Check:
    rows_checked: int
    lost: int
    duplicates: int
    changed: int
    live: int
    archived: int
    count_mismatches: list[tuple[str, int, int]] = field(default_factory=list)
    orphans: int = 0  # archive rows whose job is not in the run log

    def assert_intact(self) -> None:
        assert (self.lost, self.duplicates, self.changed) == (0, 0, 0), self
        assert not self.count_mismatches, f"run log disagrees with the archive: {self.count_mismatches}"
        assert self.orphans == 0, self


def verify(db: Database, policy: Policy, changed_ids: Iterable[int] = ()) -> Check:
    """Compare live + archive with the fingerprint; ``changed_ids`` were legitimately updated."""
    shape = catalogue.live_shape(db, policy)
    live = qualified(policy.schema_name, policy.live_table)
    archive = qualified(policy.schema_name, policy.archive_table)
    log = qualified(policy.schema_name, policy.log_table)
    pk = quote(shape.pk)
    db.ensure_alive()
    with db.transaction():
        db.run("SET LOCAL TimeZone = 'UTC'")
        checked, lost, dups, changed, n_live, n_arch = db.run(
            f"WITH now_rows AS MATERIALIZED ("
            f"  SELECT l.{pk} AS id, {_row_hash(shape.names, 'l')} AS h FROM {live} l"
            f"  UNION ALL SELECT a.{pk}, {_row_hash(shape.names, 'a')} FROM {archive} a)"
            f" SELECT (SELECT count(*) FROM {FINGERPRINT}),"
            f"  (SELECT count(*) FROM {FINGERPRINT} f WHERE NOT EXISTS (SELECT 1 FROM now_rows n WHERE n.id = f.id)),"
            f"  (SELECT count(*) FROM (SELECT id FROM now_rows GROUP BY id HAVING count(*) > 1) d),"
            f"  (SELECT count(*) FROM {FINGERPRINT} f JOIN now_rows n ON n.id = f.id"
            f"     WHERE n.h <> f.h AND NOT (f.id = ANY(CAST(:skip AS bigint[])))),"
            f"  (SELECT count(*) FROM {live}), (SELECT count(*) FROM {archive})",
            skip=sorted(set(changed_ids)))[0]
    mismatches = [(str(j), int(a), int(n)) for j, a, n in db.run(
        f"SELECT j.job_id, j.records_archived, count(a.{pk}) FROM {log} j"
        f" LEFT JOIN {archive} a ON a.archive_job_id = j.job_id"
        " WHERE j.kind = 'archive' AND NOT j.dry_run GROUP BY j.job_id, j.records_archived"
        f" HAVING j.records_archived <> count(a.{pk})")]
    orphans = int(db.scalar(f"SELECT count(*) FROM {archive} a WHERE NOT EXISTS"
                            f" (SELECT 1 FROM {log} j WHERE j.job_id = a.archive_job_id)"))
    return Check(int(checked), int(lost), int(dups), int(changed), int(n_live), int(n_arch), mismatches, orphans)


def record(report: ChaosReport, attack: str, check: Check, runs: int, note: str | None = None) -> None:
    report.record(attack, runs=runs, rows_checked=check.rows_checked, lost=check.lost,
                  duplicates=check.duplicates, changed=check.changed, note=note)


def eligible_left(db: Database, policy: Policy, settings: Settings) -> int:
    """Rows a run started now would archive."""
    from archiver.eligibility import pin_cutoffs
    from archiver.engine import Archiver

    archiver = Archiver(db, policy, settings)
    stmts = archiver.statements(pin_cutoffs(db, policy))
    return int(db.scalar(stmts.count, **stmts.params))


def jobs(db: Database, policy: Policy) -> list[dict[str, Any]]:
    return db.rows(f"SELECT * FROM {qualified(policy.schema_name, policy.log_table)} ORDER BY id")


# -- customer data must not leak ------------------------------------------------------------
class LeakWatch:
    """Collects every log line, CLI output and alert of a test, to search for customer data."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []
        self.sinks: list[alerts.RecordingSink] = []
        self._handler: logging.Handler | None = None

    def add(self, source: str, text: str) -> None:
        self.texts.extend((source, line) for line in text.splitlines() if line.strip())

    def sink(self) -> alerts.RecordingSink:
        sink = alerts.RecordingSink()
        self.sinks.append(sink)
        return sink

    def lines(self) -> list[tuple[str, str]]:
        out = list(self.texts)
        for sink in self.sinks:
            out += [("alert", json.dumps(a.as_dict(), default=str) + "\n" + a.subject + "\n" + a.body)
                    for a in sink.alerts]
        return out

    def leaks(self) -> list[tuple[str, str]]:
        return [(src, line) for src, line in self.lines() if SEEDED_VALUES.search(line)]

    def install(self) -> None:
        watch = self

        class _Capture(logging.Handler):
            def emit(self, rec: logging.LogRecord) -> None:
                watch.add("log", self.format(rec))

        handler = _Capture(logging.DEBUG)
        handler.setFormatter(logger.registered_formatter)  # the exact JSON line Lambda would print
        logging.getLogger(logger.name).addHandler(handler)
        self._handler = handler

    def uninstall(self) -> None:
        if self._handler is not None:
            logging.getLogger(logger.name).removeHandler(self._handler)


# -- the CLI as a subprocess --------------------------------------------------------------------
def cli_env(env: dict[str, str], **overrides: str) -> dict[str, str]:
    """The parent's environment without archiver settings, then the test's."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("ARCHIVER_", "POWERTOOLS_")) and k not in ("DATABASE_URL", "LOG_LEVEL")}
    return {**base, **env, **overrides}


def run_cli(env: dict[str, str], *args: str, watch: LeakWatch | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(ARCHIVER_BIN), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if watch is not None:
        watch.add("cli-stdout", proc.stdout)
        watch.add("cli-stderr", proc.stderr)
    return proc


def start_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(ARCHIVER_BIN), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# -- in-process workers -------------------------------------------------------------------------
def make_deps(db: Database, policy: Policy, settings: Settings, sink: alerts.AlertSink, **kw: Any) -> Deps:
    return Deps(db=db, policy=policy, settings=settings, invoker=LocalInvoker(), alerts=sink, **kw)


def another(db: Database, application_name: str = "archiver", **changes: Any) -> Database:
    """A new connection to the same database (another worker, the application, a checker)."""
    return Database(replace(db.params, application_name=application_name, **changes), db._lock_timeout_ms,
                    db._statement_timeout_ms)


class ScriptedDatabase(Database):
    """A Database that calls ``before(sql)`` ahead of every statement: the fault injector.

    ``before`` may advance a fake clock, raise, or terminate the connection from outside.
    """

    def __init__(self, base: Database, before: Callable[[str], None] | None = None) -> None:
        super().__init__(base.params, base._lock_timeout_ms, base._statement_timeout_ms)
        self.before = before

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        if self.before is not None:
            self.before(sql)
        return super().run(sql, **params)

