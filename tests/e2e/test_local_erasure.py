"""POST /erasures on `archiver serve`: the same route as on AWS, the erasure run in-process at once."""

from __future__ import annotations

import os

from archiver import migration
from local import demo
from tests.api_client import http, serve
from tests.helpers import add_customers, count


def test_erase_over_http_then_follow_the_run(env, db, policy, tmp_path):
    demo.create_tables(db, policy)
    migration.migrate(db, policy)
    victim, other = add_customers(db, policy, [5, 5])
    db.run("INSERT INTO nic_cc_call_log (customer_id, called_at, outcome) VALUES (:c, now(), 'answered')", c=victim)
    with serve({**os.environ, **env}, tmp_path / "serve.log") as url:
        code, bad = http("POST", f"{url}/erasures", {"key": "not-a-number"})
        assert code == 422 and "not-a-number" not in bad["error"]
        code, started = http("POST", f"{url}/erasures", {"key": victim})
        assert code == 202, started
        code, run = http("GET", started["status_url"])
    assert code == 200 and run["kind"] == "erase" and run["state"] == "succeeded", run
    assert run["removed"]["live"] == 1 and run["removed"]["nic_cc_call_log"] == 1
    assert count(db, "nic_cc_customer") == 1 and count(db, "nic_cc_customer", "id = :i", i=other) == 1
    assert count(db, "nic_cc_call_log") == 0
    assert "not-a-number" not in (tmp_path / "serve.log").read_text()
