"""Erasure on the real PostgreSQL (issue 22, point 5): the whole graph below the record, at any depth,
live and archived and exported; keyed erasure records (HMAC) that later restores re-apply."""

from __future__ import annotations

import hashlib
import json

import pytest

from archiver import migration
from archiver.cold_restore import restore_from
from archiver.cold_storage import LocalStorage
from archiver.config import load_policy
from archiver.engine import Archiver
from archiver.erasure import (
    ErasureKey,
    database_key,
    erase,
    erase_event,
    erased_keys,
    erasure_table,
    key_table,
    legacy_hash,
)
from archiver.exceptions import ConfigError, InvalidKeyError, SchemaError
from archiver.export import export
from archiver.restore import purge
from tests.helpers import add_customers, count, setup

pytest.importorskip("pyarrow")

# Below the customer: its calls, notes on a call, replies to a note (the notes reference each other).
NOTES = ("CREATE TABLE nic_cc_call_note (id bigserial PRIMARY KEY, call_id bigint REFERENCES nic_cc_call_log (id),"
         " reply_to bigint REFERENCES nic_cc_call_note (id), body text NOT NULL)")


@pytest.fixture
def moving(env, db):
    policy = load_policy({**env, "ARCHIVER_RELATED_MODE": "move"})
    setup(db, policy)
    db.run(NOTES)
    migration.migrate(db, policy)
    return policy


def person(db, policy, age_days: float, tag: str) -> int:
    """A customer with two calls, a note on the first, a reply to it and a reply to the reply."""
    (cid,) = add_customers(db, policy, [age_days])
    calls = [db.scalar("INSERT INTO nic_cc_call_log (customer_id, called_at, outcome) VALUES (:c, now(), :o)"
                       " RETURNING id", c=cid, o=f"{tag} call {i}") for i in range(2)]
    parent = None
    for depth in range(3):
        parent = db.scalar("INSERT INTO nic_cc_call_note (call_id, reply_to, body) VALUES (:c, :r, :b) RETURNING id",
                           c=calls[0] if depth == 0 else None, r=parent, b=f"{tag} note {depth}")
    return cid


def everywhere(db, tag: str) -> int:
    """Rows carrying ``tag`` in any live or archive table of the graph."""
    return sum(count(db, t, f"{col} LIKE :t", t=f"{tag}%") for t, col in (
        ("nic_cc_call_log", "outcome"), ("nic_cc_call_log_backup", "outcome"),
        ("nic_cc_call_note", "body"), ("nic_cc_call_note_backup", "body")))


def archive_all(db, policy, settings) -> None:
    archiver = Archiver(db, policy, settings)
    assert archiver.run_hop(archiver.start().id, owner="w", hop=1).status == "done"
    db.run("UPDATE nic_cc_customer_backup SET archived_at = archived_at - interval '800 days'")


def parquet_ids(root) -> list[int]:
    import pyarrow.parquet as pq

    return [i for f in root.rglob("*.parquet") for i in pq.read_table(f).column("id").to_pylist()]


def test_migrate_creates_the_erasure_records_and_a_key_only_its_owner_reads(db, policy):
    setup(db, policy)
    assert db.scalar(f"SELECT count(*) FROM {erasure_table(policy)}") == 0
    public = db.scalar("SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a WHERE c.relname = :t"
                       " AND a.grantee = 0", t=key_table(policy))
    assert public == 0 and db.scalar("SELECT relacl IS NOT NULL FROM pg_class WHERE relname = :t", t=key_table(policy))
    key = database_key(db, policy)
    migration.migrate(db, policy)  # again: the key stays the same
    assert database_key(db, policy) == key and len(key.secret) == 32


def test_an_archived_record_goes_from_every_table_and_file_at_any_depth_and_never_comes_back(
        db, moving, settings, tmp_path):
    victim, other = person(db, moving, 90, "victim"), person(db, moving, 91, "other")
    archive_all(db, moving, settings)
    assert everywhere(db, "victim") == 5 and count(db, "nic_cc_call_note_backup") == 6  # all archived
    storage = LocalStorage(tmp_path)
    old = export(db, moving, storage, 730)
    assert old.verified and sorted(parquet_ids(tmp_path)) == sorted([victim, other])

    dry = erase(db, moving, str(victim), dry_run=True)
    assert dry.removed["archived nic_cc_call_note"] == 3 and everywhere(db, "victim") == 5
    result = erase(db, moving, str(victim), erased_by="dpo")

    assert result.removed == dry.removed and result.removed["archived nic_cc_call_log"] == 2
    assert everywhere(db, "victim") == 0 and everywhere(db, "other") == 5
    assert count(db, "nic_cc_customer_backup", "id = :i", i=victim) == 0
    assert parquet_ids(tmp_path) == [other]
    manifest = json.loads((tmp_path / old.manifest).read_text())
    assert manifest["rows"] == 1 and manifest["erasures"] == 1
    purge(db, moving, 730, without_export=True)
    _, restored = restore_from(db, moving, storage, export_id=old.export_id)
    assert restored.restored == 1 and count(db, "nic_cc_customer_backup", "id = :i", i=victim) == 0


