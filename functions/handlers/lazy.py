"""The one dependency holder every handler uses: built on first use, kept while the container is warm."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LazyDeps(Generic[T]):
    """A handler's dependencies: ``build`` runs once, on first use, so a cold start that never needs
    them (a custom resource's Delete) never connects; the local edge and tests inject their own."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._deps: T | None = None

    def get(self) -> T:
        if self._deps is None:
            self._deps = self._build()
        return self._deps

    def use(self, deps: T | None) -> None:
        """Inject dependencies; None goes back to building them."""
        self._deps = deps
