"""Related records: which tables hold rows that belong to a live row, and whether the policy's
mode can handle them without a foreign key failing a run half-way or cascading a delete."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Policy
from .db import Database
from .exceptions import SchemaError
from .schema import columns, foreign_keys_to, table_exists

_ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


@dataclass(frozen=True)
class Related:
    schema: str
    table: str
    column: str
    via_fk: bool
    on_delete: str | None = None


def related_tables(db: Database, policy: Policy) -> list[Related]:
    """Tables with a foreign key to the live table, plus those the policy lists, in move order.

    Move order puts a table before any related table it references, so moving never trips
    a foreign key between two related tables.
    """
    found: dict[tuple[str, str], Related] = {}
    for fk in foreign_keys_to(db, policy.schema_name, policy.live_table):
        if (fk.schema, fk.table) == (policy.schema_name, policy.live_table):
            continue  # a self-reference is not a related table
        if len(fk.columns) != 1:
            raise SchemaError(f"{fk.schema}.{fk.table} references the live table with a composite key")
        found.setdefault((fk.schema, fk.table), Related(fk.schema, fk.table, fk.columns[0], True, fk.on_delete))
    for listed in policy.related_tables:
        key = (policy.schema_name, listed.table)
        if key not in found:
            if not table_exists(db, *key):
                raise SchemaError(f"related table {listed.table!r} listed in the policy does not exist")
            if listed.column not in {c.name for c in columns(db, *key)}:
                raise SchemaError(f"related table {listed.table!r} has no column {listed.column!r}")
            found[key] = Related(key[0], key[1], listed.column, False)
    return _move_order(db, list(found.values()))


def _move_order(db: Database, tables: list[Related]) -> list[Related]:
    names = {(r.schema, r.table) for r in tables}
    referenced_by: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for r in tables:
        referenced_by[(r.schema, r.table)] = {
            (fk.schema, fk.table) for fk in foreign_keys_to(db, r.schema, r.table)
        } - {(r.schema, r.table)}
    ordered: list[Related] = []
    pending = list(tables)
    while pending:
        placed = {(r.schema, r.table) for r in ordered}
        ready = [r for r in pending if (referenced_by[(r.schema, r.table)] & names) <= placed]
        if not ready:  # a cycle between related tables: keep the given order, preflight reports it
            ready = pending[:1]
        ordered.extend(ready)
        pending = [r for r in pending if r not in ready]
    return ordered


def preflight(db: Database, policy: Policy, related: list[Related]) -> None:
    """Refuse, before any row moves, a configuration a foreign key would break half-way."""
    fk_tables = [r for r in related if r.via_fk]
    if policy.related_mode == "keep" and fk_tables:
        r = fk_tables[0]
        raise SchemaError(
            f"related mode 'keep' is impossible: {r.schema}.{r.table}.{r.column} is a foreign key to the live "
            f"table (ON DELETE {_ON_DELETE.get(r.on_delete or 'a', r.on_delete)}), so deleting a customer "
            "would fail or change that table; use related mode 'skip' or 'move'"
        )
    if policy.related_mode == "move":
        names = {(r.schema, r.table) for r in related} | {(policy.schema_name, policy.live_table)}
        for r in related:
            for fk in foreign_keys_to(db, r.schema, r.table):
                if (fk.schema, fk.table) not in names:
                    raise SchemaError(
                        f"related mode 'move' cannot move {r.schema}.{r.table}: {fk.schema}.{fk.table} "
                        "references it and is not itself related to the live table"
                    )
    rules = policy.rules
    needed = {
        "no_active_aod": rules.aod_table, "no_unpaid_installment": rules.installment_table,
        "no_upcoming_follow_up": rules.follow_up_table, "no_recent_call": rules.call_log_table,
    }
    for rule in rules.enabled:
        if not table_exists(db, policy.schema_name, needed[rule]):
            raise SchemaError(f"rule {rule} needs table {policy.schema_name}.{needed[rule]}, which does not exist")
