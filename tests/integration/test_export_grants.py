"""The export function's role needs only what docs/security.md grants it: this test runs that SQL
(the ``pgsql`` block) as written, then exports, verifies, purges and erases as that role."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace

import pytest

from archiver.cold_storage import LocalStorage
from archiver.db import Database
from archiver.erasure import ErasureKey, erase
from archiver.export import export, verify_export
from archiver.restore import purge
from tests.conftest import ROOT
from tests.helpers import count
from tests.integration.test_export import archived

pytest.importorskip("pyarrow")


def export_grants() -> str:
    (block,) = re.findall(r"```pgsql\n(.*?)```", (ROOT / "docs" / "security.md").read_text(), re.S)
    return block


@pytest.fixture
def export_role(db, dbname):
    role = f"archiver_export_{uuid.uuid4().hex[:8]}"
    sql = re.sub(r"--[^\n]*", "", export_grants()).replace("archiver_export", role).replace("appdb", f'"{dbname}"')
    yield role, [s.strip() for s in sql.split(";") if s.strip()]
    db.run(f'DROP OWNED BY "{role}"')
    db.run(f'DROP ROLE IF EXISTS "{role}"')


def test_export_verify_purge_and_erase_run_with_exactly_the_documented_grants(
        db, policy, settings, server_params, dbname, export_role, tmp_path):
    before = archived(db, policy, settings, n=10)
    # migrate (the archived() helper runs it) made the ledger and the erasure tables
    role, statements = export_role
    for statement in statements:
        db.run(statement)
    as_role = Database(replace(server_params, user=role, database=dbname, timezone=policy.timezone))
    try:
        storage = LocalStorage(tmp_path)
        result = export(as_role, policy, storage, 730)
        assert result.verified and result.exported == len(before)
        assert not verify_export(as_role, policy, storage, result.export_id)
        assert purge(as_role, policy, 730).as_dict()["purged"] == len(before)
        # The key from Secrets Manager, as on AWS: the database's own key is the owner's alone.
        erased = erase(as_role, policy, str(min(before)), erased_by="dpo", erasure_key=ErasureKey(b"k" * 32))
        assert erased.files and count(db, "nic_cc_archive_log_erasures") == 1
        with pytest.raises(Exception, match="permission denied"):
            as_role.run("INSERT INTO nic_cc_customer (name) VALUES ('x')")
    finally:
        as_role.close()
