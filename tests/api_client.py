"""Calls the status function the way API Gateway would, through the local server's event builder."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers.status import StatusDeps
from local.localapi import build_event, call


@dataclass
class Answer:
    status: int
    headers: dict[str, Any]
    body: Any


def request(deps: StatusDeps, method: str, path: str, query: str = "", body: Any = None,
            raw: str | bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
    """One request to the status function with ``deps``: ``body`` is sent as JSON; ``raw`` exactly as
    given (malformed JSON, other content types)."""
    sent = raw if raw is not None else (json.dumps(body) if body is not None else None)
    hdrs = {"Host": "abc123.execute-api.eu-west-1.amazonaws.com", "X-Forwarded-Proto": "https"}
    if sent is not None:
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    result = call(build_event(method, path, query, sent, hdrs), deps)
    headers_out = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    headers_out.update({k.lower(): v[-1] for k, v in (result.get("multiValueHeaders") or {}).items()})
    text = result.get("body") or ""
    return Answer(result["statusCode"], headers_out, json.loads(text) if text else None)


ARCHIVER_BIN = Path(sys.executable).parent / "archiver"


@contextmanager
def serve(env: Mapping[str, str], log: Path, *args: str) -> Iterator[str]:
    """Run `archiver [args] serve --port 0` with ``env``; yields its base URL once it listens."""
    with log.open("w") as out:
        proc = subprocess.Popen([str(ARCHIVER_BIN), *args, "serve", "--port", "0"], env=dict(env), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"serving the status API on (http://\S+)", log.read_text())):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the status API did not start"
            time.sleep(0.05)
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """A real HTTP request to `archiver serve`: ``body`` bytes as given, anything else as JSON."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
