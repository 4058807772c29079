"""Names shared by the constructs and the tests. Values the functions share (metric names, the
namespace, policy bounds, identifier and time-zone rules) are the core's: infra imports them from
``archiver.observability`` and ``archiver.config``."""

from __future__ import annotations

from aws_cdk import aws_lambda as lambda_

from archiver import environment

# The asset's wheels are built for this CPython; the runtime below must stay in step with it.
PYTHON_VERSION = "3.12"
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
PIP_PLATFORM = "manylinux2014_aarch64"
# The export function has its own asset: pyarrow (pinned as in requirements-dev.txt), for x86_64.
PYARROW = "pyarrow==26.0.1"
EXPORT_ARCHITECTURE = lambda_.Architecture.X86_64
# pyarrow 21+ ships manylinux_2_28 wheels only (Lambda's Amazon Linux 2023 has glibc 2.34).
EXPORT_PIP_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
# Parts of pyarrow the export never loads (headers, tests, Arrow Flight): 216 MB -> 176 MB unzipped,
# under Lambda's 250 MB. Checked: pyarrow.parquet writes and reads with them removed.
EXPORT_TRIM = ("pyarrow/include", "pyarrow/tests", "pyarrow/src", "pyarrow/libarrow_flight*",
               "pyarrow/libarrow_python_flight*", "pyarrow/_flight*")
HANDLER_EXPORT = "handlers.export.handler"

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
    ("GET", ""),  # the status page
    ("POST", "runs"),
    ("GET", "runs"),
    ("GET", "runs/{job_id}"),
    ("POST", "runs/{job_id}/cancel"),
    ("GET", "stats"),
    ("GET", "health"),
    ("GET", "openapi.json"),
)
API_PATHS: tuple[str, ...] = tuple(dict.fromkeys(path for _, path in API_ROUTES))
# POST /erasures: IAM-authorised always, with its own managed policy (infra/erasure.py), and only
# where the export function exists (export_enabled).
ERASURE_PATH = "erasures"
# The variable naming the erasure key's secret: the core's name, which the functions read.
ERASURE_KEY_ENV = environment.ERASURE_KEY_ENV

POSTGRES_PORT = 5432
NEW_DATABASE_NAME = "archiver"
NEW_DATABASE_ADMIN = "archiver_admin"

