"""The wait for standbys between batches, with a lag reader and a clock of our own."""

from __future__ import annotations

from archiver.replicas import POLL_S, wait_for_replicas


class Lags:
    """A lag reader that answers from a script, then the last value again."""

    def __init__(self, *lags: float) -> None:
        self.lags, self.reads = list(lags), 0

    def __call__(self) -> float:
        self.reads += 1
        return self.lags.pop(0) if len(self.lags) > 1 else self.lags[0]


def test_waits_while_a_standby_lags_more_than_the_bound_and_no_longer():
    slept: list[float] = []
    waited = wait_for_replicas(Lags(9.0, 3.0, 0.4), 1.0, lambda: 60_000, slept.append)
    assert slept == [POLL_S, POLL_S] and waited == 2 * POLL_S


def test_a_lag_at_the_bound_does_not_wait():
    slept: list[float] = []
    assert wait_for_replicas(Lags(1.0), 1.0, lambda: 60_000, slept.append) == 0 and not slept


def test_off_reads_no_lag_at_all():
    lags = Lags(100.0)
    assert wait_for_replicas(lags, 0, lambda: 60_000, lambda s: None) == 0 and lags.reads == 0


def test_the_wait_ends_with_the_hops_budget_even_if_the_standby_never_catches_up():
    budget = [1600.0]

    def sleep(seconds: float) -> None:
        budget[0] -= seconds * 1000

    waited = wait_for_replicas(Lags(30.0), 1.0, lambda: budget[0], sleep)
    assert waited == 1.6 and budget[0] <= 0  # three polls, then what was left: the hop hands over
