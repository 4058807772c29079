"""Which live rows a run may archive: the pinned cutoffs and the SQL predicate built from the policy.

The same predicate serves the dry-run count, the batch query and the re-check after locking, so
a dry run counts exactly what a real run would move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .catalogue import TableShape
from .config import Policy
from .db import Database
from .identifiers import qualified, quote
from .related import RelatedGraph, not_referenced, not_referenced_by_itself


@dataclass(frozen=True)
class Cutoffs:
    """Pinned when a run starts; every hop of the run uses the same values."""

    as_of: datetime
    default: datetime
    by_lob: dict[str, datetime] = field(default_factory=dict)

    @property
    def upper(self) -> datetime:
        """The newest cutoff: no eligible row is younger, so the index walk stops here."""
        return max([self.default, *self.by_lob.values()])

    def to_json(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "default": self.default.isoformat(),
                "by_lob": {k: v.isoformat() for k, v in self.by_lob.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cutoffs:
        return cls(as_of=datetime.fromisoformat(data["as_of"]), default=datetime.fromisoformat(data["default"]),
                   by_lob={k: datetime.fromisoformat(v) for k, v in data.get("by_lob", {}).items()})


def pin_cutoffs(db: Database, policy: Policy) -> Cutoffs:
    """Compute cutoffs in the database, in the policy's time zone (the session's), so that
    '60 days' means 60 calendar days there, across daylight-saving changes."""
    as_of, default = db.run("SELECT now(), now() - make_interval(days => :d)", d=policy.retention_days)[0]
    by_lob = {}
    for lob, days in policy.retention_by_lob.items():
        by_lob[lob] = db.scalar("SELECT CAST(:t AS timestamptz) - make_interval(days => :d)", t=as_of, d=days)
    return Cutoffs(as_of=as_of, default=default, by_lob=by_lob)


def age_bound(age_type: str) -> str:
    """How a pinned cutoff (timestamptz) is compared with an age column of ``age_type``, as a format
    string for the cutoff's SQL. A ``timestamp`` column meets the cutoff as the wall-clock time in the
    policy's time zone (the session's): ``timestamp < timestamp`` is the index's own order. Turning
    the column into timestamptz instead is not monotonic across a spring-forward gap (02:30 becomes
    03:30 daylight time, later than 03:10), so an index walk bounded by it could stop short of rows a
    full scan counts. A ``date`` column meets it as midnight there (monotonic, the planner's own
    cross-type comparison)."""
    if age_type == "timestamp without time zone":
        return "CAST(CAST({} AS timestamptz) AS timestamp without time zone)"
    return "CAST({} AS timestamptz)"


class Eligibility:
    """The eligibility predicate for alias ``l`` of the live table, with its bound parameters.

    Related rows (``related``): in ``skip`` mode a row referenced by a row of another table stays.
    In every mode a row referenced by another live row (the table's references to itself) stays,
    and so does a row referenced by a row this run has archived (``job_id``): that keeps the
    dry-run count equal to what the run archives. Without it, a run that archives B, which
    references A, would find A unreferenced later in the same run and archive it too, while the
    dry run (which saw B live) did not count A. A computed fixpoint (A eligible because all its
    referrers are) would archive chains in one night, but needs A's referrers, which the keyset
    walk may meet after A, moved in A's batch: more code on the hot path for a rare shape.
    Here a chain of references leaves one level per run.
    """

    def __init__(self, policy: Policy, shape: TableShape, related: RelatedGraph, cutoffs: Cutoffs,
                 job_id: str | None = None) -> None:
        self.params: dict[str, Any] = {"c_upper": cutoffs.upper, "run_job": job_id}
        age = f"l.{quote(policy.age_column)}"
        bound = age_bound(shape.age.type)
        parts = [f"{age} < {bound.format(':c_upper')}"]
        if cutoffs.by_lob:
            whens = []
            for i, (lob, cut) in enumerate(sorted(cutoffs.by_lob.items())):
                whens.append(f"WHEN :lob_{i} THEN CAST(:c_lob_{i} AS timestamptz)")
                self.params[f"lob_{i}"], self.params[f"c_lob_{i}"] = lob, cut
            self.params["c_default"] = cutoffs.default
            case = f"CASE l.{quote(policy.lob_column)} {' '.join(whens)} ELSE CAST(:c_default AS timestamptz) END"
            parts.append(f"{age} < {bound.format(case)}")
        if policy.related_mode == "skip":
            parts.extend(not_referenced(r, "l") for r in related.children)
        archive = qualified(policy.schema_name, policy.archive_table)
        parts.extend(not_referenced_by_itself(r, "l", archive) for r in related.self_links)
        if policy.rules.enabled:
            parts.extend(self._rules(policy, f"l.{quote(shape.pk)}", cutoffs))
        self.sql = "\n  AND ".join(parts)

    def _rules(self, policy: Policy, pk: str, cutoffs: Cutoffs) -> list[str]:
        rules, schema = policy.rules, policy.schema_name
        if not rules.enabled:
            return []
        cust = quote(rules.customer_column)
        self.params.update(as_of=cutoffs.as_of, win=rules.window_days)
        out = []
        if rules.no_active_aod:
            self.params["aod_active"] = rules.aod_active_value
            out.append(f"NOT EXISTS (SELECT 1 FROM {qualified(schema, rules.aod_table)} x WHERE x.{cust} = {pk} "
                       f"AND x.{quote(rules.aod_status_column)} = :aod_active)")
        if rules.no_unpaid_installment:
            self.params["paid"] = rules.installment_paid_value
            out.append(f"NOT EXISTS (SELECT 1 FROM {qualified(schema, rules.installment_table)} x "
                       f"WHERE x.{cust} = {pk} AND x.{quote(rules.installment_status_column)} IS DISTINCT FROM :paid)")
        if rules.no_upcoming_follow_up:
            due = f"x.{quote(rules.follow_up_date_column)}"
            out.append(f"NOT EXISTS (SELECT 1 FROM {qualified(schema, rules.follow_up_table)} x WHERE x.{cust} = {pk} "
                       f"AND {due} >= CAST(:as_of AS timestamptz) "
                       f"AND {due} < CAST(:as_of AS timestamptz) + make_interval(days => :win))")
        if rules.no_recent_call:
            out.append(f"NOT EXISTS (SELECT 1 FROM {qualified(schema, rules.call_log_table)} x WHERE x.{cust} = {pk} "
                       f"AND x.{quote(rules.call_date_column)} > "
                       "CAST(:as_of AS timestamptz) - make_interval(days => :win))")
        return out
