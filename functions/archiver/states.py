"""The run log's states, defined once: the log's CHECK constraint, the job store, the alert rules,
the status API's response model and the CLI all read them from here.

A run moves through them as this table says; every transition is a guarded UPDATE in the job
store (``jobs.JobStore``) that applies only while the run is still active.

=============  ======================================================  =================================
state          reached when                                            from
=============  ======================================================  =================================
pending        the run is created (schedule, start request, CLI)       -
running        a worker claims the lease for a hop                     pending, running (next hop)
succeeded      every batch committed (or restore/purge done)           running
partial        the run ended with some batches committed, some not     running
failed         the run ended with nothing committed                    pending, running
cancelled      a cancel request was honoured                           pending, running
rolled_back    a restore put its rows back into the live table         succeeded, partial (archive runs)
=============  ======================================================  =================================

Active (at most one per policy, by the log's partial unique index): pending and running.
"""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    CANCELLED = "cancelled"


ACTIVE_STATES = (RunState.PENDING, RunState.RUNNING)


def sql_state(state: RunState) -> str:
    """A state as an SQL literal (``'running'``): where a statement names a state, it is spelt from
    here, never typed into the SQL text. States are fixed names, so quoting them is safe."""
    return f"'{RunState(state).value}'"


def sql_states(*states: RunState) -> str:
    """States as an SQL list (``('pending', 'running')``), for ``state IN ...``."""
    return "(" + ", ".join(sql_state(s) for s in states) + ")"


# An active run, in SQL, spelt as the log's one-active index predicate so the planner can use it.
ACTIVE_SQL = f"state IN {sql_states(*ACTIVE_STATES)}"
