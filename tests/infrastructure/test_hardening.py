"""A stack that cannot be deployed half-configured: what the synth refuses, and what every deployment gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.code import FETCH_CA_COMMAND, RDS_CA_BUNDLE_URL
from infra.config import ConfigError, config_from_context

from .synthesis import EXISTING_DATABASE, FIXTURE_CA, SECRETS_KEY_ARN, Synth, run_app, synthesize
from .test_iam import as_list, identity_statements

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_ca_bundle_stops_the_synth_with_the_command_that_fetches_it(tmp_path: Path) -> None:
    result = run_app(tmp_path, "-c", "db_ca_bundle=certs/not-downloaded.pem")
    assert result.returncode == 2
    assert "db_ca_bundle: certs/not-downloaded.pem is missing" in result.stderr
    assert FETCH_CA_COMMAND in result.stderr and RDS_CA_BUNDLE_URL in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "PgArchiver.template.json").exists()


def test_a_ca_bundle_without_a_certificate_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.pem").write_text("<html>not found</html>")
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        synthesize({"db_ca_bundle": str(tmp_path / "empty.pem")}, tmp_path / "out")


def test_the_default_ca_bundle_is_the_one_the_guide_downloads() -> None:
    assert config_from_context({}).db_ca_bundle == "certs/rds-global-bundle.pem"
    assert FETCH_CA_COMMAND in (ROOT / "docs" / "deploy.md").read_text()
    assert FIXTURE_CA.startswith("tests/")  # the tests' throwaway CA never stands in for a deployment's


def test_a_customer_key_encrypting_the_secrets_can_be_decrypted_through_secrets_manager(existing_db: Synth) -> None:
    readers = set()
    for key, statement in identity_statements(existing_db):
        if "kms:Decrypt" in as_list(statement["Action"]) and statement["Resource"] == SECRETS_KEY_ARN:
            via = existing_db.stack.resolve(statement["Condition"]["StringEquals"]["kms:ViaService"])
            assert "secretsmanager." in str(via)
            readers.add(key.split("ServiceRole")[0])
    # Every function that reads the database secret or the Slack webhook.
    assert readers == {"ArchiveFunction", "StatusApiFunction", "MigrationFunction", "AlertsSlackFunction"}


def test_no_key_grant_without_a_customer_key(new_db: Synth) -> None:
    assert not [s for _, s in identity_statements(new_db) if "kms:Decrypt" in as_list(s["Action"])
                and "kms:ViaService" in str(s.get("Condition"))]


@pytest.mark.parametrize(("context", "message"), [
    ({"secrets_kms_key_arn": "alias/aws/secretsmanager"}, "must be the ARN of a KMS key"),
    ({"secrets_kms_key_arn": SECRETS_KEY_ARN}, "applies to db_secret_arn or slack_webhook_secret_arn"),
])
def test_a_bad_secrets_key_is_refused(context: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_context(context)


def test_the_existing_database_fixture_sets_the_key() -> None:
    assert EXISTING_DATABASE["secrets_kms_key_arn"] == SECRETS_KEY_ARN


def test_without_the_runtimes_python_the_asset_ships_without_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra import code

    monkeypatch.setattr(code, "PYTHON_VERSION", "3.99")
    monkeypatch.setenv("ARCHIVER_RUNTIME_PYTHON", "")
    assert code.runtime_python() is None  # the bundler then skips compileall: a slower cold start, not a failure
