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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any

from .alerts import Alert, AlertSink, LogSink
from .catalogue import Column, columns, live_shape, table_exists
from .cold_storage import ColdStorage
from .config import Policy
from .db import Database, describe_error
from .exceptions import ConfigError, JobStateError, LeaseLostError, StorageError
from .identifiers import qualified, quote
from .jobs import Job, JobStore
from .observability import logger
from .states import ACTIVE_STATES, RunState, sql_state

FORMAT = "pg-archiver-export/1"
DEFAULT_ROWS_PER_FILE = 100_000
LEDGER_SUFFIX = "_exported"
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
def ledger_name(policy: Policy) -> str:
    name = f"{policy.archive_table}{LEDGER_SUFFIX}"
    return name if len(name) <= 63 else f"{name[:50]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def manifest_key(table: str, export_id: str) -> str:
    return f"{table}/manifests/{export_id}.json"


def data_key(table: str, month: str, export_id: str, seq: int) -> str:
    return f"{table}/data/month={month}/{export_id}-{seq:05d}.parquet"


def ensure_ledger(db: Database, policy: Policy) -> str:
    """The ledger of exported archive rows (ids and times only), created on first use."""
    name = qualified(policy.schema_name, ledger_name(policy))
    if table_exists(db, policy.schema_name, ledger_name(policy)):  # a role without CREATE gets this far
        return name
    pk_type = live_shape(db, policy).pk_type
    db.run(f"CREATE TABLE IF NOT EXISTS {name} (key {pk_type} NOT NULL, archived_at timestamptz NOT NULL,"
           " export_id uuid NOT NULL, file text NOT NULL, PRIMARY KEY (key, archived_at))")
    db.run(f"CREATE INDEX IF NOT EXISTS {quote(ledger_name(policy)[:50] + '_export_idx')} ON {name} (export_id, file)")
    return name


def purge_gate(db: Database, policy: Policy, alias: str, pk: str) -> str:
    """SQL condition on archive rows ``alias``: the row is in a verified export. FALSE without a ledger."""
    if not table_exists(db, policy.schema_name, ledger_name(policy)):
        return "false"
    ledger = qualified(policy.schema_name, ledger_name(policy))
    log = qualified(policy.schema_name, policy.log_table)
    return (f"EXISTS (SELECT 1 FROM {ledger} l JOIN {log} e ON e.job_id = l.export_id"
            f" WHERE l.key = {alias}.{pk} AND l.archived_at = {alias}.archived_at AND e.kind = 'export'"
            f" AND e.state = {sql_state(RunState.SUCCEEDED)} AND e.options->>'verified' = 'true')")


def archive_specs(db: Database, policy: Policy, table: str | None = None) -> list[ColumnSpec]:
    cols: tuple[Column, ...] = columns(db, policy.schema_name, table or policy.archive_table)
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
    if not m or not 1 <= int(m.group(1)) <= 36500:
        raise ConfigError(f"--older-than: expected days in 1..36500 like 730d, got {text!r}")
    return int(m.group(1))


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

    def as_dict(self) -> dict[str, Any]:
        return {"export_id": self.export_id, "state": self.state, "exported": self.exported, "files": self.files,
                "verified": self.verified, "done": self.done, "dry_run": self.dry_run,
                "problems": self.problems, "manifest": self.manifest}


