"""Status function (API Gateway REST): start, list, show and cancel runs; stats, health, OpenAPI.

Wiring only: the resolver validates every input against the models in ``status_models``, each
route makes one call into the core, and every error is mapped to an HTTP answer in one place.
"""

# No ``from __future__ import annotations`` here: the resolver reads the routes' annotations at
# run time, through the tracer's wrapper, to validate requests and to write the OpenAPI document.
import json
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from archiver import aws, erasure, status
from archiver.config import Policy, PolicySet, Settings, load_policies, load_settings
from archiver.connection import open_database
from archiver.db import Database, sqlstate
from archiver.erasure import ErasureKey
from archiver.events import Invoker
from archiver.exceptions import (
    AlreadyRunningError,
    ArchiverError,
    ConfigError,
    DatabaseUnavailableError,
    InvalidJobIdError,
    InvalidKeyError,
    JobNotFoundError,
    JobStateError,
    PermissionDeniedError,
    ReadOnlyError,
    RunStartError,
    SchemaError,
    UnknownTableError,
)
from archiver.jobs import Job, JobStore, parse_job_id, policy_of
from archiver.observability import POWERTOOLS, MetricName, logger

from . import page
from .env import StatusEnv
from .lazy import LazyDeps, Provider
from .status_guard import refusal
from .status_models import (
    MAX_BODY_BYTES,
    MAX_BODY_DEPTH,
    MAX_RUNS_LIMIT,
    MAX_STATS_DAYS,
    MAX_TABLE_NAME,
    ErasureRequest,
    Error,
    Health,
    RunList,
    RunStarted,
    RunStatus,
    StartRunRequest,
    Stats,
    TableList,
)

TITLE = "Archiver status API"
VERSION = "1.0.0"

tracer = Tracer()
metrics = Metrics(namespace=POWERTOOLS.metrics_namespace)
app = APIGatewayRestResolver(enable_validation=True)


@dataclass
class StatusDeps:
    db: Database
    policy: Policy
    settings: Settings
    invoker: Invoker
    function_name: str  # the archive function POST /runs starts
    policies: PolicySet | None = None  # every table's policy; None: ``policy`` alone
    # POST /erasures: the export function (it alone rewrites Parquet), how to reach it, the HMAC key's secret.
    export_function_name: str = ""
    eraser: Invoker | None = None  # None: ``invoker``
    erasure_key: Callable[[], ErasureKey | None] = lambda: None  # None: the database's own key

    @property
    def all_policies(self) -> PolicySet:
        return self.policies or PolicySet((self.policy,))


def build_deps() -> StatusDeps:
    """Built once per container: the connection and clients are reused while it stays warm."""
    env = dict(os.environ)
    mine = StatusEnv.from_env(env)
    policies, settings = load_policies(env), load_settings(env)
    policy = policies.policies[0]
    db = open_database(env, settings, policy.timezone, aws.fetch_secret, aws.fetch_iam_token)
    return StatusDeps(db=db, policy=policy, settings=settings, invoker=aws.LambdaInvoker(),
                      function_name=mine.archive_function_name, policies=policies,
                      export_function_name=mine.export_function_name,
                      erasure_key=erasure.key_loader(mine.erasure_key_secret_arn, aws.fetch_secret))


DEPS = LazyDeps(build_deps)


def deps() -> StatusDeps:
    """The dependencies of the request being answered (``handle`` puts their provider in the resolver's
    context, so they are built only by a route that needs them)."""
    provider: Provider[StatusDeps] = app.context["deps"]
    return provider()


def _store(table: str | None = None) -> JobStore:
    d = deps()
    d.db.ensure_alive()
    return JobStore(d.db, d.all_policies.get(table) if table else d.policy)


def _job_store(job_id: str) -> JobStore:
    """The run log of the table the run belongs to (one log serves every table)."""
    d = deps()
    d.db.ensure_alive()
    return JobStore(d.db, policy_of(d.db, d.all_policies, job_id))


def _status_url(job_id: str) -> str:
    """The configured base URL (custom domains), else the one this request came in on."""
    base = deps().settings.status_base_url
    if not base:
        event = app.current_event
        host = event.headers.get("Host") or event.headers.get("host")
        proto = event.headers.get("X-Forwarded-Proto") or event.headers.get("x-forwarded-proto") or "https"
        base = f"{proto}://{host}/{event.request_context.stage}" if host else ""
    return f"{base.rstrip('/')}/runs/{job_id}"


def _run(job: Job) -> RunStatus:
    return RunStatus.model_validate(job.as_dict())


