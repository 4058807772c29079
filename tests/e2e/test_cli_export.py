"""`archiver export / verify / purge / restore --from / erase` end to end, as a user runs them."""

from __future__ import annotations

import pytest

from tests.e2e.test_cli import as_json, cli
from tests.helpers import add_customers, count, setup

pytest.importorskip("pyarrow")


@pytest.fixture
def old_archive(db, policy, env):
    setup(db, policy)
    add_customers(db, policy, [70 + i for i in range(12)])
    cli(env, "run", "--json", check_code=0)
    db.run("UPDATE nic_cc_customer_backup SET archived_at = archived_at - interval '800 days'")
    return db


def test_export_verify_purge_restore_erase_in_json(env, old_archive, tmp_path):
    dest = str(tmp_path / "cold")
    dry = as_json(cli(env, "export", "--older-than", "730d", "--to", dest, "--dry-run", "--json", check_code=0))
    assert dry["exported"] == 12 and dry["dry_run"] is True
    out = as_json(cli(env, "export", "--older-than", "730d", "--to", dest, "--rows-per-file", "5", "--json",
                      check_code=0))
    assert out["exported"] == 12 and out["files"] == 3 and out["verified"] is True and out["export_id"]
    assert as_json(cli(env, "verify", "--from", dest, "--job", out["export_id"], "--json", check_code=0))["verified"]
    assert as_json(cli(env, "purge", "--older-than", "730d", "--json", check_code=0))["purged"] == 12
    erased = as_json(cli(env, "erase", "--key", "3", "--by", "dpo", "--json", check_code=0))
    assert erased["files_rewritten"] == 1 and erased["removed"]["archive"] == 0  # purged: only in the file
    back = as_json(cli(env, "restore", "--from", dest, "--job", out["export_id"], "--json", check_code=0))
    assert back["restored"] == 11 and back["conflicts"] == 0
    assert count(old_archive, "nic_cc_customer_backup") == 11


def test_bad_export_input_gets_one_line_and_exit_2(env, old_archive, tmp_path):
    for args in (["export", "--older-than", "soon", "--to", str(tmp_path)],
                 ["export", "--to", "ftp://x/y"],
                 ["export", "--table", "other", "--to", str(tmp_path)],
                 ["erase", "--key", "not-a-number"],
                 ["erase", "--key", "[1, 2]"],  # two values for a key of one column
                 ["restore", "--from", str(tmp_path), "--job", "00000000-0000-0000-0000-000000000000"]):
        proc = cli(env, *args, "--json", check_code=2)
        assert "Traceback" not in proc.stderr and "error" in as_json(proc)
