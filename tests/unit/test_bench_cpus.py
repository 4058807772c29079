"""Where the benchmark's live scenario puts the job and the traffic (bench/cpus.py)."""

from __future__ import annotations

import os
import threading

import pytest

from bench.cpus import SELF, CpuSplit, as_text, parse, pinned, split

linux_with_two_cpus = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs Linux and two CPUs"
)


def test_a_server_on_another_machine_gets_no_split_and_says_why() -> None:
    assert split(os.getpid(), local_server=False) == (None, "the server's backends run on another machine")


@linux_with_two_cpus
def test_the_job_gets_the_last_cpu_and_the_traffic_the_others() -> None:
    cpus = sorted(os.sched_getaffinity(SELF))

    got, why = split(os.getpid(), local_server=True)  # this process stands in for the server's backend

    assert got == CpuSplit(job=frozenset(cpus[-1:]), traffic=frozenset(cpus[:-1])) and why == ""


@linux_with_two_cpus
def test_a_backend_this_process_cannot_reach_leaves_the_cpus_shared() -> None:
    gone = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 100_000

    got, why = split(gone, local_server=True)

    assert got is None and why.startswith("cannot pin the server's backends: ")


@linux_with_two_cpus
def test_pinning_holds_for_the_block_and_puts_the_thread_back_after() -> None:
    before = os.sched_getaffinity(SELF)
    seen: list[set[int]] = []

    def in_a_thread() -> None:  # affinity is per thread: another thread's must not be touched
        with pinned(frozenset({min(before)}), SELF):
            seen.append(os.sched_getaffinity(SELF))
        seen.append(os.sched_getaffinity(SELF))

    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join()

    assert seen == [{min(before)}, before] and os.sched_getaffinity(SELF) == before


def test_the_traffic_process_reads_back_the_cpus_it_was_given() -> None:
    assert as_text(frozenset({3, 0, 1})) == "0,1,3" and parse("0,1,3") == frozenset({0, 1, 3})