def _responses(ok: int, model: type[BaseModel], description: str, *errors: int) -> dict[int, Any]:
    """The documented answers of a route: its success, and its errors (422 always: validation)."""
    out: dict[int, Any] = {ok: {"description": description,
                                "content": {content_types.APPLICATION_JSON: {"model": model}}}}
    for code in sorted({*errors, 422}):
        out[code] = {"description": HTTPStatus(code).phrase,
                     "content": {content_types.APPLICATION_JSON: {"model": Error}}}
    return out


# -- routes -----------------------------------------------------------------------------------
@app.post("/runs", summary="Start a run",
          responses=_responses(202, RunStarted, "Run created; the archive function is starting",
                               400, 409, 413, 415, 502, 503))
@tracer.capture_method
def start_run(body: Annotated[StartRunRequest | None, Body()] = None) -> Response[RunStarted]:
    request = body or StartRunRequest()
    d = deps()
    policy = d.all_policies.get(request.table)  # 422 naming the tables when unknown, or several and none named
    d.db.ensure_alive()
    job = status.start_run(d.db, policy, d.settings, d.invoker, d.function_name,
                           dry_run=request.dry_run, fixed_batch_size=request.batch_size,
                           max_replica_lag=request.max_replica_lag)
    logger.append_keys(job_id=job.id)
    metrics.add_metric(name=MetricName.RUNS_STARTED_BY_API, unit=MetricUnit.Count, value=1)
    started = RunStarted(job_id=job.id, state=job.state, status_url=_status_url(job.id))
    return Response(status_code=HTTPStatus.ACCEPTED, content_type=content_types.APPLICATION_JSON,
                    body=started, headers={"Location": started.status_url})


@app.post("/erasures", summary="Erase one record everywhere: live, archive, related rows, exported files",
          description="Its own IAM permission on AWS. Answers at once with the erase run (GET /runs/{job_id}"
                      " follows it); the export function does the work. The key is never logged nor stored.",
          responses=_responses(202, RunStarted, "Erase run created; the export function is erasing",
                               400, 409, 413, 415, 502, 503))
@tracer.capture_method
def start_erasure(body: Annotated[ErasureRequest, Body()]) -> Response[RunStarted]:
    d = deps()
    if not d.export_function_name:
        raise ServiceError(HTTPStatus.SERVICE_UNAVAILABLE, "erasure needs the export function (export_enabled)")
    policy = d.all_policies.get(body.table)
    d.db.ensure_alive()
    identity = app.current_event.request_context.identity
    by = (identity.user_arn or identity.caller or "api")[:100]
    job = erasure.request_erasure(d.db, policy, body.key, by=by, dry_run=body.dry_run,
                                  invoker=d.eraser or d.invoker, function=d.export_function_name,
                                  erasure_key=d.erasure_key())
    logger.append_keys(job_id=job.id)
    metrics.add_metric(name="ErasuresRequested", unit=MetricUnit.Count, value=1)
    started = RunStarted(job_id=job.id, state=job.state, status_url=_status_url(job.id))
    return Response(status_code=HTTPStatus.ACCEPTED, content_type=content_types.APPLICATION_JSON,
                    body=started, headers={"Location": started.status_url})


@app.get("/runs", summary="Recent runs, newest first", responses=_responses(200, RunList, "Runs", 503))
@tracer.capture_method
def list_runs(limit: Annotated[int, Query(ge=1, le=MAX_RUNS_LIMIT)] = 20,
              table: Annotated[str | None, Query(min_length=1, max_length=MAX_TABLE_NAME,
                                                 description="one table's runs (default: every table's)")] = None,
              ) -> RunList:
    keys = [deps().all_policies.get(table).key] if table else [p.key for p in deps().all_policies.policies]
    return RunList(runs=[_run(j) for j in _store().recent(limit, keys=keys)])


@app.get("/runs/<job_id>", summary="One run with every status field",
         responses=_responses(200, RunStatus, "The run", 400, 404, 503))
@tracer.capture_method
def get_run(job_id: str) -> RunStatus:
    jid = parse_job_id(job_id)  # a malformed id is the caller's error, whatever the database's state
    logger.append_keys(job_id=jid)
    return _run(_job_store(jid).get(jid))


@app.post("/runs/<job_id>/cancel", summary="Stop a run after its current batch",
          responses={**_responses(202, RunStatus, "Cancel requested: the run stops after its current batch",
                                  400, 404, 409, 503),
                     200: {"description": "Cancelled at once: it had not started",
                           "content": {content_types.APPLICATION_JSON: {"model": RunStatus}}}})
