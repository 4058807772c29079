"""Where the live scenario's processes run: the job (its client and its backend) on a CPU of its
own and the traffic (its client and its backend) on the others, as on a database server with a
core to spare for the job; or all of them wherever the machine's scheduler puts them ("shared").

Why both: on a 2-vCPU VM that also runs both clients, the scheduler now and then wakes the
traffic's processes on the CPU the job's backend keeps busy, and they wait there for it. That, not
the database, was most of what the job cost the traffic at quiet hours (bench/README.md, "What the
traffic's p99 is made of", the seventh look). A database server runs no clients and, sized for its
load, has a core for one more backend: the split measures the job's cost through the database,
the shared arrangement its cost on a machine with no core to spare. ``make bench`` prints both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

SELF = 0  # sched_setaffinity's pid for the calling thread


@dataclass(frozen=True)
class CpuSplit:
    job: frozenset[int]
    traffic: frozenset[int]

    def describe(self) -> str:
        return f"the job on CPU {as_text(self.job)}, the traffic on CPU {as_text(self.traffic)}"


def as_text(cpus: frozenset[int]) -> str:
    """{0, 1} -> ``"0,1"``, as the traffic process's ``--cpus`` takes them (``parse``)."""
    return ",".join(str(c) for c in sorted(cpus))


def split(backend_pid: int, local_server: bool) -> tuple[CpuSplit | None, str]:
    """The last CPU for the job, the rest for the traffic; or None, and why this machine cannot
    give the job a CPU of its own."""
    if not local_server:
        return None, "the server's backends run on another machine"
    if not hasattr(os, "sched_setaffinity"):
        return None, "this platform cannot pin a process to a CPU"
    cpus = sorted(os.sched_getaffinity(SELF))
    if len(cpus) < 2:
        return None, "fewer than two CPUs"
    try:
        os.sched_setaffinity(backend_pid, os.sched_getaffinity(backend_pid))
    except OSError as exc:
        return None, f"cannot pin the server's backends: {exc.strerror or exc}"
    return CpuSplit(job=frozenset(cpus[-1:]), traffic=frozenset(cpus[:-1])), ""


@contextmanager
def pinned(cpus: frozenset[int], *pids: int) -> Iterator[None]:
    """``pids`` (SELF: the calling thread) on ``cpus`` for the block, then back where they were."""
    before = {pid: os.sched_getaffinity(pid) for pid in pids}
    for pid in pids:
        os.sched_setaffinity(pid, cpus)
    try:
        yield
    finally:
        for pid, was in before.items():
            with suppress(ProcessLookupError):  # a backend that has gone with its connection
                os.sched_setaffinity(pid, was)


def parse(text: str) -> frozenset[int]:
    """``"0,1"`` -> {0, 1}."""
    return frozenset(int(c) for c in text.split(","))
