"""Erasure of one person on request: their row and every row below it in the foreign-key graph (any
depth, live and archived) gone from the database and from every exported file, and an erasure
record that later restores re-apply.

The record holds a keyed hash of the key (HMAC-SHA256), when and by whom, and counts: never the
data. Keyed, because customer ids are few and guessable: a plain hash of one is reversed by hashing
every id. The key comes from Secrets Manager on AWS (the edge hands it in as ``ErasureKey``) or, by
default, from ``<log>_erasure_key``, one random key per database that migrate creates and only the
owner role reads: it travels with the data it protects, so a restored dump still recognises its
erasures. Each record names the key's id, so records written under another key are refused rather
than silently missed (an erased person would come back). Records of older versions (a plain SHA-256)
are wrapped in place, once, by the first use of the key: the hash is ``HMAC(key, sha256(...))``.

Exported files are rewritten before the database rows go: if a rewrite fails, nothing in the
database has changed and erasing again finishes the job. The archive table's files come from its
ledger (by key); in move mode the related tables' files from the related ledger, by the batches
(``archived_at``) the record and its rows were archived in, and the graph is followed inside them,
so rows purged from the database since are found too.

A key of several columns is a list (or its JSON text); the record hashes ``canonical_key``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from datetime import time as dtime
from functools import cache, partial
from typing import Any

from .catalogue import TableShape, columns, live_shape, table_exists
from .cold_storage import ColdStorage, S3Storage, open_storage
from .config import Policy
from .db import Database, describe_error, expecting
from .environment import ERASURE_KEY_ENV as ERASURE_KEY_ENV  # the key's secret: defined in environment
from .events import Invoker, hand_to
from .exceptions import (
    ArchiverError,
    ConfigError,
    InvalidKeyError,
    InvalidValueError,
    SchemaError,
    StorageError,
)
from .export import (
    FORMAT,
    ColumnSpec,
    archive_specs,
    checksum,
    column_spec,
    from_parquet,
    manifest,
    manifest_key,
    row_digest,
    to_parquet,
)
from .identifiers import qualified, quote
from .jobs import Job, JobStore
from .migration import (
    ensure_erasure_tables,
    erasure_table,
    key_table,
    ledger_key_columns,
    ledger_name,
    related_archive_name,
    related_ledger_name,
)
from .observability import logger
from .related import RelatedGraph, column_list, related_graph
from .states import RunState

MAX_KEY_TEXT = 200  # a primary key's text; longer is not a key of any table we archive
_KEY_ID_LABEL = b"pg-archiver erasure key id"
_MAX_SELF_STEPS = 1000  # rows of one table referencing each other in a chain longer than this: refused

Table = tuple[str, str]


def legacy_hash(policy: Policy, key_text: str) -> str:
    """The unsalted hash earlier versions stored; now only ever stored inside the HMAC."""
    return hashlib.sha256(f"{policy.key}:{key_text}".encode()).hexdigest()


@dataclass(frozen=True)
class ErasureKey:
    """The secret of the erasure records' HMAC. Never logged (no repr of the secret)."""

    secret: bytes = field(repr=False)

    @classmethod
    def from_text(cls, text: str) -> ErasureKey:
        if len(text) < 32:
            raise ConfigError("the erasure key secret must be at least 32 characters")
        return cls(text.encode())

    @property
    def key_id(self) -> str:
        """Names the key in each record, without revealing it."""
        return hmac.new(self.secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    def wrap(self, legacy: str) -> str:
        return hmac.new(self.secret, legacy.encode(), hashlib.sha256).hexdigest()

    def hash(self, policy: Policy, key_text: str) -> str:
        return self.wrap(legacy_hash(policy, key_text))


def key_from_secret(arn: str | None, fetch: Callable[[str], str]) -> ErasureKey | None:
    """The key in the secret ``arn`` names (``fetch``: Secrets Manager's, at the edge); None without one:
    the database's own key is used."""
    return ErasureKey.from_text(fetch(arn)) if arn else None


def key_loader(arn: str | None, fetch: Callable[[str], str]) -> Callable[[], ErasureKey | None]:
    """``key_from_secret``, fetched at the first call and kept: a warm function asks Secrets Manager once,
    and a cold start that never erases not at all."""
    return cache(partial(key_from_secret, arn or None, fetch))


def database_key(db: Database, policy: Policy) -> ErasureKey:
    if not table_exists(db, policy.schema_name, key_table(policy)):
        raise SchemaError(f"no erasure key: run archiver migrate (it creates {key_table(policy)})")
    secret = db.scalar(f"SELECT secret FROM {qualified(policy.schema_name, key_table(policy))} WHERE id = 1")
    if secret is None:
        raise SchemaError(f"no erasure key in {key_table(policy)}: run archiver migrate")
    return ErasureKey(bytes(secret))


def _upgrade(db: Database, policy: Policy, key: ErasureKey) -> None:
    """Wrap unsalted records in the HMAC (once), and refuse records written under another key."""
    records = qualified(policy.schema_name, erasure_table(policy))
    for rid, legacy in db.run(f"SELECT id, key_hash FROM {records} WHERE key_id IS NULL"):
        db.run(f"UPDATE {records} SET key_hash = :h, key_id = :k WHERE id = :i AND key_id IS NULL",
               h=key.wrap(legacy), k=key.key_id, i=rid)
    other = db.scalar(f"SELECT count(*) FROM {records} WHERE key_id <> :k", k=key.key_id)
    if other:
        raise ConfigError(f"{other} erasure records were written under another erasure key: use that key"
                          f" ({ERASURE_KEY_ENV}, or the database's own), or erased records could return")


@dataclass(frozen=True)
class ErasedKeys:
    """The erased keys of one policy, as a later restore asks: was this key erased?"""

    policy: Policy
    key: ErasureKey | None
    hashes: frozenset[str]

    def __contains__(self, key_text: object) -> bool:
        return self.key is not None and self.key.hash(self.policy, str(key_text)) in self.hashes


def erased_keys(db: Database, policy: Policy, key: ErasureKey | None = None) -> ErasedKeys:
    """The erasure records (none without the table); ``key`` None: the database's own key."""
    if not table_exists(db, policy.schema_name, erasure_table(policy)):
        return ErasedKeys(policy, None, frozenset())
    key = key or database_key(db, policy)
    _upgrade(db, policy, key)
    hashes = {r[0] for r in db.run(f"SELECT key_hash FROM {qualified(policy.schema_name, erasure_table(policy))}"
                                   " WHERE policy_key = :p", p=policy.key)}
    return ErasedKeys(policy, key, frozenset(hashes))


# -- which rows go: the record and the graph below it ----------------------------------------------
@dataclass
class _Target:
    table: Table
    label: str
    where: str  # on alias x
    params: dict[str, Any]


def _in_values(alias: str, cols: tuple[str, ...], types: dict[str, str], values: set[tuple[str, ...]],
               params: dict[str, Any]) -> str:
    """``alias``'s ``cols`` are one of ``values`` (each column's text), as typed arrays: index-friendly."""
    if not values:
        return "false"
    names, rows = [], sorted(values)
    for i, col in enumerate(cols):
        name = f"v{len(params)}"
        params[name] = [v[i] for v in rows]
        names.append(f"CAST(CAST(:{name} AS text[]) AS {types[col]}[])")
    return f"({column_list(alias, cols)}) IN (SELECT * FROM unnest({', '.join(names)}))"


class _Plan:
    """The rows to erase, table by table, top down: each table's rows referencing a row to erase
    (through any link of the graph, or the table's references to itself), live or archived."""

    def __init__(self, db: Database, policy: Policy, graph: RelatedGraph, shape: TableShape,
                 key: tuple[str, ...]) -> None:
        self.db, self.policy, self.graph = db, policy, graph
        self.values: dict[tuple[Table, tuple[str, ...]], set[tuple[str, ...]]] = {}
        self.targets: list[_Target] = []
        key_params: dict[str, Any] = {}
        key_where = _key_where(shape, "x", key_params, key)
        root = [(graph.live, "live"), ((policy.schema_name, policy.archive_table), "archive")]
        for table, _ in root:
            self._collect(graph.live, table, key_where, key_params)
        if (graph.live, shape.key_names) in self.values:  # purged rows' children still reference the key
            self.values[(graph.live, shape.key_names)].add(key)
        below = [_Target(t, label, key_where, key_params) for t, label in root]
        for table in graph.tables:
            below += self._table(table)
        self.targets = below

    def needed(self, table: Table) -> list[tuple[str, ...]]:
        """The column lists of ``table`` that links below it reference."""
        return list(dict.fromkeys(r.parent_columns for r in self.graph.links if r.parent == table
                                  and not (r.is_self and table == self.graph.live)))

    def _collect(self, logical: Table, table: Table, where: str, params: dict[str, Any]) -> bool:
        """Add the referenced values of ``table``'s rows matching ``where``; True when any are new."""
        grew = False
        for cols in self.needed(logical):
            found = self.values.setdefault((logical, cols), set())
            rows = self.db.run(f"SELECT {', '.join(f'CAST(x.{quote(c)} AS text)' for c in cols)}"
                               f" FROM {qualified(*table)} x WHERE {where}", **params)
            new = {tuple(r) for r in rows if all(v is not None for v in r)} - found
            found |= new
            grew = grew or bool(new)
        return grew

    def _table(self, table: Table) -> list[_Target]:
        types = {c.name: c.type for c in columns(self.db, *table)}
        backup = (table[0], related_archive_name(self.policy, table[1]))
        copies = [(table, table[1])]
        if table_exists(self.db, *backup):
            copies.append((backup, "archived " + table[1]))
        for _ in range(_MAX_SELF_STEPS):  # the table's references to itself: until no row is added
            params: dict[str, Any] = {}
            where = " OR ".join(
                [_in_values("x", r.columns, types, self.values.get((r.parent, r.parent_columns), set()), params)
                 for r in self.graph.into(table)]
                + [_in_values("x", r.columns, types, self.values.get((table, r.parent_columns), set()), params)
                   for r in self.graph.self_links_of(table)]) or "false"
            grew = [self._collect(table, copy, where, params) for copy, _ in copies]
            if not any(grew) or not self.graph.self_links_of(table):
                return [_Target(copy, label, where, params) for copy, label in copies]
        raise SchemaError(f"rows of {table[0]}.{table[1]} reference each other more than {_MAX_SELF_STEPS} deep")


def _referenced_by_others(db: Database, graph: RelatedGraph, shape: TableShape, key: tuple[str, ...]) -> None:
    """Refuse, before anything changes, a record another live row references through the live
    table's own references (a customer referred by another): that row is not below it."""
    live = qualified(*graph.live)
    for link in graph.self_links:
        params: dict[str, Any] = {}
        n = db.scalar(f"SELECT count(*) FROM {live} s JOIN {live} p ON ({column_list('s', link.columns)}) ="
                      f" ({column_list('p', link.parent_columns)}) WHERE {_key_where(shape, 'p', params, key)}"
                      f" AND ({shape.key_list('s')}) <> ({shape.key_list('p')})", **params)
        if n:
            raise SchemaError(f"{n} other rows of {graph.live[1]} reference this record ({link.describe()}):"
                              " change them first")


# -- erase -----------------------------------------------------------------------------------------
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


def key_text(db: Database, policy: Policy, key: object) -> str:
    """The key in its columns' canonical text (see ``canonical_key``); InvalidKeyError (never quoting
    it) when it is not one. A key of several columns: a list, or its JSON text (``[1, "2026-01-01"]``)."""
    return canonical_key(key_values(db, policy, key))


def canonical_key(texts: Sequence[str]) -> str:
    """What the erasure record hashes: a single key's text as it always was; a composite key's
    column texts (as PostgreSQL writes them) as a compact JSON array."""
    return texts[0] if len(texts) == 1 else json.dumps(list(texts), ensure_ascii=False, separators=(",", ":"))


def _key_parts(key: object, width: int, names: str) -> list[object]:
    if width == 1:
        return [key[0] if isinstance(key, list) and len(key) == 1 else key]
    if isinstance(key, str):
        try:
            key = json.loads(key)
        except ValueError:
            key = None
    if not isinstance(key, list):
        raise InvalidKeyError(f"the key is a JSON array of {width} values ({names})")
    if len(key) != width:
        raise InvalidKeyError(f"the key has {len(key)} values; the table's key has {width} ({names})")
    return list(key)


def key_values(db: Database, policy: Policy, key: object) -> tuple[str, ...]:
    """Each key column's canonical text (the live table's key, in index order)."""
    shape = live_shape(db, policy)
    out = []
    for part, col in zip(_key_parts(key, len(shape.key), ", ".join(shape.key_names)), shape.key, strict=True):
        label = "the key" if len(shape.key) == 1 else f"the key's {col.name}"
        text = str(part).strip()
        if not text or len(text) > MAX_KEY_TEXT or isinstance(part, bool | list | dict) or part is None:
            raise InvalidKeyError(f"{label} must be a {col.type} of 1 to {MAX_KEY_TEXT} characters")
        try:
            with expecting(InvalidValueError):
                out.append(str(db.scalar(f"SELECT CAST(CAST(:k AS {col.type}) AS text)", k=text)))
        except InvalidValueError:
            raise InvalidKeyError(f"{label} is not a valid {col.type}") from None
    return tuple(out)


def _key_casts(shape: TableShape, params: dict[str, Any], texts: Sequence[str]) -> str:
    """The key ``texts`` as SQL values of the key columns' types (parameters added to ``params``)."""
    casts = []
    for i, (col, text) in enumerate(zip(shape.key, texts, strict=True)):
        params[f"k{i}"] = text
        casts.append(f"CAST(:k{i} AS {col.type})")
    return ", ".join(casts)


def _key_where(shape: TableShape, alias: str, params: dict[str, Any], texts: Sequence[str]) -> str:
    """``alias``'s key is ``texts``."""
    return f"({shape.key_list(alias)}) = ({_key_casts(shape, params, texts)})"


def request_erasure(db: Database, policy: Policy, key: object, *, by: str, dry_run: bool, invoker: Invoker,
                    function: str, erasure_key: ErasureKey | None = None) -> Job:
    """The status API's erasure: validate the key, record an ``erase`` run (its hash only), and
    hand the work to the export function (it alone rewrites Parquet), which finishes the run."""
    text = key_text(db, policy, key)
    hashed = (erasure_key or database_key(db, policy)).hash(policy, text)
    jobs = JobStore(db, policy)
    job = jobs.create(kind="erase", dry_run=dry_run, batch_size=1, trigger="api",
                      options={"key_hash": hashed, "requested_by": by})
    hand_to(jobs, job.id, invoker, function, {"action": "erase", "job_id": job.id, "table": policy.live_table,
                                              "key": text, "by": by, "dry_run": dry_run}, "export")
    logger.info("erasure requested", extra={"job_id": job.id, "dry_run": dry_run})
    return job


def erase_event(event: dict[str, Any], db: Database, policy: Policy,
                erasure_key: ErasureKey | None = None) -> dict[str, Any]:
    """``{"action": "erase", "key", "by"[, "job_id", "table", "dry_run"]}`` as the export function
    receives it: erase, and finish the run the status API recorded (``job_id``)."""
    key, by, job_id = event.get("key"), event.get("by"), event.get("job_id")
    problem = None
    if not isinstance(key, str | int | list) or isinstance(key, bool) or not str(key).strip() \
            or not isinstance(by, str):
        problem = "erase needs 'key' (the primary key; several columns: a list) and 'by' (who asked)"
    elif event.get("table") not in (None, policy.live_table):
        problem = f"this function erases from {policy.live_table} only"
    if problem is not None:
        if job_id:
            JobStore(db, policy).finish(str(job_id), None, RunState.FAILED, message="erasure refused", error=problem)
        return {"status": "rejected", "error": problem}
    try:
        result = erase(db, policy, key, erased_by=str(by)[:100], dry_run=bool(event.get("dry_run")),
                       job_id=str(job_id) if job_id else None, erasure_key=erasure_key)
    except ArchiverError as exc:
        return {"status": "rejected", "error": str(exc)}
    return {"status": "erased" if not result.dry_run else "dry_run", **result.as_dict()}


def erase(db: Database, policy: Policy, key: object, *, table: str | None = None, dry_run: bool = False,
          erased_by: str = "cli", storage_for: Callable[[str], ColdStorage] = open_storage,
          job_id: str | None = None, erasure_key: ErasureKey | None = None) -> EraseResult:
    """Remove the record with key ``key`` everywhere (see the module doc; several columns: a list or
    its JSON text). ``job_id``: the
    ``erase`` run the status API created, which this finishes (a dry run too); else one is created."""
    jobs = JobStore(db, policy)
    owner = f"erase-{job_id}"
    if job_id is not None and jobs.claim(job_id, owner, 3600, None) is None:
        raise ConfigError(f"erase run {job_id} is not waiting to be done")
    try:
        if table not in (None, policy.live_table, policy.archive_table):
            raise ConfigError(f"--table {table!r}: this policy erases from {policy.live_table} and "
                              f"{policy.archive_table}")
        values = key_values(db, policy, key)
        ekey = erasure_key or database_key(db, policy)
        result = EraseResult(ekey.hash(policy, canonical_key(values)), dry_run, job_id=job_id)
        result = _erase(db, policy, values, ekey, result, erased_by, storage_for, jobs, owner)
    except Exception as exc:
        if job_id is not None:
            jobs.fail(job_id, owner, str(exc) if isinstance(exc, ArchiverError) else describe_error(exc))
        raise
    return result


def _erase(db: Database, policy: Policy, key: tuple[str, ...], ekey: ErasureKey, result: EraseResult,
           erased_by: str, storage_for: Callable[[str], ColdStorage], jobs: JobStore, owner: str) -> EraseResult:
    shape = live_shape(db, policy)
    graph = related_graph(db, policy)
    _referenced_by_others(db, graph, shape, key)
    plan = _Plan(db, policy, graph, shape, key)
    for t in plan.targets:
        result.removed[t.label] = result.removed.get(t.label, 0) + int(
            db.scalar(f"SELECT count(*) FROM {qualified(*t.table)} x WHERE {t.where}", **t.params))
    files = _exported_files(db, policy, shape, key)
    related = _RelatedFiles(db, policy, graph, plan, storage_for)
    related.follow(_archived_times(db, policy, shape, key, plan))
    result.files = [f for _, _, f in files] + [e.key for e in related.edits]
    counts = {"removed": result.removed, "files_rewritten": len(result.files)}
    if result.dry_run:
        if result.job_id is not None:
            jobs.finish(result.job_id, owner, RunState.SUCCEEDED, "dry run: nothing removed", result=counts)
        return result
    if table_exists(db, policy.schema_name, erasure_table(policy)):
        _upgrade(db, policy, ekey)  # before anything changes: records under another key are refused
    else:  # migrated by an older version: the first erase creates what migrate now does
        ensure_erasure_tables(db, policy)
    if result.job_id is None:
        run = jobs.create(kind="erase", batch_size=1, trigger=erased_by, options={"key_hash": result.key_hash})
        result.job_id, owner = run.id, f"erase-{run.id}"
        jobs.claim(run.id, owner, 3600, 1)
    try:
        for export_id, dest in sorted({(e, d) for e, d, _ in files} | {(e.export_id, e.dest) for e in related.edits}):
            _rewrite(db, policy, storage_for(dest), export_id, key, [f for e, _, f in files if e == export_id],
                     [e for e in related.edits if e.export_id == export_id])
        with db.transaction():
            plan = _Plan(db, policy, graph, shape, key)  # again, inside the transaction that deletes
            for t in reversed(plan.targets):  # deepest first: no foreign key sees a parent go first
                db.run(f"DELETE FROM {qualified(*t.table)} x WHERE {t.where}", **t.params)
            if table_exists(db, policy.schema_name, ledger_name(policy)):
                params: dict[str, Any] = {}
                db.run(f"DELETE FROM {qualified(policy.schema_name, ledger_name(policy))} l"
                       f" WHERE {_ledger_key_where(shape, params, key)}", **params)
            db.run(f"INSERT INTO {qualified(policy.schema_name, erasure_table(policy))} (policy_key, key_hash,"
                   " key_id, erased_by, removed) VALUES (:p, :h, :i, :b, CAST(:r AS jsonb))"
                   " ON CONFLICT (policy_key, key_hash) DO UPDATE SET erased_at = now(),"
                   " erased_by = EXCLUDED.erased_by, removed = EXCLUDED.removed, key_id = EXCLUDED.key_id",
                   p=policy.key, h=result.key_hash, i=ekey.key_id, b=erased_by,
                   r=json.dumps({**result.removed, "files": len(result.files)}))
    except Exception as exc:
        jobs.fail(result.job_id, owner, str(exc) if isinstance(exc, ArchiverError) else describe_error(exc))
        raise
    total = sum(result.removed.values())
    jobs.finish(result.job_id, owner, RunState.SUCCEEDED,
                f"erased one record: {total} rows, {len(result.files)} files rewritten", result=counts)
    return result


def _ledger_key_where(shape: TableShape, params: dict[str, Any], key: Sequence[str]) -> str:
    """The ledger rows (alias ``l``) of the key."""
    cols = ", ".join(f"l.{quote(c)}" for c in ledger_key_columns(len(shape.key)))
    return f"({cols}) = ({_key_casts(shape, params, key)})"


def _exported_files(db: Database, policy: Policy, shape: TableShape, key: Sequence[str]) -> list[tuple[str, str, str]]:
    """(export id, destination, file) of every exported file that holds the key, from the ledger."""
    if not table_exists(db, policy.schema_name, ledger_name(policy)):
        return []
    ledger = qualified(policy.schema_name, ledger_name(policy))
    params: dict[str, Any] = {}
    return [(str(r[0]), r[1], r[2]) for r in db.run(
        f"SELECT DISTINCT l.export_id, e.options->>'dest', l.file FROM {ledger} l"
        f" JOIN {qualified(policy.schema_name, policy.log_table)} e ON e.job_id = l.export_id"
        f" WHERE {_ledger_key_where(shape, params, key)} ORDER BY 3", **params)]


def _archived_times(db: Database, policy: Policy, shape: TableShape, key: Sequence[str], plan: _Plan) -> list[str]:
    """When the record and the rows below it were archived (each archive batch moves a row and its
    related rows at one ``archived_at``): from the export ledger (rows purged since) and the archive."""
    times: set[str] = set()
    if table_exists(db, policy.schema_name, ledger_name(policy)):
        params: dict[str, Any] = {}
        times |= {r[0] for r in db.run(f"SELECT CAST(l.archived_at AS text) FROM"
                                       f" {qualified(policy.schema_name, ledger_name(policy))} l"
                                       f" WHERE {_ledger_key_where(shape, params, key)}", **params)}
    for t in plan.targets:
        if t.label == "archive" or t.label.startswith("archived "):
            times |= {r[0] for r in db.run(f"SELECT DISTINCT CAST(x.archived_at AS text) FROM {qualified(*t.table)} x"
                                           f" WHERE {t.where}", **t.params)}
    return sorted(times)


def _literal(v: Any) -> str:
    """A value read from Parquet as PostgreSQL reads it back."""
    if isinstance(v, bytes | bytearray | memoryview):
        return "\\x" + bytes(v).hex()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, date | dtime):
        return v.isoformat()
    return str(v)


