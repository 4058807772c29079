"""``archiver serve``: the status function over HTTP on 127.0.0.1, locally.

Each request becomes an API Gateway REST proxy event and goes through the real handler
(``handlers.status.handler``), and its answer goes back as the HTTP response. POST /runs
really archives: the start event is driven in a background thread by the local runner, hop
after hop, as the archive function would be in AWS.
"""

from __future__ import annotations

import base64
import os
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlsplit

from archiver import slack
from archiver.config import Policy, PolicySet, Settings, load_policies, load_settings, settings_variable
from archiver.connection import open_database
from archiver.db import Database
from archiver.erasure import erase_event
from archiver.observability import logger
from archiver.worker import Deps, LocalInvoker

from . import embedded
from .runner import LOCAL_FUNCTION_ARN, FakeContext, drive

if TYPE_CHECKING:
    from handlers.status import StatusDeps

STAGE = "local"
REQUEST_SECONDS = 29  # API Gateway's integration timeout
API_GATEWAY_MAX_BODY = 10 * 1024 * 1024
LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOCAL_EXPORT_ARN = "arn:aws:lambda:local:000000000000:function:archiver-export"


def build_event(method: str, path: str, query: str = "", body: bytes | str | None = None,
                headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway REST proxy event, as AWS would send it for this request."""
    headers = dict(headers or {})
    multi_query = parse_qs(query, keep_blank_values=True)
    raw = body.encode() if isinstance(body, str) else body
    text: str | None = None
    encoded = False
    if raw:  # API Gateway sends an empty body as null
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(raw).decode(), True
    request_id = str(uuid.uuid4())
    return {
        "resource": path,
        "path": path,
        "httpMethod": method.upper(),
        "headers": headers or None,
        "multiValueHeaders": {k: [v] for k, v in headers.items()} or None,
        # API Gateway keeps the last value of a repeated parameter in queryStringParameters.
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": None,
        "stageVariables": None,
        "body": text,
        "isBase64Encoded": encoded,
        "requestContext": {
            "stage": STAGE, "resourcePath": path, "httpMethod": method.upper(), "requestId": request_id,
            "path": f"/{STAGE}{path}", "protocol": "HTTP/1.1", "accountId": "000000000000",
            "identity": {"sourceIp": "127.0.0.1"},
        },
    }


def call(event: dict[str, Any], deps: StatusDeps) -> dict[str, Any]:
    """Run the status handler on one event, with a Lambda-like context and ``deps``."""
    from handlers import status as status_handler

    return status_handler.handler(event, FakeContext(REQUEST_SECONDS), deps=lambda: deps)


class BackgroundInvoker:
    """Stands in for the asynchronous invocation of the archive function: the local runner drives
    the event in a thread, on its own database connection, hop after hop."""

    def __init__(self, make_deps: Callable[[], Deps], hop_seconds: float) -> None:
        self.make_deps = make_deps
        self.hop_seconds = hop_seconds
        self.threads: list[threading.Thread] = []

    def invoke_async(self, function: str, payload: dict[str, Any]) -> None:
        thread = threading.Thread(target=self._drive, args=(payload,), name="archive-run", daemon=True)
        self.threads.append(thread)
        thread.start()

    def _drive(self, payload: dict[str, Any]) -> None:
        deps = self.make_deps()
        try:
            drive(payload, deps, self.hop_seconds)
        except Exception as exc:  # noqa: BLE001 - the worker has marked the run failed and alerted
            logger.error("local archive run failed", extra={"error_type": type(exc).__name__})
        finally:
            deps.db.close()

    def join(self, timeout: float | None = None) -> None:
        for thread in self.threads:
            thread.join(timeout)


class LocalEraser:
    """Stands in for the asynchronous invocation of the export function by POST /erasures: the
    erasure runs in-process, at once, on its own database connection (the run log records it)."""

    def __init__(self, make_db: Callable[[], Database], policies: PolicySet) -> None:
        self.make_db = make_db
        self.policies = policies

    def invoke_async(self, function: str, payload: dict[str, Any]) -> None:
        db = self.make_db()
        try:
            out = erase_event(payload, db, self.policies.get(payload.get("table")))
            logger.info("local erasure done", extra={"job_id": payload.get("job_id"), "status": out["status"]})
        except Exception as exc:  # noqa: BLE001 - erase has marked the run failed
            logger.error("local erasure failed", extra={"error_type": type(exc).__name__})
        finally:
            db.close()


def local_deps(env: Mapping[str, str], policy: Policy | PolicySet, settings: Settings) -> StatusDeps:
    """The status function's dependencies, with the archive function run in-process."""
    from handlers.status import StatusDeps

    policies = policy if isinstance(policy, PolicySet) else PolicySet((policy,))
    first = policies.policies[0]

    def archive_deps() -> Deps:
        db = open_database(env, settings, first.timezone, fallback=embedded.socket_for)
        return Deps(db=db, policy=first, settings=settings, invoker=LocalInvoker(), alerts=slack.local_sink(env),
                    policies=policies)

    def connect() -> Database:
        return open_database(env, settings, first.timezone, fallback=embedded.socket_for)

    return StatusDeps(db=connect(), policy=first, settings=settings,
                      invoker=BackgroundInvoker(archive_deps, settings.hop_seconds),
                      function_name=LOCAL_FUNCTION_ARN, policies=policies,
                      export_function_name=LOCAL_EXPORT_ARN, eraser=LocalEraser(connect, policies))


class HttpHandler(BaseHTTPRequestHandler):
    """Reads a request's body and writes an answer; subclasses decide the answer (here, and the
    signing proxy of ``archiver serve --remote``)."""

    def read_body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def respond(self, status: int, headers: Iterable[tuple[str, str]], data: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.info("http request", extra={"request": format % args})


class LocalServer(ThreadingHTTPServer):
    """The HTTP server, holding the status function's dependencies for every request."""

    deps: StatusDeps


class _Handler(HttpHandler):
    server_version = "archiver-local"
    # The resolver keeps the current event in module state and the connection is one: one at a time.
    lock = threading.Lock()

    def _answer(self) -> None:
        from handlers.status_models import MAX_BODY_BYTES

        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        # The handler refuses a body over its limit (413): one byte past it is all it needs to see. The
        # rest is read and dropped, so the client gets the answer, up to API Gateway's own 10 MB limit.
        body = self.rfile.read(min(length, MAX_BODY_BYTES + 1)) if length else None
        if length > MAX_BODY_BYTES:
            self._drop(length - len(body or b""))
        event = build_event(self.command, parts.path, parts.query, body, dict(self.headers.items()))
        with self.lock:
            result = call(event, cast(LocalServer, self.server).deps)
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        headers = [(name, str(value)) for name, values in (result.get("multiValueHeaders") or {}).items()
                   for value in values]
        headers += [(name, str(value)) for name, value in (result.get("headers") or {}).items()]
        self.respond(int(result.get("statusCode", 500)), headers, data)

    def _drop(self, left: int) -> None:
        self.close_connection = True
        while 0 < left <= API_GATEWAY_MAX_BODY and (chunk := self.rfile.read(min(left, 65536))):
            left -= len(chunk)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer


def make_server(host: str, port: int, env: Mapping[str, str],
                policy: Policy | PolicySet | None = None) -> LocalServer:
    """Bind the server with the local dependencies (port 0 picks a free port)."""
    if host not in LOOPBACK:
        print(f"warning: serving on {host}: the local API has no authentication", file=sys.stderr)
    server = LocalServer((host, port), _Handler)
    policy = policy or load_policies(env)
    bound = server.server_address[1]
    base_url = env.get(settings_variable("status_base_url")) or f"http://{host}:{bound}"
    settings = load_settings(env, status_base_url=base_url)
    server.deps = local_deps(env, policy, settings)
    return server


def serve(host: str, port: int, env: Mapping[str, str], policy: Policy | PolicySet | None = None) -> None:
    """Serve the status API until interrupted (``policy``: the policies as the CLI loaded them, else
    from ``env``)."""
    # Locally no metrics are published; Powertools would warn about that on every request.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    server = make_server(host, port, env, policy)
    run_until_interrupted(server, "Ctrl-C stops")


def run_until_interrupted(server: ThreadingHTTPServer, note: str) -> None:
    """Say where it serves (the line tests and users look for), then serve until Ctrl-C."""
    host, port = server.server_address[:2]
    print(f"serving the status API on http://{host!s}:{port} ({note})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