@tracer.capture_method
def cancel_run(job_id: str) -> Response[RunStatus]:
    jid = parse_job_id(job_id)
    logger.append_keys(job_id=jid)
    job = _job_store(jid).request_cancel(jid)
    logger.info("cancel requested", extra={"state": job.state})
    metrics.add_metric(name=MetricName.CANCEL_REQUESTS, unit=MetricUnit.Count, value=1)
    # 200 when it ended at once (it had not started), 202 while the worker finishes its batch.
    code = HTTPStatus.OK if not job.active else HTTPStatus.ACCEPTED
    return Response(status_code=code, content_type=content_types.APPLICATION_JSON, body=_run(job))


@app.get("/stats", summary="Per-day archived totals, run times, failures; table sizes",
         responses=_responses(200, Stats, "Statistics", 503))
@tracer.capture_method
def get_stats(days: Annotated[int, Query(ge=1, le=MAX_STATS_DAYS)] = 7,
              table: Annotated[str | None, Query(min_length=1, max_length=MAX_TABLE_NAME,
                                                 description="default: the only policy's table")] = None,
              ) -> Stats:
    d = deps()
    policy = d.all_policies.get(table)
    d.db.ensure_alive()
    return Stats.model_validate(status.stats(d.db, policy, days))


@app.get("/tables", summary="Every table a policy archives, with its schedule",
         responses=_responses(200, TableList, "Tables"))
@tracer.capture_method
def list_tables() -> TableList:
    return TableList.model_validate({"tables": status.tables(deps().all_policies)})


@app.get("/health", summary="Database reachable, schema migrated, last successful run",
         responses={**_responses(200, Health, "Healthy"),
                    503: {"description": "Database unreachable or schema not migrated",
                          "content": {content_types.APPLICATION_JSON: {"model": Health}}}})
@tracer.capture_method
def get_health() -> Response[Health]:
    d = deps()
    report = Health.model_validate(status.health(d.db, d.all_policies))
    code = HTTPStatus.OK if report.status == "ok" else HTTPStatus.SERVICE_UNAVAILABLE
    return Response(status_code=code, content_type=content_types.APPLICATION_JSON, body=report)


@app.get("/", summary="The status page (HTML): current run, recent runs, charts and the run controls",
         responses={200: {"description": "One self-contained HTML page; its script calls only this API",
                          "content": {"text/html": {"schema": {"type": "string"}}}}})
@tracer.capture_method
def get_page() -> Response[str]:
    # The history is rendered in, so it reads without JavaScript; a database that cannot answer
    # still gets the page, saying why in the history (the script shows /health beside it).
    d = deps()
    try:
        keys = [p.key for p in d.all_policies.policies]  # every table's runs: one log serves them all
        runs, note = [j.as_dict() for j in _store().recent(page.PAGE_RUNS, keys=keys)], None
    except Exception as exc:  # noqa: BLE001 - answered in words, as the JSON routes would
        runs, note = [], error_answer(exc)[1].error
    return Response(status_code=HTTPStatus.OK, content_type=page.CONTENT_TYPE,
                    body=page.render(d.policy.live_table, runs, note), headers=page.assets().headers)


@app.get("/openapi.json", include_in_schema=False)
def get_openapi() -> Response[str]:
    return Response(status_code=HTTPStatus.OK, content_type=content_types.APPLICATION_JSON,
                    body=openapi_json())


def openapi_json() -> str:
    """The OpenAPI document, as served and as committed in docs/openapi.json."""
    return app.get_openapi_json_schema(
        title=TITLE, version=VERSION,
        description="Start, follow and cancel the archiver's runs; its statistics and health. A body is JSON"
                    " (Content-Type application/json, or none): another type answers 415, more than"
                    f" {MAX_BODY_BYTES} bytes 413, nesting deeper than {MAX_BODY_DEPTH} levels 400. A method a"
                    " route does not answer gets 405 with an Allow header.",
    ) + "\n"


# -- errors: every answer that is not a success is decided here --------------------------------
_STATUS_FOR: tuple[tuple[type[ArchiverError], HTTPStatus], ...] = (
    (InvalidJobIdError, HTTPStatus.BAD_REQUEST),
    (UnknownTableError, HTTPStatus.UNPROCESSABLE_ENTITY),
    (InvalidKeyError, HTTPStatus.UNPROCESSABLE_ENTITY),
    (JobNotFoundError, HTTPStatus.NOT_FOUND),
    (AlreadyRunningError, HTTPStatus.CONFLICT),
    (JobStateError, HTTPStatus.CONFLICT),
    (RunStartError, HTTPStatus.BAD_GATEWAY),
    (SchemaError, HTTPStatus.SERVICE_UNAVAILABLE),  # not migrated (UndefinedTableError) included
    (ReadOnlyError, HTTPStatus.SERVICE_UNAVAILABLE),
    (PermissionDeniedError, HTTPStatus.SERVICE_UNAVAILABLE),  # the deployment's grants, not the caller's
)


