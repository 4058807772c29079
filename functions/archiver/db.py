"""Database access: connection parameters, one reusable connection, transactions and locks.

Shaped like yoyo's backend: a small object with ``transaction()`` (commit on success, roll
back on error) and ``lock()`` (an advisory lock held for the transaction).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_args
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.exceptions
import pg8000.native

from .environment import SslMode
from .exceptions import (
    ConfigError,
    DatabaseUnavailableError,
    PermissionDeniedError,
    ReadOnlyError,
    ServerError,
    ServerRefusedError,
    UndefinedSchemaError,
    UndefinedTableError,
)

_SSL_MODES: tuple[str, ...] = get_args(SslMode)


@dataclass(frozen=True)
class ConnectionParams:
    user: str
    password: str | None = None
    host: str | None = None
    port: int = 5432
    database: str = "postgres"
    unix_sock: str | None = None
    ssl_mode: str = "disable"
    ca_file: str | None = None
    timezone: str = "UTC"
    application_name: str = "archiver"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def masked(self) -> str:
        """A description safe to log: never the password."""
        where = self.unix_sock or f"{self.host}:{self.port}"
        return f"postgresql://{self.user}:***@{where}/{self.database}"

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.ssl_mode in ("disable", "allow", "prefer") or self.unix_sock:
            return None
        if self.ssl_mode == "require":
            # libpq's "require": encrypted, server not verified.
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if self.ca_file and not Path(self.ca_file).is_file():
            raise ConfigError(f"sslrootcert file not found: {self.ca_file}")
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.check_hostname = self.ssl_mode == "verify-full"
        return ctx


def params_from_url(url: str, timezone: str = "UTC") -> ConnectionParams:
    """Parse ``postgresql://user:pass@host:port/db?sslmode=require`` (libpq's URL form)."""
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError as exc:
        raise ConfigError(f"DATABASE_URL is malformed: {exc}") from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError("DATABASE_URL must start with postgresql://")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    ssl_mode = query.get("sslmode", "prefer")
    if ssl_mode not in _SSL_MODES:
        raise ConfigError(f"DATABASE_URL: unknown sslmode {ssl_mode!r}")
    host = query.get("host") or (unquote(parts.hostname) if parts.hostname else None)
    unix_sock = None
    if host and host.startswith("/"):
        unix_sock, host = str(Path(host) / f".s.PGSQL.{port}"), None
    return ConnectionParams(
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password) if parts.password else None,
        host=host or ("localhost" if not unix_sock else None),
        port=port,
        database=unquote(parts.path.lstrip("/")) or "postgres",
        unix_sock=unix_sock,
        ssl_mode=ssl_mode,
        ca_file=query.get("sslrootcert"),
        timezone=timezone,
    )


# SQLSTATE classes (a code's first characters) that mean the connection is gone: 08xxx, connection
# exceptions; 57P01..57P03, admin shutdown, crash shutdown, cannot connect now. The codes the core
# types are named on their error classes (``exceptions.ServerError``).
CONNECTION_EXCEPTION = "08"
SERVER_SHUTDOWN = "57P"


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE code of a pg8000 database error (or of the typed error made from it), if any."""
    if isinstance(exc, ServerError):
        return exc.sqlstate
    if isinstance(exc, pg8000.exceptions.DatabaseError) and exc.args and isinstance(exc.args[0], dict):
        return exc.args[0].get("C")
    return None


def describe_error(exc: BaseException) -> str:
    """An error message safe for logs and alerts: the server's message, SQLSTATE and constraint,
    never its DETAIL, which can quote a whole row of customer data."""
    if isinstance(exc, ServerError):
        return str(exc)
    if isinstance(exc, pg8000.exceptions.DatabaseError) and exc.args and isinstance(exc.args[0], dict):
        e = exc.args[0]
        where = f", constraint {e['n']}" if e.get("n") else ""
        return f"{e.get('M', 'database error')} (SQLSTATE {e.get('C', '?')}{where})"
    return f"{type(exc).__name__}: {exc}"


# What the operator does about each refusal; the server's message (M) names the object, never a row.
_REMEDIES: dict[type[ServerRefusedError], str] = {
    PermissionDeniedError: "the database role lacks a privilege this step needs: grant it as"
                           " docs/security.md lists, or run migrate as the tables' owner",
    ReadOnlyError: "the database is read-only: connect to the primary, not a hot standby, and check"
                   " default_transaction_read_only",
    UndefinedTableError: "run `archiver migrate` first, or check the table names in the policy",
    UndefinedSchemaError: "check ARCHIVER_SCHEMA (the policy's schema_name)",
}
_REFUSALS = {cls.sqlstate: (cls, remedy) for cls, remedy in _REMEDIES.items()}


def translate(exc: BaseException) -> ServerRefusedError | None:
    """The typed error for a refusal the operator must fix, from its SQLSTATE; None for any other
    error. Its text is the server's message and the remedy: never the DETAIL (it can quote a row)."""
    code = sqlstate(exc)
    if code not in _REFUSALS or isinstance(exc, ServerRefusedError):
        return None
    cls, remedy = _REFUSALS[code]
    message = exc.args[0].get("M", "refused") if exc.args and isinstance(exc.args[0], dict) else "refused"
    return cls(f"{message} (SQLSTATE {code}): {remedy}")


