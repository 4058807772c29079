"""`archiver serve --remote URL`: the deployed, IAM-authorised API reached through a local proxy that
signs every request with the operator's AWS credentials (SigV4). The upstream here is a fake: a real
HTTP server in the test that records what it receives and checks the signature as AWS would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from archiver.exceptions import ConfigError
from local.remote import SigningProxy, check_upstream, make_proxy_server, refusal, region_of
from tests.api_client import ARCHIVER_BIN

KEY, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token"
REGION = "eu-west-1"


class FakeApi:
    """Records each request (method, path, headers, body) and answers like the status API."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                                  "body": body})
                if self.path.startswith("/v1/runs") and self.command == "POST":
                    code, data, kind = 409, b'{"error": "a run is already active"}', "application/json"
                elif self.path == "/v1/":
                    code, data, kind = 200, b"<!doctype html><title>page</title>", "text/html; charset=utf-8"
                else:
                    code, data, kind = 200, b'{"runs": []}', "application/json"
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Security-Policy", "default-src 'none'")
                self.send_header("Set-Cookie", "upstream=1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[FakeApi]:
    api = FakeApi()
    yield api
    api.close()


def assert_signed_by_the_operator(seen: dict[str, Any]) -> None:
    """Recompute the SigV4 signature from what arrived, as API Gateway does, and compare."""
    auth = seen["headers"]["Authorization"]
    found = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/execute-api/aws4_request, "
                         r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})", auth)
    assert found, auth
    access_key, _day, region, signed, signature = found.groups()
    assert (access_key, region) == (KEY, REGION)
    assert {"host", "x-amz-date", "x-amz-security-token"} <= set(signed.split(";"))
    lower = {k.lower(): v for k, v in seen["headers"].items()}
    host = lower["host"]
    request = AWSRequest(method=seen["method"], url=f"http://{host}{seen['path']}", data=seen["body"],
                         headers={name: lower[name] for name in signed.split(";")})
    request.context["timestamp"] = lower["x-amz-date"]
    signer = SigV4Auth(Credentials(KEY, SECRET, TOKEN), "execute-api", REGION)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    assert signature == expected


def test_every_request_reaches_the_api_signed_with_the_operators_credentials(upstream):
    proxy = SigningProxy(upstream.url, REGION, lambda: Credentials(KEY, SECRET, TOKEN))
    code, headers, body = proxy.forward("GET", "/runs?limit=20&table=nic_cc_customer", None,
                                        {"Accept": "application/json", "Cookie": "secret=1", "Origin": "x"})
    assert code == 200 and json.loads(body) == {"runs": []}
    code, headers, body = proxy.forward("POST", "/runs", b'{"dry_run": true}', {"Content-Type": "application/json"})
    assert code == 409 and json.loads(body)["error"] == "a run is already active"  # answers pass through
    assert "Set-Cookie" not in headers and headers["Content-Type"] == "application/json"
    first, second = upstream.seen
    assert first["path"] == "/v1/runs?limit=20&table=nic_cc_customer"
    assert "Cookie" not in first["headers"] and "Origin" not in first["headers"]  # nothing of the browser's
    assert second["body"] == b'{"dry_run": true}'
    for seen in upstream.seen:
        assert_signed_by_the_operator(seen)


def test_an_unreachable_api_is_a_502_in_words():
    proxy = SigningProxy("http://127.0.0.1:9/v1", REGION, lambda: Credentials(KEY, SECRET, TOKEN))
    code, _, body = proxy.forward("GET", "/runs", None, {})
    assert code == 502 and "cannot be reached" in json.loads(body)["error"]


@pytest.mark.parametrize(("headers", "refused"), [
    ({"Host": "127.0.0.1:8000"}, False),  # curl, or the address typed in the browser
    ({"Host": "localhost:8000", "Origin": "http://localhost:8000", "Sec-Fetch-Site": "same-origin"}, False),
    ({"Host": "127.0.0.1:8000", "Sec-Fetch-Site": "none"}, False),
    ({"Host": "evil.example:8000"}, True),  # DNS rebinding: a foreign name resolving to 127.0.0.1
    ({"Host": "127.0.0.1:8000", "Origin": "https://evil.example"}, True),
    ({"Host": "127.0.0.1:8000", "Sec-Fetch-Site": "cross-site"}, True),
    ({"Host": "127.0.0.1:8000", "Sec-Fetch-Site": "same-site"}, True),
    ({}, True),
])
def test_only_the_proxys_own_page_and_local_tools_may_use_the_credentials(headers, refused):
    assert (refusal(headers, 8000) is not None) == refused


def test_the_region_comes_from_the_invoke_url_or_must_be_given():
    assert region_of("https://abc123.execute-api.ap-south-1.amazonaws.com/v1", None) == "ap-south-1"
    assert region_of("https://status.example.com/v1", "eu-west-1") == "eu-west-1"
    with pytest.raises(ConfigError, match="--region"):
        region_of("https://status.example.com/v1", None)
    with pytest.raises(ConfigError, match="https"):
        check_upstream("http://abc123.execute-api.eu-west-1.amazonaws.com/v1")


def test_the_proxy_never_listens_beyond_loopback():
    proxy = SigningProxy("https://abc.execute-api.eu-west-1.amazonaws.com/v1", REGION, lambda: None)
    with pytest.raises(ConfigError, match="loopback only"):
        make_proxy_server("0.0.0.0", 0, proxy)


def test_archiver_serve_remote_serves_the_page_and_the_api_signed(upstream, tmp_path: Path):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN,
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    env.pop("AWS_PROFILE", None)
    log = tmp_path / "remote.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(ARCHIVER_BIN), "serve", "--port", "0", "--remote", upstream.url,
                                 "--region", REGION], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"serving the status API on (http://\S+)", log.read_text())):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with urllib.request.urlopen(found.group(1) + "/", timeout=10) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
            assert resp.headers["Content-Security-Policy"] == "default-src 'none'"
            assert b"<title>page</title>" in resp.read()
        cross = urllib.request.Request(found.group(1) + "/runs", data=b"{}", method="POST",
                                       headers={"Content-Type": "application/json", "Origin": "https://evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(cross, timeout=10)
        assert refused.value.code == 403
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    (page,) = upstream.seen  # the refused request never left
    assert page["path"] == "/v1/"
    assert_signed_by_the_operator(page)


def test_serve_remote_without_credentials_is_a_clear_usage_error(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                "AWS_EC2_METADATA_DISABLED": "true"})
    proc = subprocess.run([str(ARCHIVER_BIN), "serve", "--port", "0", "--remote",
                           "https://abc.execute-api.eu-west-1.amazonaws.com/v1"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "no AWS credentials found" in proc.stderr and "Traceback" not in proc.stderr
