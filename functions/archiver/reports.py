"""The weekly and monthly summary of every table: what the run log says was archived per table
and per day, failures, the run-time trend against the period before, and the tables' sizes.

Counts, dates and durations only, never a row's content; ``alerts.for_report`` makes it an alert.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Literal

from .config import PolicySet
from .db import Database
from .status import history, table_rows

Period = Literal["weekly", "monthly"]


def period_bounds(period: Period, today: date) -> tuple[date, date]:
    """The days a report sent on ``today`` covers: the seven days before it (weekly), or the calendar
    month of yesterday (monthly: on the 1st, the whole previous month)."""
    last = today - timedelta(days=1)
    first = last - timedelta(days=6) if period == "weekly" else last.replace(day=1)
    return first, last


def build(db: Database, policies: PolicySet, period: Period, when: datetime) -> dict[str, Any]:
    """The summary sent at ``when`` (aware), its days counted in the first policy's time zone."""
    first, last = period_bounds(period, policies.policies[0].local(when).date())
    days = (last - first).days + 1
    tables = []
    for policy in policies.policies:
        now = history(db, policy, days, last)
        before = history(db, policy, days, first - timedelta(days=1))["totals"]
        totals = now["totals"]
        avg, prev = totals["avg_duration_ms"], before["avg_duration_ms"]
        tables.append({
            "table": policy.live_table, "archive_table": policy.archive_table, "mode": policy.mode,
            "runs": totals["runs"], "archived": totals["archived"], "failures": totals["failures"],
            "partial": totals["partial"], "avg_duration_ms": avg,
            "previous_archived": before["archived"], "previous_avg_duration_ms": prev,
            # The run-time trend: this period's average run against the period before, in percent.
            "trend_percent": round(100 * (avg - prev) / prev) if avg is not None and prev else None,
            "per_day": now["per_day"],
            "live": table_rows(db, policy.schema_name, policy.live_table),
            "archive": table_rows(db, policy.schema_name, policy.archive_table),
        })
    return {"period": period, "from": first.isoformat(), "to": last.isoformat(), "days": days,
            "timezone": policies.policies[0].timezone, "tables": tables}
