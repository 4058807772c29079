"""The archive's cold life on the real PostgreSQL: export to Parquet (a directory, and S3 through
moto), verification before any delete, purge, restore from the export, and erasure."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from archiver.alerts import RecordingSink
from archiver.cold_chain import ChainDeps, erase_request, export_hop
from archiver.cold_restore import restore_from
from archiver.cold_storage import LocalStorage, S3Storage
from archiver.engine import Archiver
from archiver.erasure import erase, erasure_table
from archiver.exceptions import AlreadyRunningError, StorageError
from archiver.export import Exporter, export, ledger_name, verify_export
from archiver.restore import purge
from tests.helpers import add_customers, count, setup

pytest.importorskip("pyarrow")

# Every kind of column the export maps: Parquet types, and PostgreSQL's text form for the rest.
EXTRA_COLUMNS = {
    "profile": "jsonb", "tags": "text[]", "scores": "integer[]", "photo": "bytea", "ratio": "double precision",
    "small": "real", "born": "date", "big": "numeric", "flag": "boolean", "uid": "uuid", "span": "interval",
    "local_ts": "timestamp", "note": "varchar(20)", "code": "char(3)", "tiny": "smallint", "doc": "json",
    "weights": "double precision[]", "amount": "numeric(38,10)",
}
VALUES = ("profile = CAST('{\"a\": [1, 2.50, null], \"b\": {\"c\": \"é\"}}' AS jsonb), tags = ARRAY['x', NULL, 'y'],"
          " scores = ARRAY[1, -2, 3], photo = decode('00ff10', 'hex'), ratio = 1.0 / 3, small = 0.1, born = DATE"
          " '1980-02-29', big = 12345678901234567890.123456789, flag = id % 2 = 0, uid = gen_random_uuid(),"
          " span = interval '1 year 2 days 03:04:05', local_ts = TIMESTAMP '2020-01-01 12:34:56.789012',"
          " note = 'n' || id, code = 'ab', tiny = -7, doc = CAST('{\"z\": 1,  \"a\": 2}' AS json),"
          " weights = ARRAY[CAST('NaN' AS float8), CAST('Infinity' AS float8), -0.0], amount = 0.0000000001")
ALL = "md5(CAST(row(a.*) AS text))"


def archived(db, policy, settings, n: int = 30) -> dict[int, str]:
    """``n`` archived customers with every column type, archived 800 to 860 days ago (three months).
    Returns id -> checksum of all the archive row's columns."""
    setup(db, policy)
    for name, kind in EXTRA_COLUMNS.items():
        db.run(f"ALTER TABLE nic_cc_customer ADD COLUMN {name} {kind}")
    add_customers(db, policy, [70 + i for i in range(n)])
    db.run(f"UPDATE nic_cc_customer SET {VALUES}")
    db.run("UPDATE nic_cc_customer SET profile = NULL, tags = NULL, photo = NULL WHERE id % 5 = 0")
    archiver = Archiver(db, policy, settings)
    archiver.run_hop(archiver.start().id, owner="w", hop=1)
    db.run("UPDATE nic_cc_customer_backup"
           " SET archived_at = archived_at - make_interval(days => CAST(800 + 2 * (id % 30) AS integer))")
    return archive_sums(db)


def archive_sums(db) -> dict[int, str]:
    return dict(db.run(f"SELECT a.id, {ALL} FROM nic_cc_customer_backup a"))


def test_export_writes_parquet_per_month_with_a_manifest_and_verifies_it(db, policy, settings, tmp_path):
    before = archived(db, policy, settings)
    result = export(db, policy, LocalStorage(tmp_path), 730, rows_per_file=8)
    assert result.verified and result.state == "succeeded" and result.exported == len(before)
    files = sorted(tmp_path.rglob("*.parquet"))
    assert len(files) == result.files and len({f.parent.name for f in files}) >= 2  # months
    assert all(f.parent.name.startswith("month=") for f in files)
    manifest = json.loads((tmp_path / result.manifest).read_text())
    assert manifest["rows"] == len(before) and len(manifest["files"]) == result.files
    assert {c["name"]: c["pg_type"] for c in manifest["columns"]}["profile"] == "jsonb"
    job = db.row("SELECT kind, state, options FROM nic_cc_archive_log WHERE job_id = CAST(:j AS uuid)",
                 j=result.export_id)
    assert job["kind"] == "export" and job["state"] == "succeeded" and job["options"]["verified"] is True


def test_exporting_twice_writes_nothing_new(db, policy, settings, tmp_path):
    archived(db, policy, settings)
    export(db, policy, LocalStorage(tmp_path), 730)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    again = export(db, policy, LocalStorage(tmp_path), 730)
    assert again.exported == 0 and again.files == 0
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == files


