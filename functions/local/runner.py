"""The local runner: drives the archive Lambda handler in-process, hop after hop.

A LocalInvoker stands in for the asynchronous self-invocation and a fake Lambda context gives
each hop its time budget, so the code path is the one that runs in AWS.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archiver.worker import Deps, LocalInvoker

LOCAL_FUNCTION_ARN = "arn:aws:lambda:local:000000000000:function:archiver-archive-local"


class FakeContext:
    """Just enough of a LambdaContext; its clock runs out after ``seconds``."""

    function_name = "archiver-archive-local"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = LOCAL_FUNCTION_ARN
    log_group_name = "local"
    log_stream_name = "local"

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._clock = clock
        self._deadline = clock() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._clock()) * 1000))


@dataclass
class LocalRun:
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def hops(self) -> int:
        return len(self.results)

    @property
    def last(self) -> dict[str, Any]:
        return self.results[-1] if self.results else {}


def drive(event: dict[str, Any], deps: Deps, hop_seconds: float,
          on_hop: Callable[[int, dict[str, Any]], None] | None = None,
          context_factory: Callable[[float], Any] = FakeContext) -> LocalRun:
    """Invoke the archive handler with ``event``, then with every event it queues for itself."""
    from handlers import archive  # the real handler, decorators and all

    # Locally no metrics are published (NullMetrics); Powertools would warn about that each hop.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    invoker = deps.invoker if isinstance(deps.invoker, LocalInvoker) else LocalInvoker()
    deps.invoker = invoker
    run = LocalRun()
    pending = [event]
    while pending:
        result = archive.handler(pending.pop(0), context_factory(hop_seconds), deps=lambda: deps)
        run.results.append(result)
        if on_hop is not None:
            on_hop(run.hops, result)
        pending.extend(payload for _, payload in invoker.queue)
        invoker.queue.clear()
    return run
