"""Chaos suite fixtures: the report of figures printed at the end of the run, and a watch on
every log line, CLI output and alert of each test for customer data."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from archiver.observability import logger

from .report import ChaosReport
from .support import LeakWatch

REPORT = ChaosReport()
PRIVACY = "no customer data in logs/alerts"


@pytest.fixture(scope="session")
def chaos_report() -> ChaosReport:
    return REPORT


@pytest.fixture(autouse=True)
def leak_watch(request: pytest.FixtureRequest) -> Iterator[LeakWatch]:
    """Every line the archiver logs during the test (at DEBUG), every CLI output and every alert
    collected through this watch is searched for the seeded customers' names, e-mails, phones
    and policy numbers."""
    watch = LeakWatch()
    level = logger.log_level
    logger.setLevel("DEBUG")
    watch.install()
    try:
        yield watch
    finally:
        watch.uninstall()
        logger.setLevel(level)
    lines, leaks = watch.lines(), watch.leaks()
    _LEAKING_LINES.append(len(leaks))
    REPORT.record(PRIVACY, runs=1, rows_checked=len(lines))
    REPORT.attacks[PRIVACY].notes = [f"tests watched; rows = log/CLI/alert lines; leaking lines: "
                                     f"{sum(_LEAKING_LINES)}"]
    assert not leaks, f"customer data in {len(leaks)} captured lines, e.g. {leaks[0]}"


_LEAKING_LINES: list[int] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT.attacks:
        return
    terminalreporter.write_sep("=", "chaos report")
    terminalreporter.write_line(REPORT.table())
    REPORT.save()
