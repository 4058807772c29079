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

logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "archiver"),
    level=os.environ.get("LOG_LEVEL", "INFO"),
    logger_handler=logging.StreamHandler(sys.stderr),
)


class RunMetrics(Protocol):
    """Where the engine reports per-batch and per-run figures (CloudWatch in Lambda)."""

    def batch(self, ms: float, moved: int) -> None: ...

    def run(self, *, archived: int, eligible: int, batches: int, duration_ms: float, failed: bool,
            succeeded: bool) -> None: ...

    def count(self, name: str, value: float = 1) -> None: ...


class NullMetrics:
    def batch(self, ms: float, moved: int) -> None:
        pass

    def run(self, *, archived: int, eligible: int, batches: int, duration_ms: float, failed: bool,
            succeeded: bool) -> None:
        pass

    def count(self, name: str, value: float = 1) -> None:
        pass


class PowertoolsMetrics:
    """CloudWatch metrics through Powertools (EMF); flushed by the handler's ``log_metrics``."""

    def __init__(self, metrics: object) -> None:
        from aws_lambda_powertools.metrics import MetricUnit

        self._m = metrics
        self._unit = MetricUnit

    def batch(self, ms: float, moved: int) -> None:
        self._m.add_metric(name="BatchDurationMs", unit=self._unit.Milliseconds, value=ms)  # type: ignore[attr-defined]

    def run(self, *, archived: int, eligible: int, batches: int, duration_ms: float, failed: bool,
            succeeded: bool) -> None:
        add = self._m.add_metric  # type: ignore[attr-defined]
        add(name="RecordsArchived", unit=self._unit.Count, value=archived)
        add(name="RecordsEligible", unit=self._unit.Count, value=eligible)
        add(name="Batches", unit=self._unit.Count, value=batches)
        add(name="RunDurationMs", unit=self._unit.Milliseconds, value=duration_ms)
        add(name="RunFailures", unit=self._unit.Count, value=1 if failed else 0)
        if succeeded:
            add(name="SuccessfulRuns", unit=self._unit.Count, value=1)

    def count(self, name: str, value: float = 1) -> None:
        self._m.add_metric(name=name, unit=self._unit.Count, value=value)  # type: ignore[attr-defined]
