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

from .catalogue import columns, live_shape
from .cold_storage import ColdStorage
from .config import Policy
from .db import Database, describe_error, expecting
from .erasure import ErasedKeys, ErasureKey, canonical_key, erased_keys
from .exceptions import CheckViolationError, ConfigError, SchemaError, StorageError, VerificationError
from .export import ColumnSpec, checksum, column_spec, from_parquet, manifest_key, row_digest
from .identifiers import qualified, quote
from .jobs import Job, JobStore
from .migration import ARCHIVE_META, related_archive_name
from .related import Related, matches, references_set, related_graph
from .restore import MAX_REPORTED_CONFLICTS, RestoreResult
from .states import RunState


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


def _shown(values: list[Any]) -> Any:
    """A key as reported: its value, or a tuple of them for a key of several columns."""
    return values[0] if len(values) == 1 else tuple(values)


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
    if to == "live" and any(r.get("rows") for m in found for r in m.get("related", [])):
        raise ConfigError("this export holds related rows (move mode): restore it to the archive (--to archive), then"
                          " `archiver restore --since` brings rows and related rows back to the live tables together")
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
            for section in m.get("related", []):
                _restore_related(db, policy, storage, m["export_id"], section, since, result)
    except Exception as exc:
        jobs.fail(run.id, owner, describe_error(exc))
        raise
    msg = (f"restored {result.restored} rows ({result.related_restored} related) from {storage.url} to the {to}"
           f" table; {result.conflict_count} already present (left as they are); {skipped} erased (not restored)")
    jobs.record_totals(run.id, result.restored, result.conflict_count)
    done = jobs.finish(run.id, owner, RunState.PARTIAL if result.conflict_count else RunState.SUCCEEDED, msg,
                       result={**result.as_dict(), "erased_skipped": skipped})
    assert done is not None
    return done, result


def _file_rows(storage: ColdStorage, export_id: str, entry: dict[str, Any], names: list[str]) -> list[tuple[Any, ...]]:
    """A file's rows, checked against its manifest entry first."""
    rows = from_parquet(storage.get(entry["key"]), names)
    if len(rows) != entry["rows"] or checksum(row_digest(r) for r in rows) != entry["checksum"]:
        raise VerificationError(export_id, [f"file {entry['key']} does not match its manifest"])
    return rows


def _payload(names: Sequence[str], specs: Sequence[ColumnSpec], keep: Sequence[int], rows: Sequence[Any]) -> str:
    return "[" + ",".join(_record([names[i] for i in keep], [specs[i] for i in keep], [r[i] for i in keep])
                          for r in rows) + "]"


def _restore_export(db: Database, policy: Policy, storage: ColdStorage, m: dict[str, Any], since: datetime | None,
                    to: str, batch_size: int, erased: ErasedKeys, result: RestoreResult) -> int:
    specs = [column_spec(c["name"], c["pg_type"]) for c in m["columns"]]
    names = [s.name for s in specs]
    shape = live_shape(db, policy)
    target = policy.archive_table if to == "archive" else policy.live_table
    have = {c.name for c in columns(db, policy.schema_name, target) if not c.generated}
    keep = [i for i, n in enumerate(names) if n in have and not (to == "live" and n in ARCHIVE_META)]
    cols = ", ".join(quote(names[i]) for i in keep)
    live, archive = (qualified(policy.schema_name, t) for t in (policy.live_table, policy.archive_table))
    recordset = f"json_populate_recordset(NULL::{qualified(policy.schema_name, target)}, CAST(:rows AS json)) s"
    def as_text(prefix: str) -> str:
        return "ARRAY[" + ", ".join(f"CAST({prefix}{quote(c.name)} AS text)" for c in shape.key) + "]"

    sql = (f"INSERT INTO {qualified(policy.schema_name, target)} ({cols}) OVERRIDING SYSTEM VALUE"
           f" SELECT {cols} FROM {recordset}"
           f" WHERE NOT EXISTS (SELECT 1 FROM {live} l WHERE {shape.key_equal('l', 's')})"
           f" AND NOT EXISTS (SELECT 1 FROM {archive} a WHERE {shape.key_equal('a', 's')}) RETURNING {as_text('')}")
    keys_sql = f"SELECT {as_text('s.')} FROM {recordset}"  # the same keys, as the database writes them
    key_i = [names.index(c.name) for c in shape.key]
    ts_i = names.index("archived_at")
    since_month = since.astimezone(UTC).strftime("%Y-%m") if since else None
    skipped = 0
    for entry in m["files"]:
        if since_month and entry["month"] < since_month:
            continue
        rows = [r for r in _file_rows(storage, m["export_id"], entry, names) if since is None or r[ts_i] >= since]
        wanted = rows
        if erased.hashes and rows:  # each row's key as the database writes it, as erasure hashed it
            texts = [tuple(r[0]) for r in db.run(keys_sql, rows=_payload(names, specs, keep, rows))]
            wanted = [r for r, t in zip(rows, texts, strict=True) if canonical_key(t) not in erased]
        skipped += len(rows) - len(wanted)
        for start in range(0, len(wanted), batch_size):
            chunk = wanted[start:start + batch_size]
            payload = _payload(names, specs, keep, chunk)
            try:
                with expecting(CheckViolationError), db.transaction():
                    back = {tuple(r[0]) for r in db.run(sql, rows=payload)}
                    # Which rows did not go in: only asked when some did not.
                    texts = [tuple(r[0]) for r in db.run(keys_sql, rows=payload)] if len(back) < len(chunk) else []
            except CheckViolationError as exc:
                # A live partition attached to the archive whole, then purged: its range is gone from both.
                raise SchemaError(f"a row to restore fits no partition of the {to} table, or breaks one of its"
                                  f" check constraints: {exc}; create the partition (or a default one), or"
                                  " restore to the archive") from None
            result.restored += len(back)
            clashes = [_shown([r[i] for i in key_i]) for r, t in zip(chunk, texts, strict=False) if t not in back]
            result.conflict_count += len(clashes)
            result.conflicts.extend(clashes[: max(0, MAX_REPORTED_CONFLICTS - len(result.conflicts))])
    return skipped