def _pg_texts(db: Database, pg_type: str, values: Sequence[Any]) -> list[str | None]:
    """Values of one column of a file, as PostgreSQL writes them (as the plan and the key have them)."""
    if not values:
        return []
    return [r[0] for r in db.run(
        f"SELECT CAST(CAST(u.v AS {pg_type}) AS text) FROM unnest(CAST(:v AS text[])) WITH ORDINALITY u(v, n)"
        " ORDER BY u.n", v=[None if x is None else _literal(x) for x in values])]


@dataclass
class _RelatedEdit:
    """One exported file of a related archive table (move mode) and the rows erasure leaves in it."""

    export_id: str
    dest: str
    key: str
    table: Table  # the live-side table its rows were archived from
    specs: list[ColumnSpec]
    rows: list[tuple[Any, ...]]
    texts: dict[str, list[str | None]]  # the graph's columns, as PostgreSQL writes them
    drop: set[int] = field(default_factory=set)


class _RelatedFiles:
    """The exported related rows below the record: the files of the batches the record and its rows
    were archived in (the related ledger names them), read, and the graph followed inside them from
    what the database plan found, top down, to any depth (rows purged since are only in the files)."""

    def __init__(self, db: Database, policy: Policy, graph: RelatedGraph, plan: _Plan,
                 storage_for: Callable[[str], ColdStorage]) -> None:
        self.db, self.policy, self.graph, self.plan, self.storage_for = db, policy, graph, plan, storage_for
        self.edits: list[_RelatedEdit] = []

    def follow(self, times: list[str]) -> None:
        ledger = related_ledger_name(self.policy)
        if self.policy.related_mode != "move" or not times or not table_exists(self.db, self.policy.schema_name,
                                                                                ledger):
            return
        found = self.db.run(
            f"SELECT DISTINCT CAST(l.export_id AS text), e.options->>'dest', l.file"
            f" FROM {qualified(self.policy.schema_name, ledger)} l"
            f" JOIN {qualified(self.policy.schema_name, self.policy.log_table)} e ON e.job_id = l.export_id"
            " WHERE l.archived_at = ANY(CAST(CAST(:t AS text[]) AS timestamptz[])) ORDER BY 3", t=times)
        loaded = [e for export_id, dest, file in found if (e := self._load(export_id, dest, file)) is not None]
        values = {k: set(v) for k, v in self.plan.values.items()}
        for table in self.graph.tables:
            mine = [e for e in loaded if e.table == table]
            links = [*self.graph.into(table), *self.graph.self_links_of(table)]
            while any(self._drop(e, links, values) for e in mine):  # until no row is added (self references)
                pass
        self.edits = [e for e in loaded if e.drop]

    def _load(self, export_id: str, dest: str, file: str) -> _RelatedEdit | None:
        options = JobStore(self.db, self.policy).get(export_id).options
        entry = next((f for f in options.get("related_files", []) if f["key"] == file), None)
        meta = next((m for m in options.get("related", []) if entry and m["table"] == entry.get("table")), None)
        if entry is None or meta is None:
            return None
        table = (meta["schema"], meta["source_table"])
        specs = [column_spec(c["name"], c["pg_type"]) for c in meta["columns"]]
        rows = from_parquet(self.storage_for(dest).get(file), [s.name for s in specs])
        wanted = {c for r in self.graph.links if r.child == table for c in r.columns}
        wanted |= {c for r in self.graph.links if r.parent == table for c in r.parent_columns}
        texts = {s.name: _pg_texts(self.db, s.pg_type, [r[i] for r in rows])
                 for i, s in enumerate(specs) if s.name in wanted}
        return _RelatedEdit(export_id, dest, file, table, specs, rows, texts)

    def _drop(self, edit: _RelatedEdit, links: list[Any], values: dict[tuple[Table, tuple[str, ...]],
                                                                       set[tuple[str, ...]]]) -> bool:
        """Mark the file's rows that belong to an erased row; True when any was marked."""
        grew = False
        for i in range(len(edit.rows)):
            if i in edit.drop or not any(tuple(edit.texts[c][i] for c in r.columns)
                                         in values.get((r.parent, r.parent_columns), ()) for r in links):
                continue
            edit.drop.add(i)
            grew = True
            for cols in self.plan.needed(edit.table):
                row = tuple(edit.texts[c][i] for c in cols)
                if all(v is not None for v in row):
                    values.setdefault((edit.table, cols), set()).add(row)  # type: ignore[arg-type]
        return grew