def test_export_leaves_young_archive_rows_alone(db, policy, settings, tmp_path):
    archived(db, policy, settings)
    db.run("UPDATE nic_cc_customer_backup SET archived_at = now() WHERE id % 3 = 0")
    young = count(db, "nic_cc_customer_backup", "id % 3 = 0")
    result = export(db, policy, LocalStorage(tmp_path), 730)
    assert result.exported == count(db, "nic_cc_customer_backup") - young
    purge(db, policy, 730)
    assert count(db, "nic_cc_customer_backup") == young


def round_trip(db, policy, storage, before):
    result = export(db, policy, storage, 730, rows_per_file=7)
    assert result.verified
    assert purge(db, policy, 730).as_dict()["purged"] == len(before)
    assert count(db, "nic_cc_customer_backup") == 0
    run, restored = restore_from(db, policy, storage)
    assert restored.restored == len(before) and restored.conflict_count == 0 and run.kind == "restore"
    assert archive_sums(db) == before  # every column of every row, identical


def test_round_trip_through_a_directory_gives_back_every_column_of_every_row(db, policy, settings, tmp_path):
    round_trip(db, policy, LocalStorage(tmp_path), archived(db, policy, settings))


def test_round_trip_through_s3_gives_back_every_column_of_every_row(db, policy, settings, aws_mock):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="cold-archive", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    round_trip(db, policy, S3Storage("cold-archive", "exports", s3), archived(db, policy, settings))
    assert all(k.startswith("exports/nic_cc_customer_backup/")
               for k in (o["Key"] for o in s3.list_objects_v2(Bucket="cold-archive")["Contents"]))


def test_restore_to_live_reports_conflicts_and_never_overwrites(db, policy, settings, tmp_path):
    before = archived(db, policy, settings, n=5)
    storage = LocalStorage(tmp_path)
    export(db, policy, storage, 730)
    purge(db, policy, 730)
    first = min(before)
    db.run("INSERT INTO nic_cc_customer (id, name, created_at) VALUES (:i, 'Someone New', now())", i=first)
    _, result = restore_from(db, policy, storage, to="live")
    assert result.restored == 4 and result.conflict_count == 1 and result.conflicts == [first]
    assert db.scalar("SELECT name FROM nic_cc_customer WHERE id = :i", i=first) == "Someone New"
    assert count(db, "nic_cc_customer_backup") == 0


def test_purge_without_a_verified_export_deletes_nothing_unless_told(db, policy, settings):
    before = archived(db, policy, settings, n=5)
    assert purge(db, policy, 730).as_dict()["purged"] == 0
    job = purge(db, policy, 730, without_export=True)
    assert job.as_dict()["purged"] == len(before) and job.options["without_export"] is True


# -- faults: each leaves the archive rows in place and alerts -------------------------------------
class FaultyStorage(LocalStorage):
    """A directory whose n-th data file write is damaged, lost, or fails."""

    def __init__(self, root: Path, fault: str, at: int = 1) -> None:
        super().__init__(root)
        self.fault, self.at, self.writes = fault, at, 0

    def put(self, key: str, data: bytes) -> None:
        if key.endswith(".parquet"):
            self.writes += 1
            if self.writes == self.at:
                if self.fault == "corrupt":
                    data = data[:100] + bytes(b ^ 0xFF for b in data[100:140]) + data[140:]
                elif self.fault == "lose":
                    return
                elif self.fault == "error":
                    raise StorageError(f"cannot write {key}: injected")
                elif self.fault == "kill":
                    raise KeyboardInterrupt  # the process dies: nothing is cleaned up
        super().put(key, data)


@pytest.mark.parametrize("fault", ["corrupt", "lose", "error"])
def test_a_damaged_lost_or_failed_file_purges_nothing_and_alerts(db, policy, settings, tmp_path, fault):
    before = archived(db, policy, settings)
    sink = RecordingSink()
    result = export(db, policy, FaultyStorage(tmp_path, fault, at=2), 730, rows_per_file=8, sink=sink)
    assert not result.verified and result.state == "failed"
    assert [a.kind for a in sink.alerts] == ["failure"] and "nothing purged" in sink.alerts[0].summary
    assert purge(db, policy, 730).as_dict()["purged"] == 0
    assert archive_sums(db) == before
    # The next export continues the same one: the bad file is written again, then verified.
    again = export(db, policy, LocalStorage(tmp_path), 730, rows_per_file=8)
    assert again.export_id == result.export_id and again.verified and again.exported == len(before)
    assert purge(db, policy, 730).as_dict()["purged"] == len(before)


