"""Schema migration as a CloudFormation custom resource (``on_event`` of a custom_resources.Provider).

Create and Update run the core's idempotent migrate; Delete leaves the database alone: the run
log and the archive hold data that outlives the stack.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.utilities.data_classes import CloudFormationCustomResourceEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from archiver import aws, catalogue, migration
from archiver.config import Policy, PolicySet, load_policies, load_settings
from archiver.connection import open_database
from archiver.db import Database
from archiver.exceptions import SchemaError
from archiver.observability import logger

from .lazy import LazyDeps, Provider

tracer = Tracer()
PHYSICAL_ID = "archiver-schema"


@dataclass
class MigrateDeps:
    db: Database
    policy: Policy
    policies: PolicySet | None = None  # every table's policy; None: ``policy`` alone


def build_deps() -> MigrateDeps:
    env = dict(os.environ)
    policies, settings = load_policies(env), load_settings(env)
    policy = policies.policies[0]
    return MigrateDeps(db=open_database(env, settings, policy.timezone, aws.fetch_secret, aws.fetch_iam_token),
                       policy=policy, policies=policies)


DEPS = LazyDeps(build_deps)


def migrate(deps: MigrateDeps) -> dict[str, Any]:
    """Run the migration of every policy; the custom resource's Data are the summed counts."""
    results = [_migrate_one(deps.db, p) for p in (deps.policies.policies if deps.policies else (deps.policy,))]
    total = {k: sum(r[k] for r in results) for k in ("Created", "AddedColumns", "Indexes", "Warnings")}
    return {**total, "LiveTable": "missing" if any(r["LiveTable"] == "missing" for r in results) else "present"}


def _migrate_one(db: Database, policy: Policy) -> dict[str, Any]:
    """Migrate one policy.

    A live table that does not exist yet (a new database the application has not filled) is not
    a failed deploy: the run log is created, and the archive table follows on the first run.
    """
    db.ensure_alive()
    try:
        report = migration.migrate(db, policy)
    except SchemaError:
        if catalogue.table_exists(db, policy.schema_name, policy.live_table):
            raise
        logger.warning("live table missing: only the run log was migrated",
                       extra={"live_table": policy.key})
        return {"Created": 0, "AddedColumns": 0, "Indexes": 0, "Warnings": 1, "LiveTable": "missing"}
    counts = {"Created": len(report.created), "AddedColumns": len(report.added_columns),
              "Indexes": len(report.indexes), "Warnings": len(report.warnings), "LiveTable": "present"}
    logger.info("schema migrated",
                extra={**counts, "created_tables": report.created, "migration_warnings": report.warnings})
    return counts


def handle(event: dict[str, Any], context: LambdaContext, deps: Provider[MigrateDeps]) -> dict[str, Any]:
    """Create and Update migrate; Delete answers without ``deps``: it never connects."""
    request = CloudFormationCustomResourceEvent(event)
    logger.info("custom resource event", extra={"request_type": request.request_type})
    if request.request_type == "Delete":
        return {"PhysicalResourceId": request.get("PhysicalResourceId") or PHYSICAL_ID}
    return {"PhysicalResourceId": PHYSICAL_ID, "Data": migrate(deps())}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext, deps: Provider[MigrateDeps] = DEPS) -> dict[str, Any]:
    return handle(event, context, deps)
