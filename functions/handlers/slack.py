"""Slack function: subscribed to the alert topic, posts every alert to a Slack incoming webhook.

Every record of the SNS event is handled; if any could not be posted the handler raises, so
Lambda retries the asynchronous invocation. The webhook URL is a secret and never logged.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import SnsModel, SnsNotificationModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from archiver import aws, slack
from archiver.exceptions import ArchiverError, ConfigError, SlackError
from archiver.observability import logger
from archiver.sinks import KINDS, Alert

from .env import SlackEnv

tracer = Tracer()
SECRET_ENV = SlackEnv.variables()[0]
RESERVE_S = 2.0  # left for the handler to finish after the last attempt


class SlackDeliveryError(ArchiverError):
    """Some alerts could not be posted; raised so that Lambda retries the invocation."""

    def __init__(self, failed: int, total: int) -> None:
        super().__init__(f"{failed} of {total} alerts could not be posted to Slack")
        self.failed = failed
        self.total = total


def webhook_url(secret: str) -> str:
    """The secret holds the URL itself, or JSON ``{"url": ...}``."""
    value = secret.strip()
    if value.startswith("{"):
        try:
            value = str(json.loads(value)["url"]).strip()
        except (ValueError, KeyError, TypeError):
            raise ConfigError("the Slack webhook secret is JSON without a \"url\" string") from None
    if not value.startswith(("https://", "http://")):
        raise ConfigError("the Slack webhook secret is not a URL")
    return value


def alert_of(note: SnsNotificationModel) -> Alert:
    """The alert a notification carries: its JSON "alert" attribute (published by SnsSink), or,
    for anything else published to the topic, its subject and first line."""
    attributes = note.MessageAttributes or {}
    if "alert" in attributes:
        try:
            data = json.loads(attributes["alert"].Value)
            if isinstance(data, dict) and data.get("kind") in KINDS and data.get("summary"):
                return Alert.from_dict({**data, "counts": data.get("counts") or {}})
        except ValueError:
            pass
        logger.warning("alert attribute unreadable, using the subject and message")
    kind = attributes["kind"].Value if "kind" in attributes and attributes["kind"].Value in KINDS else "anomaly"
    message = note.Message if isinstance(note.Message, str) else ""
    first_line = next((line for line in message.splitlines() if line.strip()), "")
    return Alert(kind=kind, job_id=None, state=None, summary=(first_line or note.Subject or "archiver alert")[:300])


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        records = parse(event=event, model=SnsModel).Records
    except ValidationError as exc:
        # Not retried: a malformed event will not get better by being delivered again.
        logger.error("rejected event: not an SNS notification", extra={"errors": exc.error_count()})
        return {"posted": 0, "failed": 0, "rejected": True}
    url = webhook_url(aws.fetch_secret(SlackEnv.from_env(os.environ).webhook_secret_arn))
    failed = 0
    for record in records:
        alert = alert_of(record.Sns)
        deadline = context.get_remaining_time_in_millis() / 1000 - RESERVE_S
        try:
            slack.post(url, slack.format_message(alert), deadline_s=max(1.0, min(20.0, deadline)))
        except SlackError as exc:  # its text names the HTTP status only, never the URL
            failed += 1
            logger.error("alert not posted to slack", extra={"message_id": record.Sns.MessageId,
                                                             "alert_kind": alert.kind, "error": str(exc)})
        else:
            logger.info("alert posted to slack", extra={"message_id": record.Sns.MessageId,
                                                        "alert_kind": alert.kind, "alert_job_id": alert.job_id})
    if failed:
        raise SlackDeliveryError(failed, len(records))
    return {"posted": len(records), "failed": 0}