def _restore_related(db: Database, policy: Policy, storage: ColdStorage, export_id: str, section: dict[str, Any],
                     since: datetime | None, result: RestoreResult) -> None:
    """Rows of a related archive table back into it (restores go to the archive), parents first as the
    manifest lists them. A row comes back only with its group (``(archive_job_id, archived_at)``,
    the rows one archive batch moved) absent from the table, and only when a row it belongs to (its
    parent, archived in the same batch) is in the archive: the children of a row not restored (still
    there, erased) stay out. Rows that do not come back are counted with the conflicts."""
    graph = related_graph(db, policy)
    schema, backup, source = section["schema"], section["table"], (section["schema"], section["source_table"])
    specs = [column_spec(c["name"], c["pg_type"]) for c in section["columns"]]
    names = [s.name for s in specs]
    have = {c.name for c in columns(db, schema, backup) if not c.generated}
    keep = [i for i, n in enumerate(names) if n in have]
    cols = ", ".join(quote(names[i]) for i in keep)
    table = qualified(schema, backup)
    recordset = f"json_populate_recordset(NULL::{table}, CAST(:rows AS json))"

    def archived_parent(link: Related) -> str:
        parent = (qualified(policy.schema_name, policy.archive_table) if link.parent == graph.live
                  else qualified(link.parent[0], related_archive_name(policy, link.parent[1])))
        same = f"{matches('s', link.columns, 'p', link.parent_columns)} AND p.archived_at = s.archived_at"
        found = f"EXISTS (SELECT 1 FROM {parent} p WHERE {same})"
        if link.is_self:  # a parent in the same file comes back in the same statement
            found = f"({found} OR EXISTS (SELECT 1 FROM {recordset} p WHERE {same}))"
        return f"({references_set('s', link.columns)} AND {found})"

    belongs = " OR ".join(archived_parent(r) for r in [*graph.into(source), *graph.self_links_of(source)]) or "true"
    sql = (f"INSERT INTO {table} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {recordset} s"
           f" WHERE NOT EXISTS (SELECT 1 FROM {table} b WHERE b.archive_job_id = s.archive_job_id"
           f" AND b.archived_at = s.archived_at) AND ({belongs}) ON CONFLICT DO NOTHING")
    ts_i = names.index("archived_at")
    for entry in section["files"]:
        rows = [r for r in _file_rows(storage, export_id, entry, names) if since is None or r[ts_i] >= since]
        if not rows:
            continue
        with db.transaction():  # one statement a file: a group is never split across files
            db.run(sql, rows=_payload(names, specs, keep, rows))
            back = db.row_count
        result.related_restored += back
        result.conflict_count += len(rows) - back