@contextmanager
def expecting(*errors: type[ServerError]) -> Iterator[None]:
    """Inside, a server error whose SQLSTATE one of ``errors`` names (its code, or its class's prefix)
    is raised as that typed error, for the caller to handle; any other error passes unchanged. Only
    around the statements whose caller handles it: elsewhere such an error is a bug, reported as one."""
    try:
        yield
    except pg8000.exceptions.DatabaseError as exc:
        code = sqlstate(exc) or ""
        for cls in errors:
            if cls.sqlstate and code.startswith(cls.sqlstate):
                raise cls(describe_error(exc), code) from None
        raise


def check_writable(db: Database) -> None:
    """Refuse, before anything starts, a hot standby or a database whose transactions are read-only:
    every command but status writes (a run, even a dry one, is a row in the run log)."""
    standby, read_only = db.run("SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'")[0]
    if standby or read_only:
        what = "a hot standby (pg_is_in_recovery())" if standby else "read-only (default_transaction_read_only)"
        raise ReadOnlyError(f"the database is {what}: connect to the primary; nothing was started")
CONNECT_TIMEOUT_S = 30


def tcp_socket(host: str, port: int, timeout: float) -> socket.socket:
    """A connected TCP socket with Nagle's algorithm off, for pg8000's ``sock=`` (which wraps it in TLS
    when asked; the option stays on the socket underneath). pg8000 writes a prepared statement's Bind
    and its Execute+Sync apart: once the Bind passes 8 KiB (a batch's ids), Nagle held the small second
    write until the server's delayed ACK, ~40 ms a statement (docs/decisions/tcp-nodelay.md)."""
    try:
        sock = socket.create_connection((host, port), timeout)
    except OSError as exc:
        raise pg8000.exceptions.InterfaceError(f"cannot reach {host}:{port}: {exc.strerror or exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


def _is_connection_error(exc: BaseException) -> bool:
    code = sqlstate(exc) or ""
    return (isinstance(exc, pg8000.exceptions.InterfaceError | OSError)
            or code.startswith((CONNECTION_EXCEPTION, SERVER_SHUTDOWN)))


class Database:
    """One connection, opened lazily, reopened when it has died (warm Lambda reuse)."""

    def __init__(self, params: ConnectionParams, lock_timeout_ms: int = 5000,
                 statement_timeout_ms: int = 300000, prepared_statements: bool = True) -> None:
        self.params = params
        self._lock_timeout_ms = lock_timeout_ms
        self._statement_timeout_ms = statement_timeout_ms
        self._conn: pg8000.native.Connection | None = None
        self._in_tx = False
        self._use_prepared = prepared_statements
        self._hot: set[str] = set()
        self._prepared: dict[str, pg8000.native.PreparedStatement] = {}
        self._columns: list[dict[str, Any]] | None = None  # of the last statement's result
        self._last_prepared = False

    # -- connection ------------------------------------------------------------------
    def _connect(self) -> pg8000.native.Connection:
        p = self.params
        ssl_context = p.ssl_context()  # a configuration error (a missing sslrootcert) before any connection
        sock = None
        try:
            sock = None if p.unix_sock else tcp_socket(p.host or "localhost", p.port, CONNECT_TIMEOUT_S)
            if sock is not None:  # a statement may run up to its statement_timeout: no shorter wait for an answer
                sock.settimeout(max(CONNECT_TIMEOUT_S, self._statement_timeout_ms / 1000 + CONNECT_TIMEOUT_S))
            conn = pg8000.native.Connection(
                user=p.user, password=p.password, host=p.host or "localhost", port=p.port,
                database=p.database, unix_sock=p.unix_sock, ssl_context=ssl_context,
                application_name=p.application_name, timeout=CONNECT_TIMEOUT_S, sock=sock,
            )
        except (pg8000.exceptions.InterfaceError, pg8000.exceptions.DatabaseError, OSError) as exc:
            if sock is not None:
                sock.close()
            hint = ""
            if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
                hint = " (server certificate not trusted: ship the RDS CA bundle or set ARCHIVER_DB_CA_FILE)"
            raise DatabaseUnavailableError(f"cannot connect to {p.masked()}: {describe_error(exc)}{hint}") from None
        conn.run("SELECT set_config('TimeZone', :tz, false), set_config('lock_timeout', :lt, false),"
                 " set_config('statement_timeout', :st, false)",
                 tz=p.timezone, lt=f"{self._lock_timeout_ms}ms", st=f"{self._statement_timeout_ms}ms")
        return conn

    @property
    def conn(self) -> pg8000.native.Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def ensure_alive(self) -> None:
        """Check a reused connection; reopen it if the server closed it."""
        if self._conn is None:
            self._conn = self._connect()
            return
        try:
            self._conn.run("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any failure here means: reconnect
            if not _is_connection_error(exc):
                raise
            self.close()
            self._conn = self._connect()

    def use_timezone(self, timezone: str) -> None:
        """Set the session's time zone to a policy's ("N days" are calendar days there), now and on
        every reconnect: one connection serves the policies of several tables, each in its own zone."""
        if timezone == self.params.timezone:
            return
        self.params = replace(self.params, timezone=timezone)
        if self._conn is not None:
            try:
                self._conn.run("SELECT set_config('TimeZone', :tz, false)", tz=timezone)
            except Exception as exc:  # noqa: BLE001 - a dead connection reconnects with the new zone
                if not _is_connection_error(exc):
                    raise
                self.close()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing a dead socket may fail; nothing to do
                self._conn.close()
        self._conn = None
        self._in_tx = False
        self._prepared.clear()  # they lived in the closed session

    # -- statements ------------------------------------------------------------------
    def prepare(self, *sqls: str) -> None:
        """Run these statements, from now on, as statements prepared once per session: one round
        trip each instead of pg8000's three (parse, describe, execute). For the few statements every
        batch repeats; off with ARCHIVER_PREPARED_STATEMENTS=false (a pooler in transaction mode
        that does not keep them).

        The server's plan_cache_mode stays as it is: PostgreSQL keeps planning them for their values
        unless a generic plan costs no more, and forcing custom plans for the session would also
        re-plan the foreign-key triggers' queries on every deleted row (3x slower moves with six
        foreign keys, measured)."""
        if self._use_prepared:
            self._hot.update(sqls)

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        try:
            if params and sql in self._hot:
                statement = self._prepared.get(sql)
                if statement is None:
                    statement = self._prepared[sql] = self.conn.prepare(sql)
                result = statement.run(**params)
                self._columns, self._last_prepared = statement.columns, True
            else:
                result = self.conn.run(sql, **params)
                self._columns, self._last_prepared = self.conn.columns, False
            return result or []
        except Exception as exc:
            if _is_connection_error(exc):
                self.close()
                raise DatabaseUnavailableError(f"lost the database connection: {describe_error(exc)}") from None
            typed = translate(exc)
            if typed is not None:
                raise typed from None
            raise

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        result = self.run(sql, **params)
        names = [c["name"] for c in (self._columns or [])]
        return [dict(zip(names, r, strict=True)) for r in result]

    def row(self, sql: str, **params: Any) -> dict[str, Any] | None:
        found = self.rows(sql, **params)
        return found[0] if found else None

    def scalar(self, sql: str, **params: Any) -> Any:
        result = self.run(sql, **params)
        return result[0][0] if result else None

    @property
    def row_count(self) -> int:
        if self._last_prepared:  # pg8000 keeps no count for them: fail loudly rather than answer wrong
            raise RuntimeError("row_count is not available after a prepared statement; use RETURNING")
        return int(self.conn.row_count)

    # -- transactions and locks --------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Database]:
        if self._in_tx:  # nested use joins the outer transaction
            yield self
            return
        self.run("START TRANSACTION")
        self._in_tx = True
        try:
            yield self
        except BaseException:
            self._in_tx = False
            if self._conn is not None:
                try:
                    self._conn.run("ROLLBACK")
                except Exception:  # noqa: BLE001 - the connection may be gone; the server rolls back
                    self.close()
            raise
        self._in_tx = False
        self.run("COMMIT")

    @contextmanager
    def lock(self, name: str) -> Iterator[Database]:
        """Serialise on ``name`` across sessions (a session-level advisory lock), e.g. migrations,
        which must run outside a transaction for CREATE INDEX CONCURRENTLY."""
        key = lock_key(name)
        self.run("SELECT pg_advisory_lock(:k)", k=key)
        try:
            yield self
        finally:
            if self._conn is not None:
                with contextlib.suppress(Exception):  # a lost session has released it already
                    self._conn.run("SELECT pg_advisory_unlock(:k)", k=key)


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for an advisory lock name."""
    return zlib.crc32(b"archiver:" + name.encode()) - 2**31
