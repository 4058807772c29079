"""The export function serves every policy of the deployment: each policy's purge schedule names its
table, and the chain (and its continuation hops, and erasures) work on that policy's archive."""

from __future__ import annotations

from pathlib import Path

from archiver.cold_chain import ChainDeps, handle
from archiver.config import load_policies

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policies.toml"


def deps() -> ChainDeps:
    policies = load_policies({}, EXAMPLE)
    first = policies.policies[0]
    return ChainDeps(db=None, policy=first, storage=None, sink=None, invoker=None,  # type: ignore[arg-type]
                     function="f", older_than_days=45, policies=policies)


def test_a_purge_event_naming_a_table_works_on_that_policys_archive_with_its_age() -> None:
    d = deps()
    calls = d.for_table("nic_cc_call_log")
    assert calls is not None and calls.policy.live_table == "nic_cc_call_log" and calls.older_than_days == 730
    assert d.for_table("nic_cc_call_log_backup").policy == calls.policy  # type: ignore[union-attr]
    assert d.for_table(None) is d and d.for_table("nic_cc_customer") is d  # the default policy: as configured


def test_a_table_no_policy_archives_is_rejected_in_one_line() -> None:
    out = handle({"action": "purge", "table": "nic_cc_unknown"}, deps(), lambda: 100.0)
    assert out["status"] == "rejected" and "nic_cc_call_log" in out["error"] and "\n" not in out["error"]