def test_a_manifest_that_disagrees_revokes_verification_and_purges_nothing(db, policy, settings, tmp_path):
    before = archived(db, policy, settings)
    storage = LocalStorage(tmp_path)
    result = export(db, policy, storage, 730)
    path = tmp_path / result.manifest
    doc = json.loads(path.read_text())
    doc["files"][0]["rows"] -= 1
    path.write_text(json.dumps(doc))
    sink = RecordingSink()
    problems = verify_export(db, policy, storage, result.export_id, sink=sink)
    assert problems and sink.alerts and sink.alerts[0].kind == "failure"
    assert purge(db, policy, 730).as_dict()["purged"] == 0 and archive_sums(db) == before


def test_a_file_damaged_after_the_export_is_caught_by_verify(db, policy, settings, tmp_path):
    before = archived(db, policy, settings)
    storage = LocalStorage(tmp_path)
    result = export(db, policy, storage, 730)
    victim = next(tmp_path.rglob("*.parquet"))
    victim.write_bytes(victim.read_bytes()[:-50])
    assert verify_export(db, policy, storage, result.export_id)
    assert purge(db, policy, 730).as_dict()["purged"] == 0 and archive_sums(db) == before
    # The next export repairs it from the archive rows, which are all still there.
    again = export(db, policy, storage, 730)
    assert again.export_id == result.export_id and again.verified
    assert not verify_export(db, policy, storage, result.export_id)
    assert purge(db, policy, 730).as_dict()["purged"] == len(before)


def test_an_export_killed_half_way_is_continued_by_the_next(db, policy, settings, tmp_path):
    before = archived(db, policy, settings)
    with pytest.raises(KeyboardInterrupt):
        export(db, policy, FaultyStorage(tmp_path, "kill", at=3), 730, rows_per_file=5)
    killed = db.row("SELECT job_id, state, records_archived FROM nic_cc_archive_log WHERE kind = 'export'")
    assert killed["state"] == "running" and 0 < killed["records_archived"] < len(before)
    with pytest.raises(AlreadyRunningError):  # the unfinished export holds the table: no purge meanwhile
        purge(db, policy, 730)
    assert archive_sums(db) == before
    db.run("UPDATE nic_cc_archive_log SET lease_expires_at = now() - interval '1 second'")  # the lease runs out
    result = export(db, policy, LocalStorage(tmp_path), 730, rows_per_file=5)
    assert result.export_id == str(killed["job_id"]) and result.verified and result.exported == len(before)
    assert count(db, ledger_name(policy)) == len(before)  # each row exported once


def test_an_s3_error_on_write_purges_nothing_and_alerts(db, policy, settings, aws_mock):
    before = archived(db, policy, settings)
    sink = RecordingSink()
    result = export(db, policy, S3Storage("no-such-bucket", "x", boto3.client("s3")), 730, sink=sink)
    assert result.state == "failed" and "NoSuchBucket" in result.problems[0] and sink.alerts
    assert purge(db, policy, 730).as_dict()["purged"] == 0 and archive_sums(db) == before


# -- erasure -------------------------------------------------------------------------------------
def test_erasure_removes_the_record_everywhere_and_a_restore_does_not_bring_it_back(db, policy, settings, tmp_path):
    before = archived(db, policy, settings)
    storage = LocalStorage(tmp_path)
    old = export(db, policy, storage, 730, rows_per_file=8)
    victim = sorted(before)[3]
    db.run("UPDATE nic_cc_customer_backup SET email = 'victim@example.mu' WHERE id = :i", i=victim)
    assert erase(db, policy, str(victim), dry_run=True).removed["archive"] == 1
    assert count(db, "nic_cc_customer_backup", "id = :i", i=victim) == 1  # a dry run removes nothing
    result = erase(db, policy, str(victim), erased_by="dpo")
    assert result.removed["archive"] == 1 and len(result.files) == 1
    assert count(db, "nic_cc_customer_backup", "id = :i", i=victim) == 0
    assert count(db, "nic_cc_customer", "id = :i", i=victim) == 0
    for f in tmp_path.rglob("*.parquet"):
        import pyarrow.parquet as pq

        assert victim not in pq.read_table(f).column("id").to_pylist()
    purge(db, policy, 730, without_export=True)
    _, restored = restore_from(db, policy, storage, export_id=old.export_id)
    assert restored.restored == len(before) - 1
    assert count(db, "nic_cc_customer_backup", "id = :i", i=victim) == 0
    record = db.row(f"SELECT * FROM {erasure_table(policy)}")
    text = json.dumps(record, default=str)
    assert record["erased_by"] == "dpo" and len(record["key_hash"]) == 64 and record["policy_key"] == policy.key
    assert set(record) == {"id", "policy_key", "key_hash", "key_id", "erased_at", "erased_by", "removed"}
    assert all(isinstance(v, int) for v in record["removed"].values()) and "victim" not in text


