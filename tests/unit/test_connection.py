"""Connection parameters: DATABASE_URL forms, TLS modes, and the Lambda's secret."""

from __future__ import annotations

import json
import ssl

import pytest

from archiver.connection import params_from_env
from archiver.db import params_from_url
from archiver.exceptions import ConfigError


def test_url_with_sslmode_require_encrypts_without_verifying():
    p = params_from_url("postgresql://app:s%3Acret@db.example:6432/cc?sslmode=require")
    assert (p.user, p.password, p.host, p.port, p.database) == ("app", "s:cret", "db.example", 6432, "cc")
    ctx = p.ssl_context()
    assert ctx is not None and ctx.verify_mode == ssl.CERT_NONE


def test_url_with_verify_full_checks_the_host():
    ctx = params_from_url("postgresql://a@h/d?sslmode=verify-full").ssl_context()
    assert ctx is not None and ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED


def test_unix_socket_url():
    p = params_from_url("postgresql://postgres@/db?host=/tmp/pg")
    assert p.unix_sock == "/tmp/pg/.s.PGSQL.5432" and p.ssl_context() is None


@pytest.mark.parametrize("url", ["mysql://x@y/z", "postgresql://a@h:notaport/d", "postgresql://a@h/d?sslmode=maybe"])
def test_malformed_urls_are_config_errors(url):
    with pytest.raises(ConfigError):
        params_from_url(url)


def test_masked_description_never_shows_the_password():
    p = params_from_url("postgresql://app:hunter2@db:5432/cc")
    assert "hunter2" not in p.masked() and "***" in p.masked()


def test_lambda_secret_in_rds_format_with_tls_verified_by_default():
    secret = {"username": "archiver", "password": "pw", "host": "db.cluster", "port": 5432, "dbname": "cc"}
    p = params_from_env({"ARCHIVER_DB_SECRET_ARN": "arn:secret"}, fetch_secret=lambda arn: json.dumps(secret))
    assert (p.user, p.host, p.database, p.ssl_mode) == ("archiver", "db.cluster", "cc", "verify-full")


def test_secret_in_another_shape_is_a_clear_error():
    with pytest.raises(ConfigError, match="RDS JSON"):
        params_from_env({"ARCHIVER_DB_SECRET_ARN": "arn"}, fetch_secret=lambda arn: '{"user": "x"}')


def test_iam_auth_uses_a_token_as_password_and_requires_tls():
    p = params_from_env({"ARCHIVER_DB_HOST": "db", "ARCHIVER_DB_IAM_AUTH": "true", "ARCHIVER_DB_SSL": "disable"},
                        fetch_token=lambda host, port, user: f"token-for-{user}@{host}:{port}")
    assert p.password == "token-for-archiver@db:5432" and p.ssl_mode == "verify-full"