def _rewrite(db: Database, policy: Policy, storage: ColdStorage, export_id: str, key: tuple[str, ...],
             keys: list[str], related: list[_RelatedEdit]) -> None:
    """Rewrite the export's files without the record's rows (``keys``: the archive table's files that
    hold it; ``related``: its related files), then their ledger rows, file lists and manifest."""
    jobs = JobStore(db, policy)
    job = jobs.get(export_id)
    try:
        stored: dict[str, Any] | None = json.loads(storage.get(manifest_key(policy.archive_table, export_id)))
    except StorageError:  # an export that failed before its manifest: its files are still rewritten
        stored = None
    specs = ([column_spec(c["name"], c["pg_type"]) for c in stored["columns"]] if stored
             else archive_specs(db, policy))
    key_names = (list(stored.get("key") or [stored["primary_key"]]) if stored
                 else list(live_shape(db, policy).key_names))
    if keys:
        names = [s.name for s in specs]
        entries = []
        for entry in job.options.get("files", []):
            if entry["key"] in keys:
                rows = from_parquet(storage.get(entry["key"]), names)
                texts = list(zip(*(_pg_texts(db, specs[names.index(k)].pg_type, [r[names.index(k)] for r in rows])
                                   for k in key_names), strict=True))
                kept = [r for r, t in zip(rows, texts, strict=True) if t != key]
                entry = _put_or_delete(storage, entry, specs, kept, {"export_id": export_id,
                                                                     "table": policy.archive_table})
            if entry:
                entries.append(entry)
        jobs.record_export_files(export_id, entries, rows=sum(e["rows"] for e in entries))
    if related:
        _rewrite_related(db, policy, storage, jobs, export_id, related)
    if stored is None:
        return
    current = jobs.get(export_id)
    doc = {**manifest(current, policy, specs, key_names), "created_at": stored["created_at"],
           "erasures": int(stored.get("erasures", 0)) + 1}
    storage.put(manifest_key(policy.archive_table, export_id), json.dumps(doc, indent=1).encode())
    if isinstance(storage, S3Storage):
        storage.purge_old_versions(manifest_key(policy.archive_table, export_id))


