"""Erasure over generated foreign-key graphs on a real PostgreSQL (Hypothesis): for the schemas and
data of ``strategies`` (chains and fans of related tables, references on the key, a unique column or
two columns, references to themselves, every ON DELETE action), after a run has archived some of it,
erasing one customer removes exactly that customer and every row below it, live or archived, at any
depth (``strategies.below``), and changes no other row; in move mode, exported first, every exported
file (the archive table's and the related tables') then holds exactly the rows left in the archive;
a customer another live customer references
(an archived one is not below it: it stays) is refused and nothing changes."""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archiver import catalogue
from archiver.cold_storage import LocalStorage
from archiver.config import load_policy
from archiver.engine import Archiver
from archiver.erasure import erase
from archiver.exceptions import SchemaError
from archiver.export import export, verify_export

from .strategies import RETENTION_DAYS, Data, Schema, below, datasets, live_key, schemas
from .test_foreign_key_graph import CAMPAIGN, QUICK, build, tables_state


def cases() -> st.SearchStrategy[tuple[Schema, Data, int]]:
    """A schema a run can archive through (no reference from the live table to a related one), its data
    and the customer to erase."""
    graphs = st.tuples(schemas(), st.sampled_from(["skip", "move"])).map(
        lambda s: replace(s[0], mode=s[1], back_ref=False))
    return graphs.flatmap(lambda s: datasets(s).flatmap(
        lambda d: st.tuples(st.just(s), st.just(d), st.integers(0, len(d.live) - 1))))


def check_erasure(db, env, run_settings, schema: Schema, data: Data, victim: int) -> None:
    policy = load_policy({**env, "ARCHIVER_RELATED_MODE": schema.mode, "ARCHIVER_RETENTION_DAYS": str(RETENTION_DAYS)})
    build(db, policy, schema, data)
    archiver = Archiver(db, policy, run_settings)
    archiver.run_hop(archiver.start().id, owner="w", hop=1)
    with tempfile.TemporaryDirectory() as cold:
        exported = _export(db, policy, schema, Path(cold)) if schema.mode == "move" else None
        _erase_and_check(db, policy, schema, data, victim)
        if schema.mode == "move":  # the files hold exactly what the archive tables still hold
            assert _file_rows(Path(cold)) == _archive_rows(db, schema)
            assert exported is None or not verify_export(db, policy, LocalStorage(Path(cold)), exported)


def _archives(db, schema: Schema) -> list[str]:
    return [t for t in ["nic_cc_customer_backup", *(f"r{i}_backup" for i in range(len(schema.related)))]
            if catalogue.table_exists(db, "public", t)]


def _export(db, policy, schema: Schema, root: Path) -> str | None:
    for table in _archives(db, schema):
        db.run(f"UPDATE {table} SET archived_at = archived_at - interval '800 days'")
    result = export(db, policy, LocalStorage(root), 730, rows_per_file=3)
    assert result.verified
    return result.export_id


def _file_rows(root: Path) -> Counter:
    import pyarrow.parquet as pq

    return Counter({t.name: sum(pq.read_table(f).num_rows for f in t.rglob("*.parquet")) for t in root.iterdir()
                    if t.is_dir()})


def _archive_rows(db, schema: Schema) -> Counter:
    return Counter({t: n for t in _archives(db, schema) if (n := db.scalar(f"SELECT count(*) FROM {t}"))})


def _erase_and_check(db, policy, schema: Schema, data: Data, victim: int) -> None:
    before = tables_state(db, schema)
    key = str(live_key(schema, data, victim))
    live_customers = before["nic_cc_customer"][0]
    if any(j != victim and row.ref == victim and str(live_key(schema, data, j)) in live_customers
           for j, row in enumerate(data.live)):
        with pytest.raises(SchemaError, match="reference this record"):
            erase(db, policy, key)
        assert tables_state(db, schema) == before
        return
    erase(db, policy, key)
    gone = [{key}, *({str(j) for j in rows} for rows in below(schema, data, {victim}))]
    for (table, (live0, archived0)), erased in zip(before.items(), gone, strict=True):
        live, archived = tables_state(db, schema)[table]
        assert live == {k: v for k, v in live0.items() if k not in erased}, f"{table}: live rows"
        assert archived == {k: v for k, v in archived0.items() if k not in erased}, f"{table}: archived rows"


@QUICK
@given(case=cases())
def test_erasure_removes_the_record_and_everything_below_it_and_nothing_else(db, env, settings, case):
    check_erasure(db, env, settings, *case)


@pytest.mark.slow
@pytest.mark.chaos
@CAMPAIGN
@given(case=cases())
def test_campaign_erasure_removes_the_record_and_everything_below_it_and_nothing_else(db, env, settings, case):
    check_erasure(db, env, settings, *case)
