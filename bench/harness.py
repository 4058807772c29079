"""Templates and fresh databases for the scenarios: seed once per data set (data.TEMPLATES), clone
per scenario."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from archiver.config import Policy, Settings
from archiver.db import Database

from . import data
from .report import percentile
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


def fsync_ms(directory: Path, seconds: float = 5.0, rate: int = 100) -> dict[str, float]:
    """This machine's disk as a commit sees it: an 8 kB write and fdatasync at ``rate`` per second.
    Printed beside the results: a shared VM's disk stalls for hundreds of ms now and then, which no
    single-run latency figure can tell from the job's own effect."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"fsync-probe-{os.getpid()}"
    latencies: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        started = time.perf_counter()
        i = 0
        while time.perf_counter() - started < seconds:
            wait = started + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            t = time.perf_counter()
            os.pwrite(fd, b"\0" * 8192, (i % 1024) * 8192)
            os.fdatasync(fd)
            latencies.append((time.perf_counter() - t) * 1000)
            i += 1
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return {"seconds": seconds, "p50": round(percentile(latencies, 50), 2), "p99": round(percentile(latencies, 99), 2),
            "max": round(max(latencies), 1)}