def test_a_live_record_goes_with_its_grandchildren_and_nothing_of_anyone_else(db, moving):
    victim, other = person(db, moving, 5, "victim"), person(db, moving, 5, "other")
    result = erase(db, moving, str(victim))
    assert result.removed["live"] == 1 and result.removed["nic_cc_call_note"] == 3
    assert everywhere(db, "victim") == 0 and everywhere(db, "other") == 5
    assert count(db, "nic_cc_customer") == 1 and count(db, "nic_cc_customer", "id = :i", i=other) == 1


def test_a_record_another_customer_references_is_refused_before_anything_changes(db, policy):
    setup(db, policy)
    db.run("ALTER TABLE nic_cc_customer ADD COLUMN referred_by bigint REFERENCES nic_cc_customer (id)")
    victim, friend = add_customers(db, policy, [5, 5])
    db.run("UPDATE nic_cc_customer SET referred_by = :v WHERE id = :f", v=victim, f=friend)
    with pytest.raises(SchemaError, match="reference this record"):
        erase(db, policy, str(victim))
    assert count(db, "nic_cc_customer") == 2


def test_the_erasure_record_holds_a_keyed_hash_and_no_customer_data(db, policy):
    setup(db, policy)
    (victim,) = add_customers(db, policy, [5])
    erase(db, policy, str(victim), erased_by="dpo")
    record = db.row(f"SELECT * FROM {erasure_table(policy)}")
    plain = {legacy_hash(policy, str(victim)), hashlib.sha256(str(victim).encode()).hexdigest()}
    assert record["key_hash"] not in plain and len(record["key_hash"]) == 64
    assert record["key_hash"] == database_key(db, policy).hash(policy, str(victim))
    assert record["key_id"] == database_key(db, policy).key_id
    assert set(record) == {"id", "policy_key", "key_hash", "key_id", "erased_at", "erased_by", "removed"}
    text = json.dumps(record, default=str)
    assert "example.mu" not in text and "Customer X" not in text and "POL-X" not in text
    run = db.row("SELECT options, message, error_message FROM nic_cc_archive_log WHERE kind = 'erase'")
    assert set(run["options"]) == {"key_hash", "result"} and run["options"]["key_hash"] == record["key_hash"]
    assert run["message"] == "erased one record: 1 rows, 0 files rewritten" and run["error_message"] is None


def test_unsalted_records_are_wrapped_once_and_still_keep_the_erased_out(db, policy, settings, tmp_path):
    setup(db, policy)
    (victim, kept) = add_customers(db, policy, [90, 90])
    archive_all(db, policy, settings)
    storage = LocalStorage(tmp_path)
    old = export(db, policy, storage, 730)
    purge(db, policy, 730)
    legacy = legacy_hash(policy, str(victim))  # as an earlier version wrote it
    db.run(f"INSERT INTO {erasure_table(policy)} (policy_key, key_hash, erased_by) VALUES (:p, :h, 'old')",
           p=policy.key, h=legacy)
    _, restored = restore_from(db, policy, storage, export_id=old.export_id)
    assert restored.restored == 1 and count(db, "nic_cc_customer_backup", "id = :i", i=kept) == 1
    record = db.row(f"SELECT key_hash, key_id FROM {erasure_table(policy)}")
    key = database_key(db, policy)
    assert record == {"key_hash": key.wrap(legacy), "key_id": key.key_id} and str(victim) in erased_keys(db, policy)


def test_records_written_under_another_key_are_refused_not_missed(db, policy):
    setup(db, policy)
    (victim, second) = add_customers(db, policy, [5, 5])
    erase(db, policy, str(victim), erasure_key=ErasureKey(b"s" * 32))
    with pytest.raises(ConfigError, match="another erasure key"):
        erased_keys(db, policy)  # the database's own key: the record would be missed
    with pytest.raises(ConfigError, match="another erasure key"):
        erase(db, policy, str(second))
    assert count(db, "nic_cc_customer", "id = :i", i=second) == 1
    assert str(victim) in erased_keys(db, policy, ErasureKey(b"s" * 32))


def test_a_bad_key_is_refused_without_quoting_it(db, policy):
    setup(db, policy)
    for bad in ("x'; DROP TABLE nic_cc_customer; --", "", "9" * 300):
        with pytest.raises(InvalidKeyError) as refused:
            erase(db, policy, bad)
        assert bad not in str(refused.value) or not bad
    assert count(db, "nic_cc_archive_log", "kind = 'erase'") == 0


def test_the_export_function_finishes_the_run_the_status_api_recorded(db, policy):
    setup(db, policy)
    (victim,) = add_customers(db, policy, [5])
    from archiver.jobs import JobStore

    jobs = JobStore(db, policy)
    job = jobs.create(kind="erase", batch_size=1, trigger="api", dry_run=True, options={"key_hash": "h"})
    assert erase_event({"action": "erase", "job_id": job.id, "key": str(victim), "by": "dpo", "dry_run": True},
                       db, policy)["status"] == "dry_run"
    done = jobs.get(job.id)
    assert done.state == "succeeded" and done.as_dict()["removed"]["live"] == 1
    assert count(db, "nic_cc_customer") == 1
    job = jobs.create(kind="erase", batch_size=1, trigger="api", options={"key_hash": "h"})
    out = erase_event({"action": "erase", "job_id": job.id, "key": "nope", "by": "dpo"}, db, policy)
    assert out["status"] == "rejected" and jobs.get(job.id).state == "failed"
