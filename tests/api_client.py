"""Calls the status function the way API Gateway would, through the local server's event builder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from archiver.localapi import build_event, call


@dataclass
class Answer:
    status: int
    headers: dict[str, Any]
    body: Any


def request(method: str, path: str, query: str = "", body: Any = None, raw: str | bytes | None = None,
            headers: dict[str, str] | None = None) -> Answer:
    """``body`` is sent as JSON; ``raw`` exactly as given (malformed JSON, other content types)."""
    sent = raw if raw is not None else (json.dumps(body) if body is not None else None)
    hdrs = {"Host": "abc123.execute-api.eu-west-1.amazonaws.com", "X-Forwarded-Proto": "https"}
    if sent is not None:
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    result = call(build_event(method, path, query, sent, hdrs))
    headers_out = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    headers_out.update({k.lower(): v[-1] for k, v in (result.get("multiValueHeaders") or {}).items()})
    text = result.get("body") or ""
    return Answer(result["statusCode"], headers_out, json.loads(text) if text else None)