class Exporter:
    """Export, manifest and verification of one policy's archive table to one destination."""

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
        self.pk = live_shape(db, policy).pk
        self.specs = archive_specs(db, policy)
        names = [s.name for s in self.specs]
        if "archived_at" not in names:
            raise ConfigError(f"{self.table} has no archived_at column: not an archive table")
        self.pk_i, self.ts_i = names.index(self.pk), names.index("archived_at")
        self.select = ", ".join(s.select_sql() for s in self.specs)

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
                                        "older_than_days": older_than_days, "files": []})
        claimed = self.jobs.claim(job.id, owner, 3600, 1)
        assert claimed is not None
        return claimed, owner

    def dry_run(self, older_than_days: int) -> ExportResult:
        cutoff = self.db.scalar("SELECT now() - make_interval(days => :d)", d=older_than_days)
        exported = "true"
        if table_exists(self.db, self.policy.schema_name, ledger_name(self.policy)):
            exported = f"NOT {self._exported('a')}"
        n, months = self.db.run(
            f"SELECT count(*), count(DISTINCT to_char(a.archived_at AT TIME ZONE 'UTC', 'YYYY-MM'))"
            f" FROM {self.archive} a WHERE a.archived_at < :c AND {exported}", c=cutoff)[0]
        return ExportResult(None, "dry_run", exported=int(n), files=int(months), dry_run=True)

    def _exported(self, alias: str) -> str:
        ledger = qualified(self.policy.schema_name, ledger_name(self.policy))
        return (f"EXISTS (SELECT 1 FROM {ledger} l WHERE l.key = {alias}.{quote(self.pk)}"
                f" AND l.archived_at = {alias}.archived_at)")

    def run(self, job: Job, owner: str, *, time_left: Callable[[], float] | None = None,
            max_files: int | None = None) -> ExportResult:
        """Write the remaining files, then the manifest, then verify. Pauses (done=False) when
        ``time_left()`` (seconds) runs low or after ``max_files``, keeping the run for the next hop."""
        written = 0
        assert job.cutoff is not None  # an export is created with its cutoff
        try:
            for month in self._months(job.cutoff):
                while True:
                    if (max_files is not None and written >= max_files) or (time_left and time_left() < 60):
                        self._pause(job.id, owner)
                        return self._result(job.id, "running", done=False)
                    n = self._write_chunk(job, owner, month)
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
        files = current.options.get("files", [])
        done = self.jobs.finish(job.id, owner, RunState.SUCCEEDED,
                                f"exported and verified {current.records_archived} rows in {len(files)} files",
                                result={"exported": current.records_archived, "files": len(files), "verified": True,
                                        "dest": self.storage.url})
        assert done is not None
        logger.info("export verified", extra={"export_id": job.id, "rows": current.records_archived})
        return self._result(job.id, "succeeded")

    def _result(self, export_id: str, state: str, done: bool = True, problems: list[str] | None = None) -> ExportResult:
        job = self.jobs.get(export_id)
        files = job.options.get("files", [])
        return ExportResult(export_id, state, exported=int(job.records_archived), files=len(files),
                            verified=job.options.get("verified") is True, done=done, problems=problems or [],
                            manifest=manifest_key(self.table, export_id) if files else None)

    def _pause(self, export_id: str, owner: str) -> None:
        self.jobs.release(export_id, owner)

    def _failed(self, export_id: str, owner: str, error: str, problems: list[str] | None = None) -> ExportResult:
        self.db.ensure_alive()
        job = self.jobs.finish(export_id, owner, RunState.FAILED,
                               message="export failed; run export again to continue it",
                               error=error[:2000]) or self.jobs.get(export_id)
        self.sink.send(Alert(kind="failure", job_id=export_id, state=job.state,
                             summary=f"export failed, nothing purged: {error}"[:300],
                             counts={"exported": job.records_archived,
                                     "files": len(job.options.get("files", []))}))
        logger.error("export failed", extra={"export_id": export_id, "error": error[:300]})
        return self._result(export_id, "failed", problems=problems or [error])

    def _months(self, cutoff: datetime) -> list[str]:
        return [r[0] for r in self.db.run(
            f"SELECT DISTINCT to_char(a.archived_at AT TIME ZONE 'UTC', 'YYYY-MM') FROM {self.archive} a"
            f" WHERE a.archived_at < :c AND NOT {self._exported('a')} ORDER BY 1", c=cutoff)]

    def _write_chunk(self, job: Job, owner: str, month: str) -> int:
        lo = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
        hi = lo.replace(year=lo.year + lo.month // 12, month=lo.month % 12 + 1)
        rows = self.db.run(
            f"SELECT {self.select} FROM {self.archive} a WHERE a.archived_at < :c AND a.archived_at >= :lo"
            f" AND a.archived_at < :hi AND NOT {self._exported('a')} ORDER BY a.{quote(self.pk)} LIMIT :n",
            c=job.cutoff, lo=lo, hi=hi, n=self.rows_per_file)
        if not rows:
            return 0
        seq = len(self.jobs.get(job.id).options.get("files", []))
        key = data_key(self.table, month, job.id, seq)
        entry = self._put_file(key, month, job.id, rows)
        ledger = qualified(self.policy.schema_name, ledger_name(self.policy))
        pk_type = live_shape(self.db, self.policy).pk_type
        with self.db.transaction():
            self.db.run(f"INSERT INTO {ledger} (key, archived_at, export_id, file) SELECT CAST(k AS {pk_type}),"
                        " CAST(t AS timestamptz), CAST(:e AS uuid), :f FROM unnest(CAST(:ks AS text[]),"
                        " CAST(:ts AS text[])) u(k, t)", e=job.id, f=key,
                        ks=[str(r[self.pk_i]) for r in rows],
                        ts=[micros_to_datetime(r[self.ts_i]).isoformat() for r in rows])
            if not self.jobs.record_export_file(job.id, owner, entry, len(rows)):
                raise LeaseLostError(f"export {job.id} is no longer leased to this worker")
        return len(rows)

    def _put_file(self, key: str, month: str, export_id: str, rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
        data = to_parquet(self.specs, rows, {"export_id": export_id, "table": self.table, "format": FORMAT})
        self.storage.put(key, data)
        return {"key": key, "month": month, "rows": len(rows), "bytes": len(data),
                "checksum": checksum(row_digest(r) for r in rows)}

    def _db_rows(self, export_id: str, key: str) -> list[list[Any]]:
        ledger = qualified(self.policy.schema_name, ledger_name(self.policy))
        return self.db.run(
            f"SELECT {self.select} FROM {self.archive} a JOIN {ledger} l ON l.key = a.{quote(self.pk)}"
            f" AND l.archived_at = a.archived_at WHERE l.export_id = CAST(:e AS uuid) AND l.file = :f"
            f" ORDER BY a.{quote(self.pk)}", e=export_id, f=key)

    def _repair(self, export_id: str) -> None:
        """Files of an export being continued that do not read back as recorded are written again
        from the database (their rows are still in the archive: nothing was purged on their strength)."""
        job = self.jobs.get(export_id)
        files = job.options.get("files", [])
        changed = False
        for i, entry in enumerate(files):
            if not self._file_problems(entry):
                continue
            rows = self._db_rows(export_id, entry["key"])
            if len(rows) != entry["rows"]:
                continue  # rows gone from the archive: verification will say so
            files[i] = self._put_file(entry["key"], entry["month"], export_id, rows)
            changed = True
            logger.warning("export file rewritten", extra={"export_id": export_id, "file": entry["key"]})
        if changed:
            self.jobs.record_export_files(export_id, files)

    def _write_manifest(self, export_id: str) -> None:
        job = self.jobs.get(export_id)
        files = job.options.get("files", [])
        if not files:
            return
        self.storage.put(manifest_key(self.table, export_id), json.dumps(manifest(job, self.policy, self.specs,
                                                                                  self.pk), indent=1).encode())

    # -- verification ----------------------------------------------------------------------------
    def _read_checked(self, entry: dict[str, Any]) -> tuple[dict[Any, int], list[str]]:
        """The file's rows as key -> digest, and what is wrong with it against its manifest entry."""
        try:
            rows = from_parquet(self.storage.get(entry["key"]), [s.name for s in self.specs])
        except StorageError as exc:
            return {}, [f"file missing or unreadable: {exc}"]
        except Exception as exc:  # noqa: BLE001 - any decoding error means a damaged file
            return {}, [f"file {entry['key']} is damaged ({type(exc).__name__})"]
        digests = {r[self.pk_i]: row_digest(r) for r in rows}
        if len(rows) != entry["rows"] or len(digests) != len(rows) or checksum(digests.values()) != entry["checksum"]:
            return {}, [f"file {entry['key']}: {len(rows)} rows or their checksum differ from the manifest"]
        return digests, []

    def _file_problems(self, entry: dict[str, Any]) -> list[str]:
        return self._read_checked(entry)[1]

    def verify(self, export_id: str) -> list[str]:
        """Problems found (none: the export is verified). Reads every file back; compares with the
        manifest in storage, the run log and the database rows still in the archive."""
        job = self.jobs.get(export_id)
        files = job.options.get("files", [])
        problems: list[str] = []
        if not files:  # nothing was due: nothing to check, and no manifest was written
            self._mark(export_id, True)
            return []
        try:
            stored = json.loads(self.storage.get(manifest_key(self.table, export_id)))
        except (StorageError, ValueError) as exc:
            stored, problems = {}, [f"manifest missing or unreadable ({type(exc).__name__})"]
        if stored and ([(f["key"], f["rows"], f["checksum"]) for f in stored.get("files", [])]
                       != [(f["key"], f["rows"], f["checksum"]) for f in files]
                       or stored.get("rows") != sum(f["rows"] for f in files)
                       or stored.get("checksum") != checksum(int(f["checksum"], 16) for f in files)):
            problems.append("the manifest disagrees with the run log")
        for entry in files:
            in_file, found = self._read_checked(entry)
            problems += found
            if found:
                continue
            for r in self._db_rows(export_id, entry["key"]):
                if in_file.get(r[self.pk_i]) != row_digest(r):
                    problems.append(f"file {entry['key']} differs from the archive rows it holds")
                    break
        self._mark(export_id, not problems)
        return problems

    def _mark(self, export_id: str, verified: bool) -> None:
        self.jobs.record_verification(export_id, verified)


def manifest(job: Job, policy: Policy, specs: Sequence[ColumnSpec], pk: str) -> dict[str, Any]:
    files = job.options.get("files", [])
    assert job.cutoff is not None  # an export is created with its cutoff
    return {"format": FORMAT, "export_id": job.id, "schema": policy.schema_name, "table": policy.archive_table,
            "live_table": policy.live_table, "primary_key": pk, "created_at": job.run_date.isoformat(),
            "written_at": datetime.now(UTC).isoformat(), "cutoff": job.cutoff.isoformat(),
            "columns": [s.as_dict() for s in specs], "files": files, "rows": sum(f["rows"] for f in files),
            "checksum": checksum(int(f["checksum"], 16) for f in files)}


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
