"""Slack: an alert formatted for an incoming webhook, posted with retries on 429 and 5xx.

The webhook URL is a secret: it is never logged, and errors name only the HTTP status.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from .exceptions import SlackError
from .observability import logger
from .sinks import Alert, AlertSink, FanoutSink, LogSink

_EMOJI = {"failure": ":red_circle:", "partial": ":large_orange_circle:", "hop_limit": ":red_circle:",
          "stuck": ":hourglass:", "anomaly": ":warning:", "success": ":white_check_mark:",
          "report": ":bar_chart:"}
SECTION_LIMIT = 3000  # characters of a Slack section's text
MAX_DETAIL_BLOCKS = 40  # Slack allows 50 blocks a message

# (url, body, timeout) -> (HTTP status, Retry-After seconds if the server sent one)
Sender = Callable[[str, bytes, float], tuple[int, float | None]]


def format_message(alert: Alert) -> dict[str, Any]:
    """Slack Block Kit payload; ``text`` is the notification fallback."""
    fields = [] if alert.kind == "report" else [  # a report is about every table, not one run
        {"type": "mrkdwn", "text": f"*Job*\n`{alert.job_id or '-'}`"},
        {"type": "mrkdwn", "text": f"*State*\n{alert.state or '-'}"}]
    fields += [{"type": "mrkdwn", "text": f"*{k.replace('_', ' ').capitalize()}*\n{v}"}
               for k, v in alert.counts.items() if v is not None][:8]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": alert.subject[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{_EMOJI.get(alert.kind, '')} {alert.summary}"}},
        {"type": "section", "fields": fields},
    ]
    blocks += _details(alert.details)
    if alert.status_url:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{alert.status_url}|Run status>"}]})
    return {"text": alert.subject, "blocks": blocks}


def _details(lines: tuple[str, ...]) -> list[dict[str, Any]]:
    """A report's lines as preformatted sections, each within Slack's length limit."""
    chunks: list[list[str]] = [[]]
    for line in lines:
        line = line[: SECTION_LIMIT - 10]
        if sum(len(x) + 1 for x in chunks[-1]) + len(line) + 7 > SECTION_LIMIT:
            chunks.append([])
        chunks[-1].append(line)
    return [{"type": "section", "text": {"type": "mrkdwn", "text": "```" + "\n".join(c) + "```"}}
            for c in chunks[:MAX_DETAIL_BLOCKS] if c]


def _urllib_send(url: str, body: bytes, timeout: float) -> tuple[int, float | None]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - https URL from a secret
            return int(resp.status), None
    except urllib.error.HTTPError as exc:
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        return int(exc.code), float(retry_after) if retry_after and retry_after.isdigit() else None


def post(url: str, payload: dict[str, Any], *, deadline_s: float = 20.0, sender: Sender = _urllib_send,
         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> int:
    """POST to the webhook; retry 429 and 5xx with backoff until ``deadline_s`` runs out."""
    body = json.dumps(payload).encode()
    end, attempt = clock() + deadline_s, 0
    while True:
        attempt += 1
        hinted: float | None = None
        try:
            status, hinted = sender(url, body, max(1.0, min(10.0, end - clock())))
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            status, reason = 0, type(exc).__name__
        else:
            reason = f"HTTP {status}"
        if 200 <= status < 300:
            return status
        if status and status < 500 and status != 429:
            raise SlackError(f"slack webhook refused the message: {reason}")
        wait = max(min(2 ** (attempt - 1), 8.0), hinted or 0)
        if clock() + wait >= end:
            raise SlackError(f"slack webhook still failing after {attempt} attempts: {reason}")
        logger.warning("slack post retrying", extra={"attempt": attempt, "reason": reason})
        sleep(wait)


class SlackSink:
    def __init__(self, url: str, sender: Sender = _urllib_send) -> None:
        self._url = url
        self._sender = sender

    def __repr__(self) -> str:  # never show the URL
        return "SlackSink(url=***)"

    def send(self, alert: Alert) -> None:
        post(self._url, format_message(alert), sender=self._sender)


def local_sink(env: Mapping[str, str]) -> AlertSink:
    """Locally alerts go to the log and, with SLACK_WEBHOOK_URL set, to Slack (same formatting)."""
    sinks: list[AlertSink] = [LogSink()]
    if env.get("SLACK_WEBHOOK_URL"):
        sinks.append(SlackSink(env["SLACK_WEBHOOK_URL"]))
    return FanoutSink(sinks)
