"""Slack: the message format, posting with retries against a real HTTP server on 127.0.0.1, and the
Slack function handling SNS events as AWS delivers them (moto SNS and Secrets Manager).

The webhook URL is a secret: no test may find it, or its token, in a log line or an error.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from archiver import aws, slack
from archiver.alerts import Alert
from archiver.exceptions import ConfigError, SlackError
from handlers import slack as slack_handler
from local.runner import FakeContext

TOKEN = "xoxTESTTOKENc0ffee"

ALERT = Alert(kind="failure", job_id="5f0e4c1e-1111-4000-8000-000000000000", state="partial",
              summary="archive run partial: lost the database connection",
              counts={"eligible": 120, "archived": 80, "failed": 0, "batches": 4, "hops": 1, "duration_ms": None},
              status_url="https://abc.execute-api.eu-west-1.amazonaws.com/v1/runs/5f0e4c1e")


class Webhook:
    """A local Slack incoming webhook: answers from a script, records what it received."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.received: list[dict] = []
        self.url = ""

    def answer(self, *answers: int | tuple[int, dict[str, str]]) -> None:
        self.answers += [a if isinstance(a, tuple) else (a, {}) for a in answers]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            code, headers = hook.answers.pop(0) if hook.answers else (200, {})
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/{TOKEN}"
    yield hook
    server.shutdown()
    server.server_close()


class Clock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# -- formatting -------------------------------------------------------------------------------------
def test_message_has_the_subject_summary_counts_and_status_link():
    message = slack.format_message(ALERT)
    assert message["text"] == ALERT.subject == f"[archiver] FAILED: {ALERT.summary}"
    header, summary, fields, link = message["blocks"]
    assert header["text"]["text"] == ALERT.subject
    assert ALERT.summary in summary["text"]["text"] and ":red_circle:" in summary["text"]["text"]
    texts = [f["text"] for f in fields["fields"]]
    assert f"*Job*\n`{ALERT.job_id}`" in texts and "*State*\npartial" in texts
    assert "*Archived*\n80" in texts and "*Eligible*\n120" in texts
    assert not any("Duration" in t for t in texts)  # unknown counts are left out
    assert link["elements"][0]["text"] == f"<{ALERT.status_url}|Run status>"


def test_message_without_a_job_or_link_still_reads():
    message = slack.format_message(Alert("stuck", None, None, "no progress for 70 minutes"))
    assert len(message["blocks"]) == 3
    assert "*Job*\n`-`" in [f["text"] for f in message["blocks"][2]["fields"]]


# -- posting ------------------------------------------------------------------------------------------
def test_post_retries_after_429_then_succeeds(webhook, log_lines):
    webhook.answer(429, 200)
    clock = Clock()
    assert slack.post(webhook.url, {"text": "hi"}, sleep=clock.sleep, clock=clock) == 200
    assert webhook.received == [{"text": "hi"}, {"text": "hi"}]
    assert clock.slept == [1]
    assert "slack post retrying" in log_lines.getvalue()
    assert TOKEN not in log_lines.getvalue()


def test_post_waits_as_long_as_retry_after_asks(webhook):
    webhook.answer((429, {"Retry-After": "5"}), 200)
    clock = Clock()
    slack.post(webhook.url, {"text": "hi"}, sleep=clock.sleep, clock=clock)
    assert clock.slept == [5]


def test_post_retries_server_errors_with_backoff(webhook):
    webhook.answer(500, 503, 502, 200)
    clock = Clock()
    assert slack.post(webhook.url, {"text": "hi"}, sleep=clock.sleep, clock=clock) == 200
    assert clock.slept == [1, 2, 4]


def test_post_does_not_retry_a_refused_message(webhook):
    webhook.answer(400)
    with pytest.raises(SlackError, match="HTTP 400") as err:
        slack.post(webhook.url, {"text": "hi"}, sleep=Clock().sleep)
    assert len(webhook.received) == 1
    assert TOKEN not in str(err.value)


def test_post_gives_up_when_its_time_runs_out(webhook, log_lines):
    webhook.answer(*[429] * 10)
    clock = Clock()
    with pytest.raises(SlackError, match="still failing after 3 attempts: HTTP 429") as err:
        slack.post(webhook.url, {"text": "hi"}, deadline_s=5, sleep=clock.sleep, clock=clock)
    assert TOKEN not in str(err.value) and TOKEN not in log_lines.getvalue()


def test_post_to_a_server_that_is_not_there_fails_without_the_url(log_lines):
    url = f"http://127.0.0.1:1/services/T000/B000/{TOKEN}"
    clock = Clock()
    with pytest.raises(SlackError) as err:
        slack.post(url, {"text": "hi"}, deadline_s=3, sleep=clock.sleep, clock=clock)
    assert TOKEN not in str(err.value) and TOKEN not in log_lines.getvalue()


def test_sink_does_not_show_its_url():
    assert TOKEN not in repr(slack.SlackSink(f"https://example.invalid/{TOKEN}"))


# -- the Slack function -----------------------------------------------------------------------------------
@pytest.fixture
def sns_world(aws_mock):
    """moto SNS, SQS and Secrets Manager (the shared aws_mock fixture)."""