def _put_or_delete(storage: ColdStorage, entry: dict[str, Any], specs: Sequence[ColumnSpec],
                   rows: list[tuple[Any, ...]], meta: dict[str, Any]) -> dict[str, Any]:
    """The file again with ``rows`` (its new entry), or gone without any (an empty entry)."""
    if rows:
        data = to_parquet(specs, rows, meta)
        storage.put(entry["key"], data)
        out = {**entry, "rows": len(rows), "bytes": len(data), "checksum": checksum(row_digest(r) for r in rows)}
    else:
        storage.delete(entry["key"])
        out = {}
    if isinstance(storage, S3Storage):  # a versioned bucket keeps the old object otherwise
        storage.purge_old_versions(entry["key"])
    return out


def _rewrite_related(db: Database, policy: Policy, storage: ColdStorage, jobs: JobStore, export_id: str,
                     related: list[_RelatedEdit]) -> None:
    """The related files without the erased rows, their entries in the run, and the related ledger:
    a batch's row there goes with the last of its rows in the file."""
    by_key = {e.key: e for e in related}
    ledger = qualified(policy.schema_name, related_ledger_name(policy))
    entries = []
    for entry in jobs.get(export_id).options.get("related_files", []):
        edit = by_key.get(entry["key"])
        if edit is not None:
            kept = [r for i, r in enumerate(edit.rows) if i not in edit.drop]
            entry = _put_or_delete(storage, entry, edit.specs, kept, {"export_id": export_id, "table": entry["table"],
                                                                       "format": FORMAT})
            names = [s.name for s in edit.specs]
            job_i, at_i = names.index("archive_job_id"), names.index("archived_at")
            left = {(str(r[job_i]), r[at_i]) for r in kept}
            for job_id, at in db.run(f"SELECT CAST(archive_job_id AS text), archived_at FROM {ledger}"
                                     " WHERE export_id = CAST(:e AS uuid) AND file = :f", e=export_id, f=edit.key):
                if (job_id, at) not in left:
                    db.run(f"DELETE FROM {ledger} WHERE export_id = CAST(:e AS uuid) AND file = :f"
                           " AND archive_job_id = CAST(:j AS uuid) AND archived_at = :t",
                           e=export_id, f=edit.key, j=job_id, t=at)
        if entry:
            entries.append(entry)
    jobs.record_export_files(export_id, entries, field="related_files")
