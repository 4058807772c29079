"""What the status API refuses before the resolver parses a body: too large (413), not JSON (415),
nested too deep (400). Parsing such a body is where a 500 came from (a RecursionError), so the
refusal comes first, from the raw event, the same on API Gateway and on `archiver serve`."""

from __future__ import annotations

import base64
import binascii
from http import HTTPStatus
from typing import Any

from .status_models import MAX_BODY_BYTES, MAX_BODY_DEPTH


def header(event: dict[str, Any], name: str) -> str | None:
    """A request header, whatever its case (API Gateway keeps the client's)."""
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def depth(text: str) -> int:
    """How deeply arrays and objects nest in a JSON text, without parsing it (no recursion)."""
    level = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            level += 1
            deepest = max(deepest, level)
        elif ch in "]}":
            level -= 1
    return deepest


def refusal(event: dict[str, Any]) -> tuple[HTTPStatus, str] | None:
    """The status and message for a body the API will not parse; None lets the request through.
    A body without a Content-Type is read as JSON (curl -d without -H sends form encoding: refused)."""
    body = event.get("body")
    if not body:
        return None
    raw = str(body).encode()
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return HTTPStatus.BAD_REQUEST, "the body is not valid base64"
    if len(raw) > MAX_BODY_BYTES:
        return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is larger than {MAX_BODY_BYTES} bytes"
    content_type = header(event, "content-type")
    if content_type is not None and not is_json(content_type):
        return (HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"the body must be JSON: send Content-Type: application/json (got {content_type[:100]!r})")
    if depth(raw.decode("utf-8", "replace")) > MAX_BODY_DEPTH:
        return HTTPStatus.BAD_REQUEST, f"the JSON body nests deeper than {MAX_BODY_DEPTH} levels"
    return None
