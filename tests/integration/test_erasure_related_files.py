"""Erasure in move mode reaches the exported related files (issue 22, point 5): the record's lines and
their parts, at any depth, leave every Parquet file (the manifest, checksums and ledgers follow), also
when the database rows were purged already; a restore of the export brings everyone else back
identical and the erased record's rows never. The key here is composite (``orders (region, code)``)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from archiver.cold_restore import restore_from
from archiver.cold_storage import LocalStorage
from archiver.erasure import erase, erasure_table
from archiver.exceptions import InvalidKeyError
from archiver.export import export, verify_export
from archiver.migration import ledger_name, related_ledger_name
from archiver.restore import purge
from tests.helpers import count
from tests.integration.test_export_keys_and_related import RELATED, archived_family, rows_of

pytest.importorskip("pyarrow")

TABLES = ("orders_backup", *RELATED)


def file_keys(root) -> Counter:
    """(region, code) of every row in every exported file, by table."""
    import pyarrow.parquet as pq

    out: Counter = Counter()
    for f in root.rglob("*.parquet"):
        t = pq.read_table(f)
        out.update((f.parent.parent.parent.name, r, c) for r, c in zip(t.column("region").to_pylist(),
                                                                       t.column("code").to_pylist(), strict=True))
    return out


def without(rows: Counter, region: int, code: str) -> Counter:
    return Counter({r: n for r, n in rows.items() if not r.startswith(f"({region},{code},")})


@pytest.mark.parametrize("purged_first", [False, True])
def test_an_erased_order_leaves_every_exported_file_at_any_depth_and_never_comes_back(
        db, policy, settings, tmp_path, purged_first):
    pol, before = archived_family(db, policy, settings)
    storage = LocalStorage(tmp_path)
    old = export(db, pol, storage, 730, rows_per_file=5)
    assert old.verified and old.related == {"order_lines_backup": 14, "line_parts_backup": 28}
    region, code = db.run("SELECT region, code FROM orders_backup ORDER BY code LIMIT 1")[0]
    assert file_keys(tmp_path)[("line_parts_backup", region, code)] == 4
    if purged_first:  # the rows below the order then live in the files only
        assert purge(db, pol, 730).as_dict()["purged"] == 49

    result = erase(db, pol, json.dumps([region, code]), erased_by="dpo")
    assert len(result.files) == 3  # the order's file, its lines' and its parts'
    in_db = 0 if purged_first else 1
    assert [result.removed[t] for t in ("archive", "archived order_lines", "archived line_parts")] == [
        in_db, 2 * in_db, 4 * in_db]
    in_files = file_keys(tmp_path)
    assert not [k for k in in_files if k[1:] == (region, code)]
    assert sum(in_files.values()) == 49 - 7  # one order, its two lines, their four parts
    if not purged_first:
        assert not verify_export(db, pol, storage, old.export_id)  # files, manifest and checksums agree
        assert db.scalar(f"SELECT count(*) FROM {related_ledger_name(pol)} WHERE archived_at IS NULL") == 0
        assert purge(db, pol, 730).as_dict()["purged"] == 42
    assert db.scalar(f"SELECT count(*) FROM {ledger_name(pol)} WHERE key = :r AND key_2 = :c", r=region, c=code) == 0
    assert all(count(db, t) == 0 for t in TABLES)

    _, restored = restore_from(db, pol, storage, export_id=old.export_id)
    assert restored.restored == 6 and restored.related_restored == 36 and restored.conflict_count == 0
    assert {t: rows_of(db, t) for t in TABLES} == {t: without(before[t], region, code) for t in TABLES}
    record = json.dumps(db.run(f"SELECT CAST(ROW(e.*) AS text) FROM {erasure_table(pol)} e"))
    assert code not in record and "dpo" in record  # who, when, counts and a keyed hash: no customer data


def test_a_composite_key_of_the_wrong_width_is_refused_without_quoting_it(db, policy, settings):
    pol, _ = archived_family(db, policy, settings)
    for bad in ('[1]', '[1, "c", 3]', "c0-0", '{"region": 1}', '[true, "x"]'):
        with pytest.raises(InvalidKeyError) as refused:
            erase(db, pol, bad, dry_run=True)
        assert "c0-0" not in str(refused.value) and "\n" not in str(refused.value)
    region, code = db.run("SELECT region, code FROM orders_backup ORDER BY code LIMIT 1")[0]
    dry = erase(db, pol, [region, code], dry_run=True)  # a list, as the API hands it over
    assert dry.removed["archived order_lines"] == 2 and dry.removed["archived line_parts"] == 4
    assert dry.key_hash == erase(db, pol, json.dumps([str(region), code]), dry_run=True).key_hash


def test_a_copy_of_the_export_taken_before_the_erasure_brings_back_neither_the_order_nor_its_rows(
        db, policy, settings, tmp_path):
    import shutil

    pol, before = archived_family(db, policy, settings)
    old = export(db, pol, LocalStorage(tmp_path / "cold"), 730, rows_per_file=5)
    shutil.copytree(tmp_path / "cold", tmp_path / "copy")  # say, a backup of the bucket
    region, code = db.run("SELECT region, code FROM orders_backup ORDER BY code DESC LIMIT 1")[0]
    erase(db, pol, [region, code])
    assert purge(db, pol, 730).as_dict()["purged"] == 42
    _, restored = restore_from(db, pol, LocalStorage(tmp_path / "copy"), export_id=old.export_id)
    assert restored.restored == 6 and restored.related_restored == 36  # the erased order's 6 rows stay out
    assert {t: rows_of(db, t) for t in TABLES} == {t: without(before[t], region, code) for t in TABLES}
