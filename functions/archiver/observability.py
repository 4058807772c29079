"""One Logger for the whole package, and the metrics interface the engine reports to.

Logs go to stderr (so ``--json`` output on stdout stays one object) and carry counts, ids
and timings only, never a customer's data.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Protocol

from aws_lambda_powertools import Logger
from pydantic import Field

from .environment import EnvModel

# The names the deployment's alarms and dashboard read (infra/monitoring.py imports them from here).
SERVICE = "archiver"  # Powertools adds it as the dimension ``service`` of every metric
METRICS_NAMESPACE = "Archiver"


class MetricName:
    """Every metric the functions emit: namespace ``Archiver``, dimensions ``service`` and ``table``."""

    RECORDS_ARCHIVED = "RecordsArchived"
    RECORDS_ELIGIBLE = "RecordsEligible"
    BATCHES = "Batches"
    RUN_DURATION_MS = "RunDurationMs"
    RUN_FAILURES = "RunFailures"
    BATCH_DURATION_MS = "BatchDurationMs"
    SUCCESSFUL_RUNS = "SuccessfulRuns"
    STUCK_RUNS = "StuckRuns"
    HOP_LIMIT_REACHED = "HopLimitReached"
    RUNS_STARTED_BY_API = "RunsStartedByApi"  # the status function's (no table dimension)
    CANCEL_REQUESTS = "CancelRequests"


class PowertoolsEnv(EnvModel):
    """Powertools' own variables, read once: for this Logger and the handlers' Metrics."""

    service: str = Field(SERVICE, alias="POWERTOOLS_SERVICE_NAME", min_length=1, max_length=255)
    log_level: str = Field("INFO", alias="LOG_LEVEL", pattern=r"(?i)^(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)$")
    metrics_namespace: str = Field(METRICS_NAMESPACE, alias="POWERTOOLS_METRICS_NAMESPACE", min_length=1,
                                   max_length=255)


POWERTOOLS = PowertoolsEnv.from_env(os.environ)
logger = Logger(
    service=POWERTOOLS.service,
    level=POWERTOOLS.log_level.upper(),
    logger_handler=logging.StreamHandler(sys.stderr),
)


class RunMetrics(Protocol):
    """Where the engine reports per-batch and per-run figures (CloudWatch in Lambda)."""

    def batch(self, ms: float, moved: int) -> None: ...

    def run(self, *, archived: int, eligible: int, batches: int, duration_ms: float, failed: bool,
            succeeded: bool) -> None: ...

    def count(self, name: str, value: float = 1) -> None: ...

    def use_table(self, table: str) -> None:
        """Every figure from now on is the run of ``table`` (one invocation serves one table)."""


class NullMetrics:
    def use_table(self, table: str) -> None:
        pass

    def batch(self, ms: float, moved: int) -> None:
        pass

    def run(self, *, archived: int, eligible: int, batches: int, duration_ms: float, failed: bool,
            succeeded: bool) -> None:
        pass

    def count(self, name: str, value: float = 1) -> None:
        pass


class PowertoolsMetrics:
    """CloudWatch metrics through Powertools (EMF); flushed by the handler's ``log_metrics``.

    Every metric carries the dimension ``table`` (the live table of the run) when ``table`` is set,
    so the alarms and the dashboard can tell the tables of a multi-policy deployment apart.
    """

    def __init__(self, metrics: object, table: str | None = None) -> None:
        from aws_lambda_powertools.metrics import MetricUnit

        self._m = metrics
        self._unit = MetricUnit
        self.table = table

    def use_table(self, table: str) -> None:
        self.table = table

    def _add(self, name: str, unit: object, value: float) -> None:
        m = self._m
        # Powertools clears dimensions at every flush: set it again for each invocation's metrics.
        if self.table and m.dimension_set.get("table") != self.table:  # type: ignore[attr-defined]
            m.add_dimension(name="table", value=self.table)  # type: ignore[attr-defined]
        m.add_metric(name=name, unit=unit, value=value)  # type: ignore[attr-defined]

    def batch(self, ms: float, moved: int) -> None:
        self._add(MetricName.BATCH_DURATION_MS, self._unit.Milliseconds, ms)

    def run(self, *, archived: int, eligible: int, batches: int, duration_ms: float, failed: bool,
            succeeded: bool) -> None:
        count = self._unit.Count
        self._add(MetricName.RECORDS_ARCHIVED, count, archived)
        self._add(MetricName.RECORDS_ELIGIBLE, count, eligible)
        self._add(MetricName.BATCHES, count, batches)
        self._add(MetricName.RUN_DURATION_MS, self._unit.Milliseconds, duration_ms)
        self._add(MetricName.RUN_FAILURES, count, 1 if failed else 0)
        if succeeded:
            self._add(MetricName.SUCCESSFUL_RUNS, count, 1)

    def count(self, name: str, value: float = 1) -> None:
        self._add(name, self._unit.Count, value)
