"""The schema migration custom resource: Create and Update migrate (idempotently), Delete keeps
the data; events shaped as the CDK Provider framework passes them to ``on_event``."""

from __future__ import annotations

import pytest

from archiver import migration
from archiver.exceptions import SchemaError
from handlers import migrate
from local import demo
from local.runner import FakeContext
from tests.helpers import add_customers


def cfn_event(request_type: str, physical_id: str | None = None) -> dict:
    event = {
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:provider-framework-onEvent",
        "ResponseURL": "https://cloudformation-custom-resource-response-euwest1.s3.amazonaws.com/x",
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/archiver/guid",
        "RequestId": "c5b4b0a6-0000-4000-8000-000000000000",
        "LogicalResourceId": "SchemaMigrationSchema",
        "ResourceType": "Custom::ArchiverSchema",
        "ResourceProperties": {"ServiceToken": "arn:...", "CodeHash": "abc", "Settings": "def"},
    }
    if physical_id:
        event["PhysicalResourceId"] = physical_id
    return event


@pytest.fixture
def deps(db, policy):
    ready = migrate.MigrateDeps(db=db, policy=policy)
    return lambda: ready


def never() -> migrate.MigrateDeps:
    raise AssertionError("Delete must not build the dependencies: it must not even connect")


def tables(db) -> set[str]:
    return {r[0] for r in db.run("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_create_migrates_and_reports_counts(deps, db, policy):
    demo.create_tables(db, policy)
    result = migrate.handler(cfn_event("Create"), FakeContext(300), deps=deps)
    assert result["PhysicalResourceId"] == "archiver-schema"
    # the log, the archive, the export ledger, the erasure records and the erasure key
    assert result["Data"]["Created"] == 5 and result["Data"]["LiveTable"] == "present"
    assert result["Data"]["Indexes"] >= 1
    assert {"nic_cc_archive_log", "nic_cc_customer_backup", "nic_cc_customer_backup_exported"} <= tables(db)


def test_update_is_idempotent(deps, db, policy):
    demo.create_tables(db, policy)
    migrate.handler(cfn_event("Create"), FakeContext(300), deps=deps)
    again = migrate.handler(cfn_event("Update", "archiver-schema"), FakeContext(300), deps=deps)
    assert again == {"PhysicalResourceId": "archiver-schema",
                     "Data": {"Created": 0, "AddedColumns": 0, "Indexes": 0, "Warnings": 0, "LiveTable": "present"}}


def test_delete_keeps_the_run_log_and_the_archive(db, policy):
    add_customers(db, policy, [90])
    migration.migrate(db, policy)
    result = migrate.handler(cfn_event("Delete", "archiver-schema"), FakeContext(300), deps=never)
    assert result == {"PhysicalResourceId": "archiver-schema"}
    assert {"nic_cc_archive_log", "nic_cc_customer_backup"} <= tables(db)


def test_a_new_database_without_the_live_table_still_deploys(deps, db):
    result = migrate.handler(cfn_event("Create"), FakeContext(300), deps=deps)
    assert result["Data"]["LiveTable"] == "missing"
    assert "nic_cc_archive_log" in tables(db)


def test_an_archive_table_that_cannot_hold_the_rows_fails_the_deploy(deps, db, policy):
    demo.create_tables(db, policy)
    db.run("CREATE TABLE nic_cc_customer_backup (id bigint PRIMARY KEY, email integer)")
    with pytest.raises(SchemaError, match="cannot hold rows"):
        migrate.handler(cfn_event("Update", "archiver-schema"), FakeContext(300), deps=deps)
