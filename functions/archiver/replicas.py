"""Standbys' replay lag, and the wait between batches while it is above the run's bound.

A batch's WAL reaches every standby; a standby that replays slower than the job writes falls
behind, and readers of that standby see older data. ``max_replica_lag`` (seconds, 0: off) holds
the next batch back while any standby's replay lag is above it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .db import Database

LagReader = Callable[[], float]
POLL_S = 0.5  # between two readings of the lag while waiting

# replay_lag is NULL once a standby has caught up and is idle, and for a role without pg_monitor
# (pg_read_all_stats): no lag seen, no wait. A standby that is not connected has no row.
REPLAY_LAG_SQL = "SELECT COALESCE(max(EXTRACT(epoch FROM replay_lag)), 0) FROM pg_stat_replication"


def replay_lag_reader(db: Database) -> LagReader:
    """The largest replay lag of the standbys connected to ``db``'s server, in seconds."""
    return lambda: float(db.scalar(REPLAY_LAG_SQL))


def wait_for_replicas(read_lag: LagReader, max_lag_s: float, can_wait_ms: Callable[[], float],
                      sleep: Callable[[float], None] = time.sleep) -> float:
    """Sleep while the lag is above ``max_lag_s``, at most ``can_wait_ms()`` (the hop's budget left
    above what it keeps back: a wait that uses it up makes the hop hand over, and the next hop waits
    on); return the seconds waited. Never holds a row: the batch before has committed."""
    waited = 0.0
    if max_lag_s <= 0:
        return waited
    while read_lag() > max_lag_s and (left_s := can_wait_ms() / 1000) > 0:
        step = min(POLL_S, left_s)
        sleep(step)
        waited += step
    return waited
