"""Erasure of one person on request: their row (and related rows) gone from the live table, the
archive and every exported file, and an erasure record that later restores re-apply.

The record holds a hash of the key, when and by whom, and counts: never the data. The hash is
of the policy and the key's text (SHA-256), so restores can recognise the key without storing it.
Exported files are rewritten before the database rows go: if a rewrite fails, nothing in the
database has changed and erasing again finishes the job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .catalogue import live_shape, table_exists
from .cold_storage import ColdStorage, S3Storage, open_storage
from .config import Policy
from .db import Database, describe_error, expecting
from .exceptions import ConfigError, InvalidValueError, StorageError
from .export import (
    archive_specs,
    checksum,
    column_spec,
    from_parquet,
    ledger_name,
    manifest,
    manifest_key,
    row_digest,
    to_parquet,
)
from .identifiers import qualified, quote
from .jobs import JobStore
from .migration import related_archive_name
from .related import column_list, related_graph
from .states import RunState

ERASURE_SUFFIX = "_erasures"


def erasure_table(policy: Policy) -> str:
    name = f"{policy.log_table}{ERASURE_SUFFIX}"
    return name if len(name) <= 63 else f"{name[:50]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def key_hash(policy: Policy, key_text: str) -> str:
    return hashlib.sha256(f"{policy.key}:{key_text}".encode()).hexdigest()


def ensure_erasure_table(db: Database, policy: Policy) -> str:
    name = qualified(policy.schema_name, erasure_table(policy))
    if table_exists(db, policy.schema_name, erasure_table(policy)):  # a role without CREATE gets this far
        return name
    db.run(f"CREATE TABLE IF NOT EXISTS {name} (id bigserial PRIMARY KEY, policy_key text NOT NULL,"
           " key_hash text NOT NULL, erased_at timestamptz NOT NULL DEFAULT now(), erased_by text NOT NULL,"
           " removed jsonb NOT NULL DEFAULT '{}'::jsonb, UNIQUE (policy_key, key_hash))")
    return name


def erased_hashes(db: Database, policy: Policy) -> set[str]:
    if not table_exists(db, policy.schema_name, erasure_table(policy)):
        return set()
    return {r[0] for r in db.run(f"SELECT key_hash FROM {qualified(policy.schema_name, erasure_table(policy))}"
                                 " WHERE policy_key = :p", p=policy.key)}


@dataclass
class EraseResult:
    key_hash: str
    dry_run: bool
    removed: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    job_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"key_hash": self.key_hash, "dry_run": self.dry_run, "removed": self.removed,
                "files_rewritten": len(self.files), "files": self.files, "job_id": self.job_id}


def erase(db: Database, policy: Policy, key: str, *, table: str | None = None, dry_run: bool = False,
          erased_by: str = "cli", storage_for: Callable[[str], ColdStorage] = open_storage) -> EraseResult:
    """Remove the record with primary key ``key`` everywhere (see the module doc)."""
    if table not in (None, policy.live_table, policy.archive_table):
        raise ConfigError(f"--table {table!r}: this policy erases from {policy.live_table} and {policy.archive_table}")
    shape = live_shape(db, policy)
    try:
        with expecting(InvalidValueError):
            text = str(db.scalar(f"SELECT CAST(CAST(:k AS {shape.pk_type}) AS text)", k=key))
    except InvalidValueError:
        raise ConfigError(f"--key is not a valid {shape.pk_type}") from None
    result = EraseResult(key_hash(policy, text), dry_run)
    pk = quote(shape.pk)
    live = qualified(policy.schema_name, policy.live_table)
    archive = qualified(policy.schema_name, policy.archive_table)
    # Rows of the tables that reference the record (on its key, or another unique key of it), live or
    # archived, go before the record itself: the foreign keys hold at every step.
    targets: list[tuple[str, str, str]] = []
    for link in related_graph(db, policy).children:
        owner = (f"({column_list('x', link.columns)}) IN (SELECT {column_list('p', link.parent_columns)} FROM {{src}} p"
                 f" WHERE p.{pk} = CAST(:k AS {shape.pk_type}))")
        backup = related_archive_name(policy, link.table)
        for t, label in ((link.table, link.table), (backup, "archived " + link.table)):
            if table_exists(db, link.schema, t):
                sources = " OR ".join(owner.format(src=src) for src in (live, archive))
                targets.append((qualified(link.schema, t), f"({sources})", label))
    key_match = f"x.{pk} = CAST(:k AS {shape.pk_type})"
    targets += [(live, key_match, "live"), (archive, key_match, "archive")]
    for tbl, where, label in targets:
        result.removed[label] = int(db.scalar(f"SELECT count(*) FROM {tbl} x WHERE {where}", k=text))
    files = _exported_files(db, policy, text, shape.pk_type)
    result.files = [f for _, _, f in files]
    if dry_run:
        return result
    jobs = JobStore(db, policy)
    run = jobs.create(kind="erase", batch_size=1, trigger=erased_by, options={"key_hash": result.key_hash})
    owner = f"erase-{run.id}"
    jobs.claim(run.id, owner, 3600, 1)
    result.job_id = run.id
    try:
        for export_id, dest in sorted({(e, d) for e, d, _ in files}):
            _rewrite(db, policy, storage_for(dest), export_id, text, [f for e, _, f in files if e == export_id])
        with db.transaction():
            for tbl, where, _ in targets:
                db.run(f"DELETE FROM {tbl} x WHERE {where}", k=text)
            if table_exists(db, policy.schema_name, ledger_name(policy)):
                db.run(f"DELETE FROM {qualified(policy.schema_name, ledger_name(policy))}"
                       f" WHERE key = CAST(:k AS {shape.pk_type})", k=text)
            db.run(f"INSERT INTO {ensure_erasure_table(db, policy)} (policy_key, key_hash, erased_by, removed)"
                   " VALUES (:p, :h, :b, CAST(:r AS jsonb)) ON CONFLICT (policy_key, key_hash) DO UPDATE SET"
                   " erased_at = now(), erased_by = EXCLUDED.erased_by, removed = EXCLUDED.removed",
                   p=policy.key, h=result.key_hash, b=erased_by,
                   r=json.dumps({**result.removed, "files": len(result.files)}))
    except Exception as exc:
        jobs.fail(run.id, owner, describe_error(exc))
        raise
    total = sum(result.removed.values())
    jobs.finish(run.id, owner, RunState.SUCCEEDED,
                f"erased one record: {total} rows, {len(result.files)} files rewritten",
                result={"removed": result.removed, "files_rewritten": len(result.files)})
    return result


def _exported_files(db: Database, policy: Policy, key: str, pk_type: str) -> list[tuple[str, str, str]]:
    """(export id, destination, file) of every exported file that holds the key, from the ledger."""
    if not table_exists(db, policy.schema_name, ledger_name(policy)):
        return []
    ledger = qualified(policy.schema_name, ledger_name(policy))
    return [(str(r[0]), r[1], r[2]) for r in db.run(
        f"SELECT DISTINCT l.export_id, e.options->>'dest', l.file FROM {ledger} l"
        f" JOIN {qualified(policy.schema_name, policy.log_table)} e ON e.job_id = l.export_id"
        f" WHERE l.key = CAST(:k AS {pk_type}) ORDER BY 3", k=key)]


def _rewrite(db: Database, policy: Policy, storage: ColdStorage, export_id: str, key: str, keys: list[str]) -> None:
    """Rewrite the export's files without the key's rows, then its file list and manifest."""
    jobs = JobStore(db, policy)
    job = jobs.get(export_id)
    try:
        stored: dict[str, Any] | None = json.loads(storage.get(manifest_key(policy.archive_table, export_id)))
    except StorageError:  # an export that failed before its manifest: its files are still rewritten
        stored = None
    specs = ([column_spec(c["name"], c["pg_type"]) for c in stored["columns"]] if stored
             else archive_specs(db, policy))
    pk = stored["primary_key"] if stored else live_shape(db, policy).pk
    names = [s.name for s in specs]
    pk_i = names.index(pk)
    entries = []
    for entry in job.options.get("files", []):
        if entry["key"] in keys:
            file_key = entry["key"]
            rows = [r for r in from_parquet(storage.get(entry["key"]), names) if str(r[pk_i]) != key]
            if rows:
                data = to_parquet(specs, rows, {"export_id": export_id, "table": policy.archive_table})
                storage.put(entry["key"], data)
                entry = {**entry, "rows": len(rows), "bytes": len(data),
                         "checksum": checksum(row_digest(r) for r in rows)}
            else:
                storage.delete(entry["key"])
                entry = {}
            if isinstance(storage, S3Storage):  # a versioned bucket keeps the old object otherwise
                storage.purge_old_versions(file_key)
        if entry:
            entries.append(entry)
    jobs.record_export_files(export_id, entries, rows=sum(e["rows"] for e in entries))
    if stored is None:
        return
    current = jobs.get(export_id)
    doc = {**manifest(current, policy, specs, pk), "created_at": stored["created_at"],
           "erasures": int(stored.get("erasures", 0)) + 1}
    storage.put(manifest_key(policy.archive_table, export_id), json.dumps(doc, indent=1).encode())
    if isinstance(storage, S3Storage):
        storage.purge_old_versions(manifest_key(policy.archive_table, export_id))
