"""Restore from cold storage: rows of exported Parquet files back into the archive or the live table.

Each file is checked against its manifest before a row of it is used. A row whose key is
already live or archived is a conflict: reported, never overwritten (a row is never in both
tables). A row whose key was erased (``erasure.py``) is skipped, so an erased person never
comes back. Audited in the run log as a ``restore`` run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal
from typing import Any

from .cold_storage import ColdStorage
from .config import Policy
from .db import Database, describe_error
from .erasure import ErasedKeys, ErasureKey, erased_keys
from .exceptions import ConfigError, StorageError, VerificationError
from .export import ColumnSpec, checksum, column_spec, from_parquet, manifest_key, row_digest
from .identifiers import qualified, quote
from .jobs import Job, JobStore
from .restore import MAX_REPORTED_CONFLICTS, RestoreResult
from .schema import ARCHIVE_META, columns, live_shape


def _json(v: Any) -> Any:
    """A value as json_populate_recordset reads it back into the column's type (from its text form)."""
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime | date | dtime):
        return v.isoformat()
    if isinstance(v, bytes):
        return "\\x" + v.hex()
    if isinstance(v, list):
        return [_json(x) for x in v]
    return v


def _record(names: Sequence[str], specs: Sequence[ColumnSpec], row: Sequence[Any]) -> str:
    # json(b) goes in as the text PostgreSQL wrote, so numbers like 1.10 keep their form.
    return "{" + ",".join(f"{json.dumps(n)}:{v if s.kind == 'json' and v is not None else json.dumps(_json(v))}"
                          for n, s, v in zip(names, specs, row, strict=True)) + "}"


def manifests(storage: ColdStorage, table: str, export_id: str | None) -> list[dict[str, Any]]:
    keys = [manifest_key(table, export_id)] if export_id else storage.list(f"{table}/manifests/")
    out = []
    for key in keys:
        try:
            out.append(json.loads(storage.get(key)))
        except StorageError:
            if export_id:
                raise ConfigError(f"no export {export_id} of {table} at {storage.url}") from None
            raise
    return sorted(out, key=lambda m: m["created_at"])


def restore_from(db: Database, policy: Policy, storage: ColdStorage, *, export_id: str | None = None,
                 since: datetime | None = None, to: str = "archive",
                 batch_size: int = 1000, erasure_key: ErasureKey | None = None) -> tuple[Job, RestoreResult]:
    """Bring exported rows back (all exports at ``storage``, one, or rows archived since ``since``);
    ``erasure_key``: the erasure records' key (None: the database's own)."""
    if to not in ("archive", "live"):
        raise ConfigError("--to must be archive or live")
    found = manifests(storage, policy.archive_table, export_id)
    jobs = JobStore(db, policy)
    run = jobs.create(kind="restore", batch_size=batch_size, trigger="manual",
                      options={"from": storage.url, "export_id": export_id, "to": to,
                               "since": since.isoformat() if since else None})
    owner = f"restore-{run.id}"
    jobs.claim(run.id, owner, 3600, 1)
    result = RestoreResult()
    skipped = 0
    try:
        erased = erased_keys(db, policy, erasure_key)
        for m in found:
            skipped += _restore_export(db, policy, storage, m, since, to, batch_size, erased, result)
    except Exception as exc:
        jobs.fail(run.id, owner, describe_error(exc))
        raise
    msg = (f"restored {result.restored} rows from {storage.url} to the {to} table; {result.conflict_count} "
           f"already present (left as they are); {skipped} erased (not restored)")
    db.run(f"UPDATE {jobs.log} SET records_archived = :r, records_failed = :c, eligible = :e"
           " WHERE job_id = CAST(:j AS uuid)", r=result.restored, c=result.conflict_count,
           e=result.restored + result.conflict_count, j=run.id)
    done = jobs.finish(run.id, owner, "partial" if result.conflict_count else "succeeded", msg,
                       result={**result.as_dict(), "erased_skipped": skipped})
    assert done is not None
    return done, result


def _restore_export(db: Database, policy: Policy, storage: ColdStorage, m: dict[str, Any], since: datetime | None,
                    to: str, batch_size: int, erased: ErasedKeys, result: RestoreResult) -> int:
    specs = [column_spec(c["name"], c["pg_type"]) for c in m["columns"]]
    names = [s.name for s in specs]
    pk = live_shape(db, policy).pk
    target = policy.archive_table if to == "archive" else policy.live_table
    have = {c.name for c in columns(db, policy.schema_name, target) if not c.generated}
    keep = [i for i, n in enumerate(names) if n in have and not (to == "live" and n in ARCHIVE_META)]
    cols = ", ".join(quote(names[i]) for i in keep)
    live, archive = (qualified(policy.schema_name, t) for t in (policy.live_table, policy.archive_table))
    sql = (f"INSERT INTO {qualified(policy.schema_name, target)} ({cols}) OVERRIDING SYSTEM VALUE"
           f" SELECT {cols} FROM json_populate_recordset(NULL::{qualified(policy.schema_name, target)},"
           f" CAST(:rows AS json)) s WHERE NOT EXISTS (SELECT 1 FROM {live} l WHERE l.{quote(pk)} = s.{quote(pk)})"
           f" AND NOT EXISTS (SELECT 1 FROM {archive} a WHERE a.{quote(pk)} = s.{quote(pk)}) RETURNING {quote(pk)}")
    pk_i, ts_i = names.index(pk), names.index("archived_at")
    since_month = since.astimezone(UTC).strftime("%Y-%m") if since else None
    skipped = 0
    for entry in m["files"]:
        if since_month and entry["month"] < since_month:
            continue
        rows = from_parquet(storage.get(entry["key"]), names)
        if len(rows) != entry["rows"] or checksum(row_digest(r) for r in rows) != entry["checksum"]:
            raise VerificationError(m["export_id"], [f"file {entry['key']} does not match its manifest"])
        rows = [r for r in rows if since is None or r[ts_i] >= since]
        wanted = [r for r in rows if str(r[pk_i]) not in erased]
        skipped += len(rows) - len(wanted)
        for start in range(0, len(wanted), batch_size):
            chunk = wanted[start:start + batch_size]
            payload = "[" + ",".join(_record([names[i] for i in keep], [specs[i] for i in keep],
                                             [r[i] for i in keep]) for r in chunk) + "]"
            with db.transaction():
                back = {str(r[0]) for r in db.run(sql, rows=payload)}
            result.restored += len(back)
            clashes = [r[pk_i] for r in chunk if str(r[pk_i]) not in back]
            result.conflict_count += len(clashes)
            result.conflicts.extend(clashes[: MAX_REPORTED_CONFLICTS - len(result.conflicts)])
    return skipped