class Topic:
    """The alert topic with a queue subscribed, to capture notifications exactly as SNS sends them."""

    def __init__(self) -> None:
        self.sns, self.sqs = boto3.client("sns"), boto3.client("sqs")
        self.arn = self.sns.create_topic(Name="archiver-alerts")["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName="capture")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]
        self.sns.subscribe(TopicArn=self.arn, Protocol="sqs", Endpoint=queue_arn["QueueArn"])

    def lambda_event(self) -> dict:
        """What SNS delivers to a subscribed Lambda function, one record per notification."""
        messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10)["Messages"]
        records = []
        for m in messages:
            note = json.loads(m["Body"])
            note["SigningCertUrl"] = note.pop("SigningCertURL")  # Lambda's spelling of the same keys
            note["UnsubscribeUrl"] = note.pop("UnsubscribeURL")
            note.setdefault("MessageAttributes", {})
            records.append({"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": note,
                            "EventSubscriptionArn": f"{self.arn}:{uuid.uuid4()}"})
        return {"Records": records}


@pytest.fixture
def topic(sns_world) -> Topic:
    return Topic()


def webhook_secret(monkeypatch, value: str) -> None:
    arn = boto3.client("secretsmanager").create_secret(Name=f"slack-{uuid.uuid4()}", SecretString=value)["ARN"]
    monkeypatch.setenv(slack_handler.SECRET_ENV, arn)


def test_every_alert_of_the_event_is_posted(topic, webhook, monkeypatch, log_lines):
    webhook_secret(monkeypatch, webhook.url)
    aws.sns_sink(topic.arn).send(ALERT)
    topic.sns.publish(TopicArn=topic.arn, Subject="hand-written", Message="Database maintenance tonight\nsecond line")
    result = slack_handler.handler(topic.lambda_event(), FakeContext(30))
    assert result == {"posted": 2, "failed": 0}
    by_text = {m["text"]: m for m in webhook.received}
    assert by_text[ALERT.subject] == slack.format_message(ALERT)
    assert "[archiver] ANOMALY: Database maintenance tonight" in by_text
    logged = log_lines.getvalue()
    assert logged.count("alert posted to slack") == 2
    assert TOKEN not in logged and "127.0.0.1" not in logged


def test_webhook_secret_may_be_json_with_a_url(topic, webhook, monkeypatch):
    webhook_secret(monkeypatch, json.dumps({"url": webhook.url}))
    aws.sns_sink(topic.arn).send(ALERT)
    assert slack_handler.handler(topic.lambda_event(), FakeContext(30))["posted"] == 1
    assert len(webhook.received) == 1


def test_slack_rate_limit_is_retried_within_the_invocation(topic, webhook, monkeypatch):
    webhook_secret(monkeypatch, webhook.url)
    webhook.answer(429, 200)
    aws.sns_sink(topic.arn).send(ALERT)
    assert slack_handler.handler(topic.lambda_event(), FakeContext(30))["posted"] == 1
    assert len(webhook.received) == 2


def test_a_record_that_cannot_be_posted_fails_the_invocation_after_trying_all(topic, webhook, monkeypatch,
                                                                               log_lines):
    webhook_secret(monkeypatch, webhook.url)
    webhook.answer(404, 200)  # a revoked webhook answers 404 for the first record
    aws.sns_sink(topic.arn).send(ALERT)
    aws.sns_sink(topic.arn).send(Alert("stuck", "job-2", "running", "no progress for 70 minutes"))
    with pytest.raises(slack_handler.SlackDeliveryError, match="1 of 2 alerts"):
        slack_handler.handler(topic.lambda_event(), FakeContext(30))
    assert len(webhook.received) == 2
    logged = log_lines.getvalue()
    assert "alert not posted to slack" in logged and "HTTP 404" in logged
    assert TOKEN not in logged


@pytest.mark.parametrize("secret", ["not a url", '{"webhook": "x"}', "{broken json"])
def test_a_bad_webhook_secret_is_a_configuration_error_that_does_not_show_it(topic, monkeypatch, secret):
    webhook_secret(monkeypatch, secret)
    aws.sns_sink(topic.arn).send(ALERT)
    with pytest.raises(ConfigError) as err:
        slack_handler.handler(topic.lambda_event(), FakeContext(30))
    assert secret not in str(err.value)


def test_an_event_that_is_not_from_sns_is_rejected_without_retry(sns_world, log_lines):
    assert slack_handler.handler({"Records": [{"body": "x"}]}, FakeContext(30))["rejected"] is True
    assert "rejected event" in log_lines.getvalue()


def test_unreadable_alert_attribute_falls_back_to_the_message():
    from aws_lambda_powertools.utilities.parser.models import SnsNotificationModel

    note = SnsNotificationModel.model_validate({
        "Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:eu-west-1:1:t", "Subject": "s",
        "Message": "\nrun failed: boom\njob id: j", "Timestamp": "2026-11-23T02:00:00Z",
        "UnsubscribeUrl": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
        "MessageAttributes": {"alert": {"Type": "String", "Value": "{not json"},
                              "kind": {"Type": "String", "Value": "failure"}}})
    alert = slack_handler.alert_of(note)
    assert (alert.kind, alert.summary, alert.job_id) == ("failure", "run failed: boom", None)


def test_local_alerts_reach_slack_through_the_same_formatting(webhook):
    from archiver.slack import local_sink as local_alerts

    local_alerts({"SLACK_WEBHOOK_URL": webhook.url}).send(ALERT)
    assert webhook.received == [slack.format_message(ALERT)]
    local_alerts({}).send(ALERT)  # no webhook: the log only
    assert len(webhook.received) == 1
