"""The one dependency pattern every handler follows.

A handler module has a plain ``handle(event, context, deps)`` and the decorated Lambda entry point
``handler(event, context, deps=DEPS)`` that wraps it (serverless-python-demo's ``process_stream``).
``deps`` is a provider: called when the event needs them, so a custom resource's Delete or a request
refused at the door never connects. In Lambda it is the module's ``DEPS``, built on first use and
kept while the container is warm; the local edge and the tests pass their own (``lambda: deps``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
Provider = Callable[[], T]


class LazyDeps(Generic[T]):
    """A handler's dependencies, built by ``build`` on the first call, then reused."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._deps: T | None = None

    def __call__(self) -> T:
        if self._deps is None:
            self._deps = self._build()
        return self._deps
