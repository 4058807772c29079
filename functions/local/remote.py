"""``archiver serve --remote URL``: the deployed status API, and so its page, on 127.0.0.1.

On AWS the API is IAM-authorised: a browser cannot sign its requests. This proxy forwards each
request of the page to the API, signed (SigV4, service ``execute-api``) with the operator's own AWS
credentials (profile, SSO, environment), fetched afresh for every request so refreshed SSO or
role credentials are used. Nothing is stored; the operator needs ``execute-api:Invoke`` on the API.

The proxy listens on loopback only, and refuses what a browser sends on behalf of another site:
a ``Host`` that is not the proxy's own address (DNS rebinding), a foreign ``Origin``, or a
``Sec-Fetch-Site`` other than same-origin or none. Otherwise any page open in the operator's
browser could start runs with the operator's credentials.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from archiver.exceptions import ConfigError
from archiver.observability import logger

from .localapi import LOOPBACK, HttpHandler, run_until_interrupted

SERVICE = "execute-api"
TIMEOUT_SECONDS = 35  # a little over API Gateway's 29-second integration timeout
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
# What goes upstream besides the signature, and what comes back: nothing else of either side.
_REQUEST_HEADERS = ("Content-Type", "Accept")
_RESPONSE_HEADERS = ("Content-Type", "Content-Security-Policy", "X-Content-Type-Options", "Cache-Control",
                     "Referrer-Policy", "X-Frame-Options", "Location")

Answer = tuple[int, dict[str, str], bytes]
Credentials = Callable[[], Any]  # returns botocore credentials (access key, secret, token)
Send = Callable[[urllib.request.Request], Answer]


def region_of(url: str, fallback: str | None) -> str:
    """The region in an execute-api host name, else ``fallback`` (--region, AWS_REGION, the profile's)."""
    found = _REGION_IN_HOST.search(urlsplit(url).hostname or "")
    if found:
        return found.group(1)
    if not fallback:
        raise ConfigError("--remote: the URL names no region; give --region (or set AWS_REGION)")
    return fallback


def check_upstream(url: str) -> str:
    parts = urlsplit(url)
    loopback = parts.hostname in LOOPBACK
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigError(f"--remote must be an https:// URL (the API's invoke URL), got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError("--remote: give the API's base URL, without query or fragment")
    return url.rstrip("/")


def session_credentials() -> Callable[[], Any]:
    """The operator's credentials from botocore's usual chain, frozen afresh for each request."""
    import boto3

    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise ConfigError("--remote: no AWS credentials found (aws configure, aws sso login, or AWS_PROFILE)")
    return credentials.get_frozen_credentials


def urlopen_send(request: urllib.request.Request) -> Answer:
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as resp:  # noqa: S310 - checked scheme
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


class SigningProxy:
    """Forwards a request to ``upstream`` signed with SigV4; answers as the upstream did."""

    def __init__(self, upstream: str, region: str, credentials: Credentials, send: Send = urlopen_send) -> None:
        self.upstream = check_upstream(upstream)
        self.region = region
        self.credentials = credentials
        self.send = send

    def forward(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        url = self.upstream + (path if path.startswith("/") else "/" + path)
        kept = {name: headers[name] for name in _REQUEST_HEADERS if headers.get(name)}
        request = AWSRequest(method=method, url=url, data=body or b"", headers=kept)
        SigV4Auth(self.credentials(), SERVICE, self.region).add_auth(request)
        prepared = request.prepare()
        outgoing = urllib.request.Request(prepared.url, data=prepared.body or None, method=method,
                                          headers=dict(prepared.headers.items()))
        try:
            status, got, data = self.send(outgoing)
        except (urllib.error.URLError, OSError) as exc:
            logger.warning("remote status API unreachable", extra={"error_type": type(exc).__name__})
            return _json(502, f"the remote status API cannot be reached ({type(exc).__name__})")
        lower = {k.lower(): v for k, v in got.items()}
        return status, {n: lower[n.lower()] for n in _RESPONSE_HEADERS if n.lower() in lower}, data


def _json(status: int, error: str) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps({"error": error}).encode()


def refusal(headers: Mapping[str, str], port: int) -> str | None:
    """Why a request is refused, or None: only the proxy's own page (or a tool like curl) may use it."""
    own = {f"{host}:{port}" for host in ("127.0.0.1", "localhost", "[::1]")}
    if headers.get("Host") not in own:
        return "this proxy answers only on its own loopback address"
    origin = headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc not in own:
        return "requests from other sites are refused"
    if headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return "requests from other sites are refused"
    return None


def make_proxy_server(host: str, port: int, proxy: SigningProxy) -> ThreadingHTTPServer:
    if host not in LOOPBACK:
        raise ConfigError("--remote serves on loopback only: it signs requests with your AWS credentials")

    port_of: list[int] = []  # the bound port, once bound (port 0 picks one)

    class Handler(HttpHandler):
        server_version = "archiver-remote"

        def _answer(self) -> None:
            body = self.read_body()
            headers = dict(self.headers.items())
            why = refusal(headers, port_of[0])
            status, out, data = _json(403, why) if why else proxy.forward(self.command, self.path, body, headers)
            self.respond(status, out.items(), data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    server = ThreadingHTTPServer((host, port), Handler)
    port_of.append(int(server.server_address[1]))
    return server


def serve_remote(host: str, port: int, url: str, region: str | None) -> None:
    """Serve the remote API (its page at /) on ``host:port`` until interrupted."""
    import boto3

    upstream = check_upstream(url)
    proxy = SigningProxy(upstream, region_of(upstream, region or boto3.Session().region_name),
                         session_credentials())
    run_until_interrupted(make_proxy_server(host, port, proxy),
                          f"proxy to {upstream}, requests signed with your AWS credentials; Ctrl-C stops")