def _validation_error(exc: RequestValidationError) -> tuple[HTTPStatus, Error]:
    # Powertools reports malformed JSON as a validation error of type json_invalid.
    details = [{"loc": list(e.get("loc", ())), "type": e.get("type", ""), "msg": e.get("msg", "")}
               for e in exc.errors()]
    if any(d["type"] == "json_invalid" for d in details):
        return HTTPStatus.BAD_REQUEST, Error(error="malformed JSON body", details=details)
    what = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details)
    return HTTPStatus.UNPROCESSABLE_ENTITY, Error(error=f"invalid request: {what}", details=details)


def _unexpected(exc: Exception) -> tuple[HTTPStatus, Error]:
    # Type, SQLSTATE and frames only: an error's text can quote the data it choked on.
    logger.error("unhandled error", extra={"error_type": type(exc).__name__, "sqlstate": sqlstate(exc),
                                           "frames": "".join(traceback.format_tb(exc.__traceback__))[-4000:]})
    return HTTPStatus.INTERNAL_SERVER_ERROR, Error(error="internal error; see the function's log")


def error_answer(exc: Exception) -> tuple[HTTPStatus, Error]:
    """The HTTP status and JSON body for an exception raised while answering a request."""
    if isinstance(exc, RequestValidationError):
        return _validation_error(exc)
    if isinstance(exc, UnicodeDecodeError):  # a base64 body that does not decode to text
        return HTTPStatus.BAD_REQUEST, Error(error="the body must be UTF-8 JSON")
    if isinstance(exc, NotFoundError):
        return HTTPStatus.NOT_FOUND, Error(error="no such route")
    if isinstance(exc, ServiceError):
        return HTTPStatus(exc.status_code), Error(error=exc.msg)
    if isinstance(exc, DatabaseUnavailableError):  # its text names the server: keep that in the log
        logger.warning("database unavailable", extra={"error": str(exc)})
        return HTTPStatus.SERVICE_UNAVAILABLE, Error(error="the database is unavailable; try again later")
    for cls, code in _STATUS_FOR:
        if isinstance(exc, cls):
            return code, Error(error=str(exc), job_id=getattr(exc, "job_id", None),
                               state=getattr(exc, "state", None))
    # A ConfigError is the function's own configuration: not the caller's to fix.
    if isinstance(exc, ArchiverError) and not isinstance(exc, ConfigError):
        return HTTPStatus.BAD_REQUEST, Error(error=str(exc))
    return _unexpected(exc)


def allowed_methods(path: str) -> list[str]:
    """The methods a route answers on ``path`` (empty: no such route), for 405's Allow header."""
    routes = app._static_routes + app._dynamic_routes  # noqa: SLF001 - the resolver keeps them there only
    return sorted({r.method for r in routes if r.rule.match(path)})


@app.exception_handler(Exception)
def handle_error(exc: Exception) -> Response[dict[str, Any]]:
    allowed = allowed_methods(app.current_event.path) if isinstance(exc, NotFoundError) else []
    if allowed:
        methods = ", ".join(allowed)
        refused = Error(error=f"{app.current_event.http_method.upper()} is not allowed here; allowed: {methods}")
        return Response(status_code=HTTPStatus.METHOD_NOT_ALLOWED, content_type=content_types.APPLICATION_JSON,
                        headers={"Allow": methods}, body=refused.model_dump(exclude_none=True))
    code, body = error_answer(exc)
    if code < 500 or code == HTTPStatus.SERVICE_UNAVAILABLE:
        logger.info("request refused", extra={"status_code": int(code), "error_type": type(exc).__name__})
    return Response(status_code=code, content_type=content_types.APPLICATION_JSON,
                    body=body.model_dump(exclude_none=True))


def handle(event: dict[str, Any], context: LambdaContext, deps: Provider[StatusDeps]) -> dict[str, Any]:
    """One request, without the Lambda decorators: the body guard, then the resolver's routes."""
    refused = refusal(event)
    if refused is not None:  # before the resolver parses the body (status_guard)
        code, message = refused
        logger.info("request refused", extra={"status_code": int(code), "error_type": "body"})
        return {"statusCode": int(code), "multiValueHeaders": {"Content-Type": [content_types.APPLICATION_JSON]},
                "body": json.dumps(Error(error=message).model_dump(exclude_none=True)), "isBase64Encoded": False}
    app.append_context(deps=deps)  # cleared by resolve() when it has answered
    return app.resolve(event, context)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext, deps: Provider[StatusDeps] = DEPS) -> dict[str, Any]:
    return handle(event, context, deps)


if __name__ == "__main__":  # python -m handlers.status > docs/openapi.json
    print(openapi_json(), end="")
