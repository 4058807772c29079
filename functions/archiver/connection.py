"""Where the database is: DATABASE_URL, the Lambda's secret or IAM token, or a fallback the caller passes
(the local edge passes its embedded server; in Lambda there is none, and no configuration is an error)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

from .config import Settings
from .db import ConnectionParams, Database, params_from_url
from .environment import DatabaseEnv
from .exceptions import ConfigError

SecretFetcher = Callable[[str], str]
TokenFetcher = Callable[[str, int, str], str]
# The local edge's embedded server: the environment in, the server's unix socket out.
SocketFallback = Callable[[Mapping[str, str]], str]

# Verifies RDS/Aurora servers; shipped in the Lambda asset with the package.
RDS_CA_BUNDLE = Path(__file__).with_name("certs") / "rds-global-bundle.pem"


def params_from_env(
    env: Mapping[str, str],
    timezone: str = "UTC",
    fetch_secret: SecretFetcher | None = None,
    fetch_token: TokenFetcher | None = None,
    fallback: SocketFallback | None = None,
) -> ConnectionParams:
    """Resolve connection parameters, in order: DATABASE_URL, ARCHIVER_DB_* (AWS), ``fallback`` (local)."""
    db = DatabaseEnv.from_env(env)
    if db.url is not None:
        return params_from_url(db.url.get_secret_value(), timezone)
    ssl_mode = db.ssl_mode
    ca_file = db.ca_file or (str(RDS_CA_BUNDLE) if RDS_CA_BUNDLE.exists() else None)
    if db.secret_arn:
        if fetch_secret is None:
            raise ConfigError(f"{DatabaseEnv.variable('secret_arn')} is set but no secret fetcher is available")
        try:
            secret = json.loads(fetch_secret(db.secret_arn))
            return ConnectionParams(
                user=secret["username"], password=secret["password"],
                host=db.host or secret["host"],
                port=int(secret.get("port", 5432)),
                database=db.name or secret.get("dbname", "postgres"),
                ssl_mode=ssl_mode, ca_file=ca_file, timezone=timezone,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"database secret is not in the RDS JSON format: missing or bad {exc}") from None
    if db.host:
        password = db.password.get_secret_value() if db.password else None
        if db.iam_auth:
            if fetch_token is None:
                raise ConfigError(f"{DatabaseEnv.variable('iam_auth')} is true but no token fetcher is available")
            password = fetch_token(db.host, db.port, db.user)
            ssl_mode = "verify-full" if ssl_mode in ("disable", "prefer", "allow") else ssl_mode
        return ConnectionParams(user=db.user, password=password, host=db.host, port=db.port,
                                database=db.name or "postgres", ssl_mode=ssl_mode, ca_file=ca_file,
                                timezone=timezone)
    if fallback is None:
        url, secret, host = (DatabaseEnv.variable(f) for f in ("url", "secret_arn", "host"))
        raise ConfigError(f"no database configured: set {url}, {secret} or {host}")
    sock = fallback(env)
    return ConnectionParams(user="postgres", unix_sock=sock, database=db.name or "postgres", timezone=timezone)


def open_database(env: Mapping[str, str], settings: Settings, timezone: str = "UTC",
                  fetch_secret: SecretFetcher | None = None,
                  fetch_token: TokenFetcher | None = None, fallback: SocketFallback | None = None) -> Database:
    params = params_from_env(env, timezone, fetch_secret, fetch_token, fallback)
    return Database(params, settings.lock_timeout_ms, settings.statement_timeout_ms, settings.prepared_statements)
