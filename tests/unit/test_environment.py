"""The environment models: every variable a function reads is typed, defaulted and refused in one line
that names it (and never shows a secret's value)."""

from __future__ import annotations

import json

import pytest

from archiver.connection import params_from_env
from archiver.environment import DatabaseEnv
from archiver.exceptions import ConfigError
from archiver.observability import PowertoolsEnv
from handlers.env import ExportEnv, SlackEnv, StatusEnv

BUCKET = "s3://archiver-exports/cc"


def test_unset_and_empty_variables_take_the_defaults():
    assert DatabaseEnv.from_env({}) == DatabaseEnv.from_env({"ARCHIVER_DB_PORT": "", "ARCHIVER_DB_SSL": ""})
    db = DatabaseEnv.from_env({})
    assert (db.port, db.user, db.iam_auth, db.ssl_mode, db.url) == (5432, "archiver", False, "verify-full", None)
    assert ExportEnv.from_env({"ARCHIVER_EXPORT_DEST": BUCKET}).rows_per_file == 100_000
    assert PowertoolsEnv.from_env({}).metrics_namespace == "Archiver"


def test_values_are_typed_and_other_variables_ignored():
    db = DatabaseEnv.from_env({"ARCHIVER_DB_HOST": "db.internal", "ARCHIVER_DB_PORT": "6432",
                               "ARCHIVER_DB_IAM_AUTH": "TRUE", "HOME": "/root"})
    assert (db.host, db.port, db.iam_auth) == ("db.internal", 6432, True)
    assert StatusEnv.from_env({"ARCHIVER_ARCHIVE_FUNCTION_NAME": "archiver-archive"}).archive_function_name == (
        "archiver-archive")


def test_a_model_is_frozen():
    db = DatabaseEnv.from_env({})
    with pytest.raises(ValueError, match="frozen"):
        db.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(("model", "environ", "message"), [
    (DatabaseEnv, {"ARCHIVER_DB_PORT": "fivefourthreetwo"}, "ARCHIVER_DB_PORT: Input should be a valid integer"),
    (DatabaseEnv, {"ARCHIVER_DB_PORT": "70000"}, "ARCHIVER_DB_PORT: Input should be less than or equal to 65535"),
    (DatabaseEnv, {"ARCHIVER_DB_IAM_AUTH": "maybe"}, "ARCHIVER_DB_IAM_AUTH: Input should be a valid boolean"),
    (DatabaseEnv, {"ARCHIVER_DB_SSL": "on"}, "ARCHIVER_DB_SSL: Input should be 'disable', 'allow'"),
    (DatabaseEnv, {"ARCHIVER_DB_HOST": "h" * 254}, "ARCHIVER_DB_HOST: String should have at most 253"),
    (StatusEnv, {}, "ARCHIVER_ARCHIVE_FUNCTION_NAME is not set"),
    (StatusEnv, {"ARCHIVER_ARCHIVE_FUNCTION_NAME": "archiver archive"}, "ARCHIVER_ARCHIVE_FUNCTION_NAME: String"),
    (SlackEnv, {}, "ARCHIVER_SLACK_WEBHOOK_SECRET_ARN is not set"),
    (ExportEnv, {}, "ARCHIVER_EXPORT_DEST is not set"),
    (ExportEnv, {"ARCHIVER_EXPORT_DEST": "/tmp/exports"}, "ARCHIVER_EXPORT_DEST: String should match pattern"),
    (ExportEnv, {"ARCHIVER_EXPORT_DEST": BUCKET, "ARCHIVER_EXPORT_ROWS_PER_FILE": "0"},
     "ARCHIVER_EXPORT_ROWS_PER_FILE: Input should be greater than or equal to 1"),
    (PowertoolsEnv, {"LOG_LEVEL": "LOUD"}, "LOG_LEVEL: String should match pattern"),
])
def test_a_bad_value_is_one_line_naming_the_variable_and_the_value(model, environ, message):
    with pytest.raises(ConfigError) as err:
        model.from_env(environ)
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text
    named = text.split(":")[0]
    if named in environ:
        assert text.endswith(f"(got {environ[named]!r})")


def test_a_secret_is_not_shown_by_the_model():
    db = DatabaseEnv.from_env({"ARCHIVER_DB_PASSWORD": "hunter2", "DATABASE_URL": "postgresql://u:hunter2@h/d"})
    assert "hunter2" not in repr(db) and "hunter2" not in str(db)


def test_a_bad_database_variable_is_a_config_error_before_any_secret_is_fetched():
    fetched: list[str] = []

    def fetch(arn: str) -> str:
        fetched.append(arn)
        return json.dumps({"username": "u", "password": "p", "host": "h"})

    with pytest.raises(ConfigError, match="ARCHIVER_DB_PORT"):
        params_from_env({"ARCHIVER_DB_SECRET_ARN": "arn:secret", "ARCHIVER_DB_PORT": "x"}, fetch_secret=fetch)
    assert fetched == []


def test_the_host_variables_become_the_connection():
    p = params_from_env({"ARCHIVER_DB_HOST": "db", "ARCHIVER_DB_PORT": "6432", "ARCHIVER_DB_USER": "app",
                         "ARCHIVER_DB_PASSWORD": "pw", "ARCHIVER_DB_NAME": "cc", "ARCHIVER_DB_SSL": "require"})
    assert (p.host, p.port, p.user, p.password, p.database, p.ssl_mode) == ("db", 6432, "app", "pw", "cc", "require")
