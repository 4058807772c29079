"""Live application traffic on the customer table, at a fixed rate, in its own process.

Each tick is an update (a unique amount_due on a random customer), a read by id, or an insert
of a new customer. It records every operation's latency and outcome, the value each update
committed, and the ids it inserted, so the test can prove that no update was lost and no
error was caused by the archiver.

    python -m tests.chaos.traffic --url postgresql://... --rate 200 --max-id 50000 \
        --stop-file /tmp/stop --out /tmp/traffic.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import pg8000.exceptions
import pg8000.native

from archiver.db import params_from_url, sqlstate, tcp_socket

UPDATE = ("UPDATE nic_cc_customer SET amount_due = CAST(:v AS numeric), updated_at = now()"
          " WHERE id = :id RETURNING id")
READ = "SELECT id, name, amount_due, status FROM nic_cc_customer WHERE id = :id"
INSERT = ("INSERT INTO nic_cc_customer (name, email, mobile, policy_number, amount_due, line_of_business, agent_id)"
          " VALUES ('Customer ' || :n, 'customer' || :n || '@example.mu', '+230 5' || lpad(:n, 7, '0'),"
          " 'POL-' || lpad(:n, 8, '0'), 0, 'Motor', 1) RETURNING id")


def connect(url: str) -> pg8000.native.Connection:
    p = params_from_url(url)
    sock = None if p.unix_sock else tcp_socket(p.host or "localhost", p.port, 30)
    return pg8000.native.Connection(user=p.user, password=p.password, host=p.host or "localhost", port=p.port,
                                    database=p.database, unix_sock=p.unix_sock, application_name="app", sock=sock)


def run(url: str, rate: float, max_id: int, stop_file: Path, seed: int, max_seconds: float) -> dict[str, Any]:
    rng = random.Random(seed)
    conn = connect(url)
    ops: list[tuple[float, str, float, str]] = []  # wall time, op, ms, outcome
    committed: dict[int, str] = {}  # id -> the amount_due its last successful update wrote
    inserted: list[int] = []
    started = time.monotonic()
    i = 0
    while not stop_file.exists() and time.monotonic() - started < max_seconds:
        due = started + i / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        i += 1
        op = rng.choices(("update", "read", "insert"), weights=(50, 35, 15))[0]
        t0 = time.perf_counter()
        try:
            if op == "update":
                cid, value = rng.randint(1, max_id), f"{1_000_000 + i}.00"
                rows = conn.run(UPDATE, v=value, id=cid)
                outcome = "ok" if rows else "gone"  # gone: the row had been archived
                if rows:
                    committed[cid] = value
            elif op == "read":
                conn.run(READ, id=rng.randint(1, max_id))
                outcome = "ok"
            else:
                inserted.append(conn.run(INSERT, n=str(10_000_000 + i))[0][0])
                outcome = "ok"
        except pg8000.exceptions.DatabaseError as exc:
            outcome = f"error {sqlstate(exc)}"
        ops.append((time.time(), op, (time.perf_counter() - t0) * 1000, outcome))
    conn.close()
    return {"ops": ops, "committed": committed, "inserted": inserted}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--max-id", type=int, required=True)
    p.add_argument("--stop-file", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=600)
    a = p.parse_args()
    a.out.write_text(json.dumps(run(a.url, a.rate, a.max_id, a.stop_file, a.seed, a.max_seconds)))


if __name__ == "__main__":
    main()
