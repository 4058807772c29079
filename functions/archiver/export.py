"""Export of old archive rows to cold storage as Parquet, a manifest per export, and its verification.

An export is a run in the run log (``kind = 'export'``) with a pinned cutoff on ``archived_at``.
It writes one file per month of ``archived_at`` (UTC) and per ``rows_per_file`` rows, ordered by
key; after each file, one transaction records the file in the run and its rows in the ledger
(``<archive>_exported``: key, archived_at, export id, file). The ledger makes exports resumable
and idempotent: a row in it is never exported again, and an interrupted or failed export is
continued, under the same id, by the next ``export``. At the end the manifest is written, every
file is read back and checked against the manifest and against the database; only then is the
export marked verified, and only rows of verified exports may be purged (``purge_gate``).

Checksums are computed in Python over a canonical form of each row (the same from the
database's values and from Parquet's), one 128-bit digest per row, summed modulo 2**128, so a
file's or an export's checksum does not depend on the order of its rows.

pyarrow is imported only here, inside the functions that need it: the archive function's asset
and the CLI work without it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from functools import cached_property
from typing import Any

from .alerts import Alert, AlertSink, LogSink
from .catalogue import Column, TableShape, columns, live_shape, table_exists
from .cold_storage import ColdStorage
from .config import MAX_DAYS, Policy
from .db import Database, describe_error
from .exceptions import ConfigError, JobStateError, LeaseLostError, StorageError
from .identifiers import qualified, quote, validate
from .jobs import Job, JobStore
from .migration import (
    MigrationReport,
    ledger_key_columns,
    ledger_name,
    migrate_export_ledgers,
    related_archive_name,
    related_ledger_name,
)
from .observability import logger
from .states import ACTIVE_STATES, RunState, sql_state

FORMAT = "pg-archiver-export/1"
DEFAULT_ROWS_PER_FILE = 100_000
MOD = 2**128

# PostgreSQL type (format_type without modifiers) -> kind of Parquet column.
_SCALAR = {"smallint": "int16", "integer": "int32", "bigint": "int64", "real": "float64",
           "double precision": "float64", "boolean": "bool", "text": "string", "character varying": "string",
           "character": "string", "date": "date", "bytea": "binary", "timestamp with time zone": "timestamptz",
           "timestamp without time zone": "timestamp"}
_LISTABLE = ("int16", "int32", "int64", "float64", "bool", "string")
_ATHENA = {"int16": "smallint", "int32": "int", "int64": "bigint", "float64": "double", "bool": "boolean",
           "string": "string", "text": "string", "json": "string", "date": "date", "binary": "binary",
           "timestamptz": "timestamp", "timestamp": "timestamp"}


@dataclass(frozen=True)
class ColumnSpec:
    """How one archive column is exported: Parquet kind, and the SQL that reads it."""

    name: str
    pg_type: str
    kind: str  # a key of _ATHENA, "decimal", or "list:<kind>"
    precision: int = 0
    scale: int = 0

    def select_sql(self, alias: str = "a") -> str:
        col = f"{alias}.{quote(self.name)}"
        # json(b), unconstrained numeric and types Parquet has no match for travel as PostgreSQL's text.
        if self.kind in ("text", "json"):
            return f"CAST({col} AS text)"
        # Timestamps as microseconds since the epoch: pg8000 parses their text with strptime, which
        # took most of an export's time (profiled); Arrow takes the integers as they are.
        if self.kind in ("timestamptz", "timestamp"):
            return f"CAST(extract(epoch FROM {col}) * 1000000 AS bigint)"
        return col

    def arrow_type(self) -> Any:
        import pyarrow as pa

        if self.kind.startswith("list:"):
            return pa.list_(_arrow_scalar(self.kind[5:]))
        if self.kind == "decimal":
            return pa.decimal128(self.precision, self.scale)
        return _arrow_scalar(self.kind)

    @property
    def athena_type(self) -> str:
        if self.kind.startswith("list:"):
            return f"array<{_ATHENA[self.kind[5:]]}>"
        if self.kind == "decimal":
            return f"decimal({self.precision},{self.scale})"
        return _ATHENA[self.kind]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pg_type": self.pg_type, "parquet": self.kind, "athena_type": self.athena_type}


def _arrow_scalar(kind: str) -> Any:
    import pyarrow as pa

    return {"int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(), "float64": pa.float64(),
            "bool": pa.bool_(), "string": pa.string(), "text": pa.string(), "json": pa.string(),
            "date": pa.date32(), "binary": pa.binary(), "timestamptz": pa.timestamp("us", tz="UTC"),
            "timestamp": pa.timestamp("us")}[kind]


def column_spec(name: str, pg_type: str) -> ColumnSpec:
    m = re.fullmatch(r"numeric\((\d+),(\d+)\)", pg_type)
    if m and int(m.group(1)) <= 38:
        return ColumnSpec(name, pg_type, "decimal", int(m.group(1)), int(m.group(2)))
    if pg_type in ("json", "jsonb"):
        return ColumnSpec(name, pg_type, "json")
    base = re.sub(r"\(\d+(,\d+)?\)", "", pg_type)
    if base.endswith("[]"):
        elem = _SCALAR.get(base[:-2])
        return ColumnSpec(name, pg_type, f"list:{elem}" if elem in _LISTABLE else "text")
    return ColumnSpec(name, pg_type, _SCALAR.get(base, "text"))


# -- checksums ----------------------------------------------------------------------------
_EPOCH, _EPOCH_NAIVE, _MICRO = datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 1), timedelta(microseconds=1)
_AS_IS = frozenset((type(None), bool, int, str))


def micros_to_datetime(us: int) -> datetime:
    return _EPOCH + us * _MICRO


def _canon(v: Any) -> Any:
    if type(v) in _AS_IS:
        return v
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime):  # as the database hands them over: microseconds since the epoch
        return (v - (_EPOCH if v.tzinfo else _EPOCH_NAIVE)) // _MICRO
    if isinstance(v, date | dtime):
        return v.isoformat()
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).hex()
    if isinstance(v, list | tuple):
        return [_canon(x) for x in v]
    return str(v)


def row_digest(row: Sequence[Any]) -> int:
    text = json.dumps([_canon(v) for v in row], ensure_ascii=False, separators=(",", ":"))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "big")


def checksum(digests: Iterable[int]) -> str:
    return f"{sum(digests) % MOD:032x}"


# -- Parquet ------------------------------------------------------------------------------
def to_parquet(specs: Sequence[ColumnSpec], rows: Sequence[Sequence[Any]], meta: dict[str, Any]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = [pa.array([r[i] for r in rows], type=s.arrow_type()) for i, s in enumerate(specs)]
    schema = pa.schema([pa.field(s.name, s.arrow_type()) for s in specs],
                       metadata={"pg_archiver": json.dumps(meta)})
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), buf, compression="zstd")
    return buf.getvalue()


def from_parquet(data: bytes, names: Sequence[str]) -> list[tuple[Any, ...]]:
    """Rows of a Parquet file, columns in ``names`` order; raises on a damaged file."""
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    cols = [table.column(n).to_pylist() for n in names]
    return list(zip(*cols, strict=True)) if cols else []


# -- names ----------------------------------------------------------------------------------
def manifest_key(table: str, export_id: str) -> str:
    return f"{table}/manifests/{export_id}.json"


def data_key(table: str, month: str, export_id: str, seq: int) -> str:
    return f"{table}/data/month={month}/{export_id}-{seq:05d}.parquet"


def ensure_ledger(db: Database, policy: Policy) -> str:
    """The ledgers of exported archive rows (``migrate`` creates them; an older schema gets them here)."""
    if not table_exists(db, policy.schema_name, ledger_name(policy)) or (
            policy.related_mode == "move" and not table_exists(db, policy.schema_name, related_ledger_name(policy))):
        migrate_export_ledgers(db, policy, live_shape(db, policy), MigrationReport())
    return qualified(policy.schema_name, ledger_name(policy))


def ledger_match(shape: TableShape, ledger: str, alias: str) -> str:
    """The ledger row ``ledger`` is of the archive row ``alias``: same key, archived at the same time."""
    keys = ", ".join(f"{ledger}.{quote(k)}" for k in ledger_key_columns(len(shape.key)))
    return f"({keys}) = ({shape.key_list(alias)}) AND {ledger}.archived_at = {alias}.archived_at"


def _in_verified_export(db: Database, policy: Policy, ledger: str, match: str) -> str:
    """SQL: a ledger row matching ``match`` (on alias ``l``) belongs to a verified export. FALSE without the ledger."""
    if not table_exists(db, policy.schema_name, ledger):
        return "false"
    return (f"EXISTS (SELECT 1 FROM {qualified(policy.schema_name, ledger)} l"
            f" JOIN {qualified(policy.schema_name, policy.log_table)} e ON e.job_id = l.export_id"
            f" AND e.kind = 'export' AND e.state = {sql_state(RunState.SUCCEEDED)} AND e.options->>'verified' = 'true'"
            f" WHERE {match})")


def purge_gate(db: Database, policy: Policy, alias: str, shape: TableShape) -> str:
    """SQL condition on archive rows ``alias``: the row is in a verified export."""
    return _in_verified_export(db, policy, ledger_name(policy), ledger_match(shape, "l", alias))


def related_purge_gate(db: Database, policy: Policy, alias: str, schema: str, table: str) -> str:
    """SQL condition on rows ``alias`` of the related archive ``schema.table``: their group (the rows one
    archive batch moved) is in a verified export."""
    return _in_verified_export(db, policy, related_ledger_name(policy), _group_match(schema, table, "l", alias))


def _group_match(schema: str, table: str, ledger: str, alias: str) -> str:
    name = f"{validate(schema)}.{validate(table)}"  # identifiers: safe as a literal
    return (f"{ledger}.archive_table = '{name}' AND {ledger}.archive_job_id = {alias}.archive_job_id"
            f" AND {ledger}.archived_at = {alias}.archived_at")


def archive_specs(db: Database, policy: Policy, table: str | None = None,
                  schema: str | None = None) -> list[ColumnSpec]:
    cols: tuple[Column, ...] = columns(db, schema or policy.schema_name, table or policy.archive_table)
    return [column_spec(c.name, c.type) for c in cols]


def check_table(policy: Policy, table: str | None) -> str:
    if table not in (None, policy.archive_table, policy.live_table):
        raise ConfigError(f"--table {table!r}: this policy exports {policy.archive_table} (the archive of "
                          f"{policy.live_table}); use --policy for another table")
    return policy.archive_table


def parse_days(text: str | None, default: int) -> int:
    if text is None:
        return default
    m = re.fullmatch(r"(\d+)d?", text.strip())
    if not m or not 1 <= int(m.group(1)) <= MAX_DAYS:
        raise ConfigError(f"--older-than: expected days in 1..{MAX_DAYS} like 730d, got {text!r}")
    return int(m.group(1))


# -- the tables an export writes -----------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    """One table of an export: the policy's archive table, its rows told apart by the key (``key``),
    or, in move mode, a related archive table (``key`` empty), whose rows (they may have no key)
    go by group: the rows one archive batch moved, ``(archive_job_id, archived_at)``, never split
    across files."""

    schema: str
    table: str
    source: str  # the table the rows were archived from
    specs: tuple[ColumnSpec, ...]
    key: tuple[Column, ...] = ()

    @property
    def name(self) -> str:
        return qualified(self.schema, self.table)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def select(self) -> str:
        """Every column as exported, then (as text, for the ledger) the key or group, and archived_at."""
        extra = [f"CAST(a.{quote(c.name)} AS text)" for c in self.key] or ["CAST(a.archive_job_id AS text)"]
        return ", ".join([*(s.select_sql() for s in self.specs), *extra, "CAST(a.archived_at AS text)"])

    @property
    def order(self) -> str:
        return ", ".join(f"a.{quote(c.name)}" for c in self.key) or "a.archived_at, a.archive_job_id"

    @cached_property
    def key_at(self) -> tuple[int, ...]:
        return tuple(self.names.index(c.name) for c in self.key)

    def key_of(self, row: Sequence[Any]) -> str:
        """A row's key (file or database row), comparable across the two."""
        return json.dumps([_canon(row[i]) for i in self.key_at])

    def meta(self) -> dict[str, Any]:
        return {"schema": self.schema, "table": self.table, "source_table": self.source,
                "columns": [s.as_dict() for s in self.specs]}