def test_erasure_of_a_live_record_with_related_rows(db, policy, settings):
    setup(db, policy)
    (cid,) = add_customers(db, policy, [5])
    db.run("INSERT INTO nic_cc_call_log (customer_id, called_at, outcome) VALUES (:c, now(), 'answered')", c=cid)
    result = erase(db, policy, str(cid))
    assert result.removed["live"] == 1 and result.removed["nic_cc_call_log"] == 1
    assert count(db, "nic_cc_customer") == 0 and count(db, "nic_cc_call_log") == 0
    run = db.row("SELECT kind, state, message FROM nic_cc_archive_log WHERE kind = 'erase'")
    assert run["state"] == "succeeded" and str(cid) not in run["message"].replace("1 record", "")


# -- the chain the export function runs ------------------------------------------------------------
class RecordingInvoker:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def invoke_async(self, function: str, payload: dict) -> None:
        self.events.append(payload)


def two_files_per_hop():
    calls = iter([1000.0, 1000.0])
    return lambda: next(calls, 0.0)


def test_the_export_chain_runs_in_hops_then_verifies_then_purges(db, policy, settings, tmp_path):
    before = archived(db, policy, settings)
    invoker = RecordingInvoker()
    deps = ChainDeps(db=db, policy=policy, storage=LocalStorage(tmp_path), sink=RecordingSink(), invoker=invoker,
                     function="archiver-export", older_than_days=730, rows_per_file=5)
    out = export_hop({"source": "archiver.schedule"}, deps, two_files_per_hop())
    while out["status"] == "continue":
        assert count(db, "nic_cc_customer_backup") == len(before)  # nothing purged before verification
        out = export_hop(invoker.events[-1], deps, two_files_per_hop())
    assert out["status"] == "succeeded" and out["purged"] == len(before) and len(invoker.events) >= 2
    assert {e["job_id"] for e in invoker.events} == {out["export"]["export_id"]}
    assert count(db, "nic_cc_customer_backup") == 0 and not deps.sink.alerts
    assert count(db, "nic_cc_archive_log", "kind = 'export'") == 1


def test_the_export_chain_stops_at_the_hop_limit_and_alerts(db, policy, settings, tmp_path):
    archived(db, policy, settings, n=3)
    deps = ChainDeps(db=db, policy=policy, storage=LocalStorage(tmp_path), sink=RecordingSink(),
                     invoker=RecordingInvoker(), function="f", older_than_days=730, max_hops=2)
    assert export_hop({"job_id": None, "hop": 3}, deps, lambda: 1000.0)["status"] == "hop_limit"
    assert [a.kind for a in deps.sink.alerts] == ["hop_limit"] and count(db, "nic_cc_customer_backup") == 3


def test_the_readme_duckdb_query_reads_an_export(db, policy, settings, tmp_path):
    """Runs where DuckDB (the optional extra) is installed."""
    duckdb = pytest.importorskip("duckdb")
    import re

    from tests.conftest import ROOT

    before = archived(db, policy, settings)
    export(db, policy, LocalStorage(tmp_path), 730)
    (query,) = re.findall(r"```sql\n-- duckdb\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    rows = duckdb.sql(query.replace("/srv/cold", str(tmp_path)).replace("BETWEEN '2024-01' AND '2024-06'",
                                                                       "IS NOT NULL")).fetchall()
    assert sum(r[2] for r in rows) == len(before)


def test_the_export_function_erases_on_request_and_rejects_a_bad_one(db, policy, settings, tmp_path):
    before = archived(db, policy, settings, n=4)
    storage = LocalStorage(tmp_path)
    export(db, policy, storage, 730)
    deps = ChainDeps(db=db, policy=policy, storage=storage, sink=RecordingSink(), invoker=RecordingInvoker(),
                     function="f", older_than_days=730)
    victim = min(before)
    out = erase_request({"action": "erase", "key": victim, "by": "dpo"}, deps)
    assert out["status"] == "erased" and out["removed"]["archive"] == 1 and out["files_rewritten"] == 1
    assert erase_request({"action": "erase", "key": "x'; DROP", "by": "dpo"}, deps)["status"] == "rejected"
    assert erase_request({"action": "erase", "by": "dpo"}, deps)["status"] == "rejected"
    assert count(db, "nic_cc_customer_backup") == 3


def test_a_worker_whose_export_was_taken_over_stops_without_failing_it(db, policy, settings, tmp_path):
    archived(db, policy, settings, n=12)
    sink = RecordingSink()
    exporter = Exporter(db, policy, LocalStorage(tmp_path), sink=sink, rows_per_file=5)
    job, owner = exporter.begin(730)
    db.run("UPDATE nic_cc_archive_log SET lease_owner = 'someone-else' WHERE job_id = CAST(:j AS uuid)", j=job.id)
    assert exporter.run(job, owner).state == "superseded" and not sink.alerts
    assert db.scalar("SELECT state FROM nic_cc_archive_log WHERE job_id = CAST(:j AS uuid)", j=job.id) == "running"
