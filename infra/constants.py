"""Names shared by the constructs and the tests; the functions read the same names."""

from __future__ import annotations

from aws_cdk import aws_lambda as lambda_

SERVICE = "archiver"
METRICS_NAMESPACE = "Archiver"
# Powertools Metrics adds this default dimension to every metric it emits.
METRIC_DIMENSIONS = {"service": SERVICE}

# The asset's wheels are built for this CPython; the runtime below must stay in step with it.
PYTHON_VERSION = "3.12"
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
PIP_PLATFORM = "manylinux2014_aarch64"

HANDLER_ARCHIVE = "handlers.archive.handler"
HANDLER_STATUS = "handlers.status.handler"
HANDLER_SLACK = "handlers.slack.handler"
HANDLER_MIGRATE = "handlers.migrate.handler"

# Event the nightly schedule sends; the archive handler recognises it by source and trigger.
SCHEDULE_SOURCE = "archiver.schedule"
SCHEDULE_TRIGGER = "schedule"

API_STAGE = "v1"
# (method, path) of every route the status function serves.
API_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "runs"),
    ("GET", "runs"),
    ("GET", "runs/{job_id}"),
    ("POST", "runs/{job_id}/cancel"),
    ("GET", "stats"),
    ("GET", "health"),
    ("GET", "openapi.json"),
)

POSTGRES_PORT = 5432
NEW_DATABASE_NAME = "archiver"
NEW_DATABASE_ADMIN = "archiver_admin"


class MetricName:
    """Metrics the core emits (namespace ``Archiver``, dimensions ``service=archiver`` and ``table=<live table>``)."""

    RECORDS_ARCHIVED = "RecordsArchived"
    RECORDS_ELIGIBLE = "RecordsEligible"
    BATCHES = "Batches"
    RUN_DURATION_MS = "RunDurationMs"
    RUN_FAILURES = "RunFailures"
    BATCH_DURATION_MS = "BatchDurationMs"
    SUCCESSFUL_RUNS = "SuccessfulRuns"
    STUCK_RUNS = "StuckRuns"
    HOP_LIMIT_REACHED = "HopLimitReached"