def related_parts(db: Database, policy: Policy) -> list[Part]:
    """In move mode, the related archive tables that exist, parents first."""
    if policy.related_mode != "move":
        return []
    from .related import related_graph  # the graph only where move mode needs it

    out = []
    for schema, table in related_graph(db, policy).tables:
        backup = related_archive_name(policy, table)
        if table_exists(db, schema, backup):
            out.append(Part(schema, backup, table, tuple(archive_specs(db, policy, backup, schema))))
    return out


# -- export -----------------------------------------------------------------------------------
@dataclass
class ExportResult:
    export_id: str | None
    state: str
    exported: int = 0
    files: int = 0
    verified: bool = False
    done: bool = True
    dry_run: bool = False
    problems: list[str] = field(default_factory=list)
    manifest: str | None = None
    related: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"export_id": self.export_id, "state": self.state, "exported": self.exported, "files": self.files,
                "verified": self.verified, "done": self.done, "dry_run": self.dry_run,
                "problems": self.problems, "manifest": self.manifest, "related": self.related}


def _files(job: Job) -> list[dict[str, Any]]:
    """Every file of an export: the archive table's, then the related tables' (each names its table)."""
    return list(job.options.get("files", [])) + list(job.options.get("related_files", []))


class Exporter:
    """Export, manifest and verification of one policy's archive table (and, in move mode, its
    related archive tables) to one destination."""

    def __init__(self, db: Database, policy: Policy, storage: ColdStorage, *, sink: AlertSink | None = None,
                 rows_per_file: int = DEFAULT_ROWS_PER_FILE) -> None:
        if not 1 <= rows_per_file <= 10_000_000:
            raise ConfigError("--rows-per-file must be between 1 and 10,000,000")
        self.db = db
        self.policy = policy
        self.storage = storage
        self.sink = sink or LogSink()
        self.rows_per_file = rows_per_file
        self.jobs = JobStore(db, policy)
        self.table = policy.archive_table
        self.archive = qualified(policy.schema_name, policy.archive_table)
        self.shape = live_shape(db, policy)
        self.main = Part(policy.schema_name, policy.archive_table, policy.live_table,
                         tuple(archive_specs(db, policy)), self.shape.key)
        if "archived_at" not in self.main.names:
            raise ConfigError(f"{self.table} has no archived_at column: not an archive table")
        self.related = related_parts(db, policy)
        self.parts = [self.main, *self.related]
        self.ledger = qualified(policy.schema_name, ledger_name(policy))
        self.related_ledger = qualified(policy.schema_name, related_ledger_name(policy))

    # -- run life -------------------------------------------------------------------------------
    def _unfinished(self) -> Job | None:
        """The latest export to this destination that is neither verified nor abandoned by its worker."""
        return self.jobs.unfinished_export(self.storage.url)

    def _reopen(self, job: Job, owner: str) -> Job:
        """Continue an export: take over a free lease, or reopen one that failed."""
        reopened = self.jobs.reopen_export(job.id, owner)
        if reopened is None:
            raise JobStateError(job.id, job.state, "continue (its worker holds the lease)")
        return reopened

    def begin(self, older_than_days: int, *, trigger: str = "manual", job_id: str | None = None) -> tuple[Job, str]:
        """The export run to work on: the one named, an unfinished one to this destination, or a new one."""
        ensure_ledger(self.db, self.policy)
        owner = f"export-{time.monotonic_ns()}"
        job = self.jobs.get(job_id) if job_id else self._unfinished()
        if job is not None:
            if job.kind != "export":
                raise ConfigError(f"job {job.id} is a {job.kind} run, not an export")
            logger.info("continuing export", extra={"export_id": job.id})
            return self._reopen(job, owner), owner
        cutoff = self.db.scalar("SELECT now() - make_interval(days => :d)", d=older_than_days)
        job = self.jobs.create(kind="export", batch_size=self.rows_per_file, trigger=trigger, cutoff=cutoff,
                               options={"dest": self.storage.url, "table": self.table,
                                        "older_than_days": older_than_days, "files": [], "related_files": [],
                                        "related": [p.meta() for p in self.related]})
        claimed = self.jobs.claim(job.id, owner, 3600, 1)
        assert claimed is not None
        return claimed, owner

    def _due(self, part: Part, alias: str) -> str:
        """Rows of ``part`` not exported yet (and, of a related table, moved by this policy's runs)."""
        if part.key:
            return f"NOT EXISTS (SELECT 1 FROM {self.ledger} l WHERE {ledger_match(self.shape, 'l', alias)})"
        own = validate(self.policy.schema_name) + "." + validate(self.policy.live_table)
        return (f"{alias}.archive_job_id IN (SELECT job_id FROM {self.jobs.log} WHERE policy_key = '{own}')"
                f" AND NOT EXISTS (SELECT 1 FROM {self.related_ledger} l"
                f" WHERE {_group_match(part.schema, part.table, 'l', alias)})")

    def dry_run(self, older_than_days: int) -> ExportResult:
        cutoff = self.db.scalar("SELECT now() - make_interval(days => :d)", d=older_than_days)
        ledgers = table_exists(self.db, self.policy.schema_name, ledger_name(self.policy)) and (
            not self.related or table_exists(self.db, self.policy.schema_name, related_ledger_name(self.policy)))
        out = ExportResult(None, "dry_run", dry_run=True)
        for part in self.parts:
            due = self._due(part, "a") if ledgers else "true"
            n, months = self.db.run(
                f"SELECT count(*), count(DISTINCT to_char(a.archived_at AT TIME ZONE 'UTC', 'YYYY-MM'))"
                f" FROM {part.name} a WHERE a.archived_at < :c AND {due}", c=cutoff)[0]
            out.files += int(months)
            if part is self.main:
                out.exported = int(n)
            else:
                out.related[part.table] = int(n)
        return out

    def run(self, job: Job, owner: str, *, time_left: Callable[[], float] | None = None,
            max_files: int | None = None) -> ExportResult:
        """Write the remaining files, then the manifest, then verify. Pauses (done=False) when
        ``time_left()`` (seconds) runs low or after ``max_files``, keeping the run for the next hop."""
        written = 0
        assert job.cutoff is not None  # an export is created with its cutoff
        try:
            for part in self.parts:
                for month in self._months(part, job.cutoff):
                    while True:
                        if (max_files is not None and written >= max_files) or (time_left and time_left() < 60):
                            self._pause(job.id, owner)
                            return self._result(job.id, RunState.RUNNING, done=False)
                        n = self._write_chunk(job, owner, part, month)
                        written += n > 0
                        if n < self.rows_per_file:
                            break
            if job.hop > 1:  # continued: files an earlier attempt wrote may be damaged or missing
                self._repair(job.id)
            self._write_manifest(job.id)
        except LeaseLostError:  # a duplicate or later hop took the export over: it carries on, not us
            logger.warning("export taken over by another worker", extra={"export_id": job.id})
            return self._result(job.id, "superseded")
        except StorageError as exc:
            return self._failed(job.id, owner, str(exc))
        except Exception as exc:
            self._failed(job.id, owner, describe_error(exc))
            raise
        problems = self.verify(job.id)
        if problems:
            return self._failed(job.id, owner, f"verification failed: {'; '.join(problems[:5])}", problems)
        current = self.jobs.get(job.id)
        files = _files(current)
        done = self.jobs.finish(job.id, owner, RunState.SUCCEEDED,
                                f"exported and verified {current.records_archived} rows in {len(files)} files",
                                result={"exported": current.records_archived, "files": len(files), "verified": True,
                                        "dest": self.storage.url})
        assert done is not None
        logger.info("export verified", extra={"export_id": job.id, "rows": current.records_archived})
        return self._result(job.id, RunState.SUCCEEDED)

    def _result(self, export_id: str, state: str, done: bool = True, problems: list[str] | None = None) -> ExportResult:
        """``state``: the export run's ``RunState``, or "superseded" (another export took over its rows)."""
        job = self.jobs.get(export_id)
        related: dict[str, int] = {}
        for entry in job.options.get("related_files", []):
            related[entry["table"]] = related.get(entry["table"], 0) + int(entry["rows"])
        main_rows = sum(int(f["rows"]) for f in job.options.get("files", []))
        return ExportResult(export_id, state, exported=main_rows, files=len(_files(job)),
                            verified=job.options.get("verified") is True, done=done, problems=problems or [],
                            manifest=manifest_key(self.table, export_id) if _files(job) else None, related=related)

    def _pause(self, export_id: str, owner: str) -> None:
        self.jobs.release(export_id, owner)

    def _failed(self, export_id: str, owner: str, error: str, problems: list[str] | None = None) -> ExportResult:
        self.db.ensure_alive()
        job = self.jobs.finish(export_id, owner, RunState.FAILED,
                               message="export failed; run export again to continue it",
                               error=error[:2000]) or self.jobs.get(export_id)
        self.sink.send(Alert(kind="failure", job_id=export_id, state=job.state,
                             summary=f"export failed, nothing purged: {error}"[:300],
                             counts={"exported": job.records_archived, "files": len(_files(job))}))
        logger.error("export failed", extra={"export_id": export_id, "error": error[:300]})
        return self._result(export_id, RunState.FAILED, problems=problems or [error])

    def _months(self, part: Part, cutoff: datetime) -> list[str]:
        return [r[0] for r in self.db.run(
            f"SELECT DISTINCT to_char(a.archived_at AT TIME ZONE 'UTC', 'YYYY-MM') FROM {part.name} a"
            f" WHERE a.archived_at < :c AND {self._due(part, 'a')} ORDER BY 1", c=cutoff)]

    def _chunk(self, part: Part, job: Job, month: str) -> list[list[Any]]:
        """The next file's rows: ``rows_per_file`` rows in key order, or, of a related table, whole
        groups in time order, as many as start within ``rows_per_file`` rows."""
        lo = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
        hi = lo.replace(year=lo.year + lo.month // 12, month=lo.month % 12 + 1)
        where = "a.archived_at < :c AND a.archived_at >= :lo AND a.archived_at < :hi AND {due}"
        if part.key:
            sql = (f"SELECT {part.select} FROM {part.name} a WHERE {where.format(due=self._due(part, 'a'))}"
                   f" ORDER BY {part.order} LIMIT :n")
        else:
            groups = (f"SELECT a.archive_job_id AS j, a.archived_at AS t, count(*) AS n FROM {part.name} a"
                      f" WHERE {where.format(due=self._due(part, 'a'))} GROUP BY 1, 2")
            sql = (f"SELECT {part.select} FROM {part.name} a WHERE (a.archive_job_id, a.archived_at) IN ("
                   f"SELECT j, t FROM (SELECT j, t, sum(n) OVER (ORDER BY t, j) - n AS before FROM ({groups}) g) w"
                   f" WHERE before < :n) ORDER BY {part.order}")
        return self.db.run(sql, c=job.cutoff, lo=lo, hi=hi, n=self.rows_per_file)

    def _write_chunk(self, job: Job, owner: str, part: Part, month: str) -> int:
        rows = self._chunk(part, job, month)
        if not rows:
            return 0
        width = len(part.specs)
        data, ids = [r[:width] for r in rows], [r[width:] for r in rows]
        current = self.jobs.get(job.id)
        key = data_key(part.table, month, job.id, len(_files(current)))
        entry = self._put_file(part, key, month, job.id, data)
        with self.db.transaction():
            if part.key:
                keys = ledger_key_columns(len(part.key))
                arrays = ", ".join(f"CAST(:k{i} AS text[])" for i in range(len(keys) + 1))
                casts = ", ".join(f"CAST(u.k{i} AS {c.type})" for i, c in enumerate(part.key))
                self.db.run(f"INSERT INTO {self.ledger} ({', '.join(quote(k) for k in keys)}, archived_at, export_id,"
                            f" file) SELECT {casts}, CAST(u.k{len(keys)} AS timestamptz), CAST(:e AS uuid), :f"
                            f" FROM unnest({arrays}) u({', '.join(f'k{i}' for i in range(len(keys) + 1))})",
                            e=job.id, f=key, **{f"k{i}": [r[i] for r in ids] for i in range(len(keys) + 1)})
            else:
                groups = sorted({(r[0], r[1]) for r in ids})
                self.db.run(f"INSERT INTO {self.related_ledger} (archive_table, archive_job_id, archived_at, export_id,"
                            " file) SELECT :t, CAST(u.j AS uuid), CAST(u.t AS timestamptz), CAST(:e AS uuid), :f"
                            " FROM unnest(CAST(:js AS text[]), CAST(:ts AS text[])) u(j, t)",
                            t=f"{part.schema}.{part.table}", e=job.id, f=key,
                            js=[g[0] for g in groups], ts=[g[1] for g in groups])
            if not self.jobs.record_export_file(job.id, owner, entry, len(rows) if part.key else 0,
                                                "files" if part.key else "related_files"):
                raise LeaseLostError(f"export {job.id} is no longer leased to this worker")
        return len(rows)

    def _put_file(self, part: Part, key: str, month: str, export_id: str,
                  rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
        data = to_parquet(part.specs, rows, {"export_id": export_id, "table": part.table, "format": FORMAT})
        self.storage.put(key, data)
        entry = {"key": key, "month": month, "rows": len(rows), "bytes": len(data),
                 "checksum": checksum(row_digest(r) for r in rows)}
        return entry if part.key else {"table": part.table, **entry}

    def _part_of(self, entry: dict[str, Any]) -> Part | None:
        table = entry.get("table", self.table)
        return next((p for p in self.parts if p.table == table), None)

    def _db_rows(self, part: Part, export_id: str, key: str) -> list[list[Any]]:
        """The rows still in the database that the ledger puts in file ``key`` of the export."""
        if part.key:
            ledger, match = self.ledger, ledger_match(self.shape, "l", "a")
        else:
            ledger, match = self.related_ledger, _group_match(part.schema, part.table, "l", "a")
        width = len(part.specs)
        return [r[:width] for r in self.db.run(
            f"SELECT {part.select} FROM {part.name} a JOIN {ledger} l ON {match}"
            f" WHERE l.export_id = CAST(:e AS uuid) AND l.file = :f ORDER BY {part.order}", e=export_id, f=key)]

    def _repair(self, export_id: str) -> None:
        """Files of an export being continued that do not read back as recorded are written again
        from the database (their rows are still in the archive: nothing was purged on their strength)."""
        job = self.jobs.get(export_id)
        for field_name in ("files", "related_files"):
            files = job.options.get(field_name, [])
            changed = False
            for i, entry in enumerate(files):
                part = self._part_of(entry)
                if part is None or not self._read_checked(part, entry)[1]:
                    continue
                rows = self._db_rows(part, export_id, entry["key"])
                if len(rows) != entry["rows"]:
                    continue  # rows gone from the archive: verification will say so
                files[i] = self._put_file(part, entry["key"], entry["month"], export_id, rows)
                changed = True
                logger.warning("export file rewritten", extra={"export_id": export_id, "file": entry["key"]})
            if changed:
                self.jobs.record_export_files(export_id, files, field=field_name)

    def _write_manifest(self, export_id: str) -> None:
        job = self.jobs.get(export_id)
        if not _files(job):
            return
        doc = manifest(job, self.policy, self.main.specs, self.shape.key_names)
        self.storage.put(manifest_key(self.table, export_id), json.dumps(doc, indent=1).encode())

    # -- verification ----------------------------------------------------------------------------
    def _read_checked(self, part: Part, entry: dict[str, Any]) -> tuple[Counter[int], list[str]]:
        """The file's rows' digests, and what is wrong with the file against its manifest entry."""
        try:
            rows = from_parquet(self.storage.get(entry["key"]), part.names)
        except StorageError as exc:
            return Counter(), [f"file missing or unreadable: {exc}"]
        except Exception as exc:  # noqa: BLE001 - any decoding error means a damaged file
            return Counter(), [f"file {entry['key']} is damaged ({type(exc).__name__})"]
        digests = Counter(row_digest(r) for r in rows)
        unique = not part.key or len({part.key_of(r) for r in rows}) == len(rows)
        if len(rows) != entry["rows"] or not unique or checksum(digests.elements()) != entry["checksum"]:
            return Counter(), [f"file {entry['key']}: {len(rows)} rows or their checksum differ from the manifest"]
        return digests, []

    def verify(self, export_id: str) -> list[str]:
        """Problems found (none: the export is verified). Reads every file back; compares with the
        manifest in storage, the run log and the database rows still in the archive."""
        job = self.jobs.get(export_id)
        problems: list[str] = []
        if not _files(job):  # nothing was due: nothing to check, and no manifest was written
            self._mark(export_id, True)
            return []
        try:
            stored = json.loads(self.storage.get(manifest_key(self.table, export_id)))
        except (StorageError, ValueError) as exc:
            stored, problems = {}, [f"manifest missing or unreadable ({type(exc).__name__})"]
        if stored and _manifest_summary(stored) != _manifest_summary(manifest(job, self.policy, (), ())):
            problems.append("the manifest disagrees with the run log")
        for entry in _files(job):
            part = self._part_of(entry)
            if part is None:
                problems.append(f"file {entry['key']}: its table {entry.get('table')} is gone from the database")
                continue
            in_file, found = self._read_checked(part, entry)
            problems += found
            if found:
                continue
            # Every row the database still holds for the file is in it, with the same content (rows
            # purged or erased since are not in the database any more).
            in_db = Counter(row_digest(r) for r in self._db_rows(part, export_id, entry["key"]))
            if in_db - in_file:
                problems.append(f"file {entry['key']} differs from the archive rows it holds")
        self._mark(export_id, not problems)
        return problems

    def _mark(self, export_id: str, verified: bool) -> None:
        self.jobs.record_verification(export_id, verified)


def _manifest_summary(doc: dict[str, Any]) -> list[Any]:
    """What a stored manifest must agree on with the run log: every file's key, rows and checksum,
    the totals, per table."""
    def files(d: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(f["key"], f["rows"], f["checksum"]) for f in d.get("files", [])]

    return [files(doc), doc.get("rows"), doc.get("checksum"),
            [(r.get("table"), files(r), r.get("rows"), r.get("checksum")) for r in doc.get("related", [])]]


def manifest(job: Job, policy: Policy, specs: Sequence[ColumnSpec], key: str | Sequence[str]) -> dict[str, Any]:
    """The manifest of an export, from its run log row: the archive table's columns (``specs``),
    files and checksums; and, in move mode, a section per related archive table (its columns were
    recorded in the run when the export began)."""
    keys = [key] if isinstance(key, str) else list(key)
    files = job.options.get("files", [])
    related = []
    for meta in job.options.get("related", []):
        mine = [f for f in job.options.get("related_files", []) if f.get("table") == meta["table"]]
        related.append({**meta, "files": mine, "rows": sum(f["rows"] for f in mine),
                        "checksum": checksum(int(f["checksum"], 16) for f in mine)})
    assert job.cutoff is not None  # an export is created with its cutoff
    return {"format": FORMAT, "export_id": job.id, "schema": policy.schema_name, "table": policy.archive_table,
            "live_table": policy.live_table, "key": keys, "primary_key": keys[0] if len(keys) == 1 else None,
            "created_at": job.run_date.isoformat(), "written_at": datetime.now(UTC).isoformat(),
            "cutoff": job.cutoff.isoformat(), "columns": [s.as_dict() for s in specs], "files": files,
            "rows": sum(f["rows"] for f in files), "checksum": checksum(int(f["checksum"], 16) for f in files),
            "related": related}


def export(db: Database, policy: Policy, storage: ColdStorage, older_than_days: int, *, dry_run: bool = False,
           sink: AlertSink | None = None, rows_per_file: int = DEFAULT_ROWS_PER_FILE, job_id: str | None = None,
           trigger: str = "manual", time_left: Callable[[], float] | None = None,
           max_files: int | None = None) -> ExportResult:
    """Export archive rows archived more than ``older_than_days`` ago, then verify (see module doc)."""
    exporter = Exporter(db, policy, storage, sink=sink, rows_per_file=rows_per_file)
    if dry_run:
        return exporter.dry_run(older_than_days)
    job, owner = exporter.begin(older_than_days, trigger=trigger, job_id=job_id)
    return exporter.run(job, owner, time_left=time_left, max_files=max_files)


def verify_export(db: Database, policy: Policy, storage: ColdStorage, export_id: str,
                  sink: AlertSink | None = None) -> list[str]:
    """Check a finished export again (files can be damaged after the fact); a problem revokes its
    verification, so nothing more is purged on its strength, and alerts."""
    exporter = Exporter(db, policy, storage, sink=sink)
    job = exporter.jobs.get(export_id)
    if job.kind != "export" or job.state in ACTIVE_STATES:
        raise JobStateError(job.id, job.state, "verify (not a finished export)")
    problems = exporter.verify(job.id)
    if problems:
        # Failed: the next export to this destination continues it, rewriting what it can from the archive.
        exporter.jobs.mark_export_failed(job.id, f"verification failed: {'; '.join(problems[:5])}"[:2000])
        exporter.sink.send(Alert(kind="failure", job_id=job.id, state=job.state,
                                 summary=f"export verification failed, nothing purged: {problems[0]}"[:300],
                                 counts={"problems": len(problems)}))
    return problems
