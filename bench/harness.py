"""Templates and fresh databases for the scenarios: seed once per data set (data.TEMPLATES), clone
per scenario."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from archiver.config import Policy, Settings
from archiver.db import Database

from . import data
from .server import Server

T = TypeVar("T")


@dataclass
class Bench:
    server: Server
    policy: Policy
    settings: Settings
    rows: int
    templates: tuple[str, ...] = data.TEMPLATES

    def template(self, layout: str) -> str:
        return f"bench_tmpl_{layout}"

    def seed(self) -> None:
        for layout in self.templates:
            started = time.perf_counter()
            db = self.server.create(self.template(layout))
            try:
                data.seed(db, self.policy, self.rows, layout)
            finally:
                db.close()
            say(f"seeded {self.rows:,} customers, {layout} ({time.perf_counter() - started:.0f} s)")

    @staticmethod
    def clone_name(name: str) -> str:
        return f"bench_{name}"

    def scenario(self, name: str, layout: str, fn: Callable[[Database], T]) -> T:
        """Run ``fn`` on a fresh clone of the layout's template, then drop the clone."""
        dbname = self.clone_name(name)
        self.server.checkpoint()
        db = self.server.create(dbname, template=self.template(layout))
        os.sync()  # the clone's copied files, still in the page cache, would be written during the measurement
        started = time.perf_counter()
        try:
            return fn(db)
        finally:
            db.close()
            self.server.drop(dbname)
            say(f"{layout:<12} {name:<22} done ({time.perf_counter() - started:.0f} s)")

    def cleanup(self) -> None:
        for layout in self.templates:
            self.server.drop(self.template(layout))


def env_int(name: str, default: int) -> int:
    """A whole number from the environment (``ROWS=250000``), or ``default`` when unset."""
    return int(os.environ.get(name) or default)


def env_ints(name: str, default: tuple[int, ...]) -> list[int]:
    """A comma-separated list of whole numbers (``SIZES=250,1000``), or ``default`` when unset."""
    text = os.environ.get(name)
    return [int(s) for s in text.split(",")] if text else list(default)


def say(text: str) -> None:
    """Progress on stderr; the results go to stdout."""
    print(text, file=sys.stderr, flush=True)
