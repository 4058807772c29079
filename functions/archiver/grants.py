"""The grants each step needs (docs/security.md), checked before the step starts: a role without
one is told which grant is missing, instead of failing half-way with "permission denied"."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Policy
from .db import Database
from .exceptions import PermissionDeniedError, UndefinedSchemaError, UndefinedTableError
from .identifiers import qualified, quote
from .migration import related_archive_name
from .related import related_graph

STEPS = ("run", "dry-run", "restore", "purge")
_LOG = ("SELECT", "INSERT", "UPDATE")  # every step is a run in the run log
# The primary key's columns, else (a related table may have none) the first column.
_KEY_COLUMNS_SQL = ("SELECT COALESCE(string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),"
                    " (SELECT quote_ident(c.attname) FROM pg_attribute c WHERE c.attrelid = CAST(:t AS regclass)"
                    " AND c.attnum > 0 AND NOT c.attisdropped ORDER BY c.attnum LIMIT 1)) FROM pg_index i"
                    " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)"
                    " WHERE i.indrelid = CAST(:t AS regclass) AND i.indisprimary")


@dataclass(frozen=True)
class Need:
    """Privileges on one table; ``any_column`` is a column privilege on at least one column
    (``FOR UPDATE`` needs UPDATE on one column, and the job is granted only that)."""

    table: str  # schema-qualified, quoted
    privileges: tuple[str, ...]
    any_column: str | None = None


def needs(db: Database, policy: Policy, step: str) -> list[Need]:
    """What ``step`` (one of STEPS) does to which table, as docs/security.md lists it."""
    s = policy.schema_name
    live, archive = qualified(s, policy.live_table), qualified(s, policy.archive_table)
    out = [Need(qualified(s, policy.log_table), _LOG)]
    if step == "restore":
        return [*out, Need(live, ("SELECT", "INSERT")), Need(archive, ("SELECT", "DELETE"))]
    if step == "purge":
        return [*out, Need(archive, ("SELECT", "DELETE"))]
    out.append(Need(live, ("SELECT",)) if step == "dry-run" else Need(live, ("SELECT", "DELETE"), "UPDATE"))
    graph = related_graph(db, policy)
    if step == "run":
        out.append(Need(archive, ("SELECT", "INSERT")))
    elif graph.self_links:  # a row this run archived holds back the rows it references (Eligibility)
        out.append(Need(archive, ("SELECT",)))
    if policy.related_mode == "keep":
        return out
    moved = policy.related_mode == "move" and step == "run"
    # skip reads the tables referencing the live table; move goes down the whole graph, and locks
    # (FOR UPDATE) the rows of the tables others reference before it moves any.
    tables = graph.tables if policy.related_mode == "move" else list(dict.fromkeys(r.child for r in graph.children))
    for t in tables:
        if moved:
            out.append(Need(qualified(*t), ("SELECT", "DELETE"), "UPDATE" if graph.has_children(t) else None))
            out.append(Need(qualified(t[0], related_archive_name(policy, t[1])), ("SELECT", "INSERT")))
        else:
            out.append(Need(qualified(*t), ("SELECT",)))
    return out


def missing(db: Database, policy: Policy, step: str) -> list[str]:
    """The GRANT statements the connected role lacks for ``step`` (empty: it may go ahead). A table
    that does not exist yet is the migration's to create; the run log must exist."""
    s = policy.schema_name
    if not db.scalar("SELECT to_regnamespace(:s) IS NOT NULL", s=s):
        raise UndefinedSchemaError(f"schema {s!r} does not exist: check ARCHIVER_SCHEMA (the policy's schema_name)")
    role = quote(str(db.scalar("SELECT current_user")))
    if not db.scalar("SELECT has_schema_privilege(:s, 'USAGE')", s=s):
        return [f"GRANT USAGE ON SCHEMA {quote(s)} TO {role}"]
    log = qualified(s, policy.log_table)
    if not db.scalar("SELECT to_regclass(:t) IS NOT NULL", t=log):
        raise UndefinedTableError(f"the run log {s}.{policy.log_table} does not exist: run `archiver migrate` first")
    grants = []
    for need in needs(db, policy, step):
        if not db.scalar("SELECT to_regclass(:t) IS NOT NULL", t=need.table):
            continue
        lacking = [p for p in need.privileges if not db.scalar("SELECT has_table_privilege(:t, :p)", t=need.table, p=p)]
        if lacking:
            grants.append(f"GRANT {', '.join(lacking)} ON {need.table} TO {role}")
        if need.any_column and not db.scalar("SELECT has_any_column_privilege(:t, :p)", t=need.table,
                                              p=need.any_column):
            key = db.scalar(_KEY_COLUMNS_SQL, t=need.table)
            grants.append(f"GRANT {need.any_column} ({key}) ON {need.table} TO {role}")
    sequence = db.scalar("SELECT pg_get_serial_sequence(:t, 'id')", t=log)
    if sequence and not db.scalar("SELECT has_sequence_privilege(:q, 'USAGE')", q=sequence):
        grants.append(f"GRANT USAGE ON SEQUENCE {sequence} TO {role}")
    return grants


def check(db: Database, policy: Policy, step: str) -> None:
    """Raise PermissionDeniedError naming every missing grant, before ``step`` changes anything."""
    lacking = missing(db, policy, step)
    if lacking:
        raise PermissionDeniedError(f"permission denied: the database role cannot {step} without"
                                    f" {'; '.join(lacking)} (docs/security.md lists the grants)")
