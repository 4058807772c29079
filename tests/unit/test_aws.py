"""The AWS pieces against moto: the self-invocation, the SNS alert, the secret."""

from __future__ import annotations

import io
import json
import zipfile

import boto3
import pytest

from archiver import alerts, aws


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return buf.getvalue()


def test_self_invocation_is_asynchronous(aws_mock):
    role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    fn = boto3.client("lambda").create_function(FunctionName="archiver-archive", Runtime="python3.12", Role=role,
                                                Handler="handler.handler", Code={"ZipFile": _zip()})
    sent = []
    aws.client("lambda").meta.events.register(
        "before-send.lambda.Invoke", lambda request, **_: sent.append(request))
    payload = {"action": "continue", "job_id": "j", "hop": 2}
    aws.LambdaInvoker().invoke_async(fn["FunctionArn"], payload)
    [request] = sent
    assert request.headers["X-Amz-Invocation-Type"] in (b"Event", "Event")
    assert json.loads(request.body) == payload


def test_alert_reaches_sns_subscribers_with_its_structured_attribute(aws_mock):
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="q")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    alert = alerts.Alert("failure", "job-1", "failed", "archive run failed: boom", {"archived": 3},
                         "https://api/runs/job-1")
    aws.sns_sink(topic).send(alert)
    [msg] = sqs.receive_message(QueueUrl=queue)["Messages"]
    body = json.loads(msg["Body"])
    assert body["Subject"].startswith("[archiver] FAILED")
    assert "job id: job-1" in body["Message"] and "https://api/runs/job-1" in body["Message"]
    assert alerts.Alert.from_dict(json.loads(body["MessageAttributes"]["alert"]["Value"])) == alert


def test_secret_is_read_through_the_parameters_utility(aws_mock):
    arn = boto3.client("secretsmanager").create_secret(Name="db", SecretString='{"username": "u"}')["ARN"]
    assert json.loads(aws.fetch_secret(arn)) == {"username": "u"}


def test_clients_give_up_quickly_with_standard_retries(aws_mock):
    for service in ("lambda", "sns", "secretsmanager", "rds"):
        config = aws.client(service).meta.config
        assert (config.connect_timeout, config.read_timeout) == (aws.CONNECT_TIMEOUT_S, aws.READ_TIMEOUT_S)
        assert config.retries == {"mode": "standard", "total_max_attempts": aws.MAX_ATTEMPTS}
    # Worst case of one call, back-off aside: inside the 10 s a hop keeps in reserve for the hand-over.
    assert aws.MAX_ATTEMPTS * (aws.CONNECT_TIMEOUT_S + aws.READ_TIMEOUT_S) < 10


def test_secrets_are_fetched_with_the_same_client_settings(aws_mock):
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    arn = boto3.client("secretsmanager").create_secret(Name="db2", SecretString="s")["ARN"]
    assert aws.fetch_secret(arn) == "s"
    assert DEFAULT_PROVIDERS["secrets"].client.meta.config.read_timeout == aws.READ_TIMEOUT_S


def test_a_stalled_invoke_times_out_instead_of_hanging(aws_mock):
    import socket
    import time

    import botocore.exceptions

    # A listener that accepts and never answers: the read timeout, not botocore's 60 s, ends the call.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    stalled = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", config=aws.CLIENT_CONFIG)
    started = time.monotonic()
    try:
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            stalled.invoke(FunctionName="f", InvocationType="Event", Payload=b"{}")
    finally:
        server.close()
    # Not a speed figure: botocore's default would have waited 60 s per attempt.
    assert time.monotonic() - started < 30
