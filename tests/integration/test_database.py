"""The connection wrapper on a real PostgreSQL: statements a batch repeats run prepared, once per session."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pg8000.exceptions
import pytest

from archiver.db import Database, expecting, sqlstate
from archiver.engine import Archiver
from archiver.exceptions import InvalidValueError, UniqueViolationError
from tests.helpers import add_customers, setup

PREPARED = "SELECT statement FROM pg_prepared_statements"


def test_a_marked_statement_is_prepared_once_per_session_and_again_after_a_reconnect(db):
    sql = "SELECT CAST(:n AS int) + 1 AS next"
    db.prepare(sql)
    assert [db.row(sql, n=n) for n in (1, 2)] == [{"next": 2}, {"next": 3}]
    assert len(db.run(PREPARED)) == 1
    db.close()
    assert db.scalar(sql, n=41) == 42 and len(db.run(PREPARED)) == 1


def test_preparing_leaves_the_plan_cache_of_foreign_key_triggers_alone(db):
    db.prepare("SELECT CAST(:n AS int)")
    assert db.scalar("SELECT CAST(:n AS int)", n=1) == 1
    assert db.scalar("SHOW plan_cache_mode") == "auto"  # forced custom plans re-plan every trigger query


def test_prepared_statements_can_be_switched_off_for_a_pooler(db):
    plain = Database(replace(db.params), prepared_statements=False)
    try:
        sql = "SELECT CAST(:n AS int)"
        plain.prepare(sql)
        assert plain.scalar(sql, n=7) == 7 and plain.run(PREPARED) == []
    finally:
        plain.close()


def test_row_count_after_a_prepared_statement_is_refused_not_wrong(db):
    db.run("CREATE TABLE t (n int)")
    sql = "INSERT INTO t SELECT generate_series(1, :n)"
    db.prepare(sql)
    db.run(sql, n=3)
    with pytest.raises(RuntimeError, match="RETURNING"):
        db.row_count  # noqa: B018 - the property is the behaviour under test


def test_a_run_prepares_the_statements_of_its_batches(db, policy, settings):
    setup(db, policy)
    add_customers(db, policy, [70 + i for i in range(6)])
    archiver = Archiver(db, policy, settings)
    job = archiver.start(fixed_batch_size=2)
    outcome = archiver.run_hop(job.id, owner="w1", hop=1)
    assert outcome.job.records_archived == 6
    prepared = [r[0] for r in db.run(PREPARED)]
    for what, found, times in (
            ("lock the job row, then the rows: first batch, then after the cursor",
             lambda s: "SKIP LOCKED" in s and "archive_log" in s and "FOR UPDATE)" in s, 2),
            ("move and count the batch: first batch, then after the cursor",
             lambda s: "DELETE FROM" in s and "batches = batches + 1" in s, 2),
            ("count a batch that moved nothing", lambda s: s.startswith("UPDATE") and "batches = batches + 1" in s, 1)):
        assert sum(map(found, prepared)) == times, what


@pytest.fixture
def tcp_params(db):
    """The test database over TCP: the server itself when DATABASE_URL names a host, else a forwarder
    on 127.0.0.1 to the embedded server's Unix socket (it listens on no TCP port)."""
    import socket
    import threading

    if not db.params.unix_sock:
        yield db.params
        return
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set():
                client, _ = listener.accept()
                upstream = socket.socket(socket.AF_UNIX)
                upstream.connect(db.params.unix_sock)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=pump, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield replace(db.params, unix_sock=None, host="127.0.0.1", port=listener.getsockname()[1], ssl_mode="disable")
    stop.set()
    listener.close()


def test_a_tcp_connection_sends_without_waiting_for_acks(tcp_params):
    import socket

    tcp = Database(tcp_params)
    try:
        assert tcp.scalar("SELECT 1") == 1
        sock = tcp.conn._usock
        assert sock.family in (socket.AF_INET, socket.AF_INET6)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    finally:
        tcp.close()


def test_an_unreachable_tcp_server_is_a_clear_error():
    import socket

    from archiver.db import ConnectionParams
    from archiver.exceptions import DatabaseUnavailableError

    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(DatabaseUnavailableError, match="cannot connect"):
        Database(ConnectionParams(user="u", host="127.0.0.1", port=port)).scalar("SELECT 1")


def test_an_expected_server_error_is_raised_typed_with_its_code_and_never_the_rows_values(db):
    db.run("CREATE TABLE contacts (id int PRIMARY KEY, email text)")
    db.run("INSERT INTO contacts VALUES (1, 'alice@example.com')")
    with pytest.raises(UniqueViolationError) as err, expecting(UniqueViolationError):
        db.run("INSERT INTO contacts VALUES (1, 'bob@example.com')")
    assert sqlstate(err.value) == "23505" and "contacts_pkey" in str(err.value)
    assert "(id)=(1)" not in str(err.value)  # the DETAIL, which quotes the row, is left out


def test_a_data_exception_is_typed_by_its_class_only_where_a_caller_expects_it(db):
    with pytest.raises(InvalidValueError) as err, expecting(InvalidValueError):
        db.scalar("SELECT CAST(:v AS integer)", v="twelve")
    assert sqlstate(err.value) == "22P02"
    with pytest.raises(pg8000.exceptions.DatabaseError), expecting(UniqueViolationError):
        db.scalar("SELECT CAST(:v AS integer)", v="twelve")  # not what the caller expects: unchanged
