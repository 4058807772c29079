"""The deployment's configuration: CDK context (``cdk.json`` and ``-c key=value``) parsed into one model.

Every key is validated at synth, so a bad time zone or a negative retention stops ``cdk synth``
with a message naming the key, instead of surfacing at deploy time or at 02:00.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Literal

from aws_cdk import aws_logs as logs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from archiver import identifiers
from archiver.config import (
    DEFAULT_PURGE_AFTER_DAYS,
    MAX_DAYS,
    Policy,
    RelatedMode,
    Settings,
    hhmm,
    iana_zone,
    policy_variable,
    settings_variable,
)

from .constants import POSTGRES_PORT

_R = logs.RetentionDays
# The retentions CloudWatch Logs accepts, in days.
LOG_RETENTION = {
    1: _R.ONE_DAY, 3: _R.THREE_DAYS, 5: _R.FIVE_DAYS, 7: _R.ONE_WEEK, 14: _R.TWO_WEEKS, 30: _R.ONE_MONTH,
    60: _R.TWO_MONTHS, 90: _R.THREE_MONTHS, 120: _R.FOUR_MONTHS, 150: _R.FIVE_MONTHS, 180: _R.SIX_MONTHS,
    365: _R.ONE_YEAR, 400: _R.THIRTEEN_MONTHS, 545: _R.EIGHTEEN_MONTHS, 731: _R.TWO_YEARS,
    1096: _R.THREE_YEARS, 1827: _R.FIVE_YEARS, 2192: _R.SIX_YEARS, 2557: _R.SEVEN_YEARS,
    2922: _R.EIGHT_YEARS, 3288: _R.NINE_YEARS, 3653: _R.TEN_YEARS,
}
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]{1,128}$")
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}$")
_EXISTING_ONLY = ("db_vpc_id", "db_availability_zones", "db_subnet_ids", "db_security_group_id",
                  "db_secret_arn", "db_host", "db_user", "db_resource_id")


class ConfigError(ValueError):
    """The CDK context holds a value the deployment cannot use."""


_UNSET: Any = object()


def core(model: type[BaseModel], name: str, default: Any = _UNSET, *, description: str | None = None) -> Any:
    """A context key handed to the functions as the core's field ``name`` of ``model``: its bounds are
    the core's (one source), its default the core's unless given (None: unset, the core decides)."""
    field = model.model_fields[name]
    bounds = {key: value for meta in field.metadata if dataclasses.is_dataclass(meta)
              for key, value in dataclasses.asdict(meta).items()}  # type: ignore[arg-type]
    return Field(field.default if default is _UNSET else default, description=description, **bounds)


class ArchiverConfig(BaseModel):
    """Everything the stack can be told; each field is one context key of the same name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stack_name: str = Field("PgArchiver", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,127}$",
                            description="CloudFormation stack name.")
    # Schedule
    timezone: str = core(Policy, "timezone",
                         description="IANA time zone of the nightly schedule and of the archiving cutoff.")
    schedule_enabled: bool = Field(True, description="Run the nightly job (false = manual runs only).")
    schedule_time: str = core(Policy, "schedule_time", description="Local time of the nightly run, HH:MM (24-hour).")
    # Several tables: a policy document instead of the single-policy keys
    policy_file: str | None = Field(None, description="Policy document (TOML or JSON, `[[policies]]`), relative "
                                                      "to the project root: one policy, and one schedule, per "
                                                      "table.")
    policies: list[dict[str, Any]] | None = Field(None, description="The same list of policies inline "
                                                                     "(instead of policy_file).")
    summary_reports: bool = Field(True, description="Weekly (Monday 08:00) and monthly (1st, 08:00) summary "
                                                    "through the alert topic.")
    # Alerts
    alert_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
                                    description="E-mail address subscribed to the alert topic.")
    slack_webhook_secret_arn: str | None = Field(
        None, description="Complete ARN of a Secrets Manager secret holding the Slack incoming-webhook URL; "
                          "subscribes the Slack function to the alert topic.")
    # Archiving policy, handed to the functions as ARCHIVER_* variables (unset = the core's default)
    retention_days: int = core(Policy, "retention_days", description="Archive rows older than this many days.")
    batch_size: int | None = core(Policy, "batch_size", None,
                                description="Rows per batch where a run's adaptive batch size starts; every batch's "
                                            "size when target_batch_ms is 0.")
    target_batch_ms: int | None = core(Settings, "target_batch_ms", None,
                                       description="Time per batch the adaptive batch size aims at; 0 = fixed.")
    batch_pause_ms: int | None = core(Settings, "batch_pause_ms", None,
                                      description="Idle time after each batch, outside any transaction.")
    max_replica_lag: float | None = core(Settings, "max_replica_lag", None,
                                         description="Seconds; between batches, wait while any standby's replay "
                                                     "lag is above it (0 = off). The database user needs pg_monitor.")
    related_mode: RelatedMode | None = Field(
        None, description="What to do with a row that has related rows: keep it live, skip it, or move "
                          "the related rows too.")
    schema_name: str | None = Field(None, description="Schema of the tables.")
    live_table: str | None = Field(None, description="Table archived from.")
    archive_table: str | None = Field(None, description="Table archived to.")
    log_table: str | None = Field(None, description="Run log table.")
    max_hops: int = core(Settings, "max_hops", description="Self-invocations one run may make before it is stopped.")
    lease_seconds: int | None = core(Settings, "lease_seconds", None, description="Lease a hop holds on its run.")
    stuck_after_minutes: int | None = core(Settings, "stuck_after_minutes", None,
                                           description="A run without progress this long is stuck.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Function log level.")
    system_log_level: Literal["DEBUG", "INFO", "WARN"] = Field(
        "WARN", description="Level of the Lambda platform's own log lines (START, END, REPORT are INFO).")
    # Archive function
    archive_function_name: str = Field("archiver-archive", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                                       description="Fixed name of the archive function (its self-invoke "
                                                   "permission is built from it).")
    archive_timeout_minutes: int = Field(15, ge=1, le=15, description="Archive function timeout.")
    archive_memory_mb: int = Field(512, ge=128, le=10240, description="Archive function memory.")
    archive_reserved_concurrency: int = Field(2, ge=1, le=10,
                                              description="Reserved concurrency of the archive function.")
    async_retry_attempts: int = Field(1, ge=0, le=2,
                                      description="Lambda retries of a failed asynchronous invocation.")
    async_max_event_age_minutes: int = Field(60, ge=1, le=360,
                                             description="Age after which an undelivered invocation is "
                                                         "sent to the dead-letter queue.")
    # Cold storage: export -> verify -> purge to S3 as Parquet, queried with Athena (infra/cold_archive.py)
    export_enabled: bool = Field(False, description="Create the export bucket, Glue table and export function.")
    export_schedule: str = Field("cron(0 3 ? * SUN *)", pattern=r"^(cron|rate)\(.+\)$",
                                 description="When the export -> verify -> purge chain runs (the purge "
                                             "schedule), in the time zone above.")
    purge_after_days: int = core(Policy, "purge_after_days", DEFAULT_PURGE_AFTER_DAYS,
                                 description="Export, then purge, archive rows older than this.")
    export_prefix: str = Field("exports", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Key prefix in the bucket.")
    export_archive_class_after_days: int = Field(90, ge=0, le=MAX_DAYS, description="Move exported files to "
                                                 "Glacier Instant Retrieval (still queryable) after this many "
                                                 "days.")
    export_object_lock_days: int | None = Field(None, ge=1, le=MAX_DAYS, description="Object lock (governance "
                                                "mode) on exported files for this many days; erasure then "
                                                "needs the bypass permission.")
    export_columns: str = Field(
        "id:bigint,name:string,email:string,mobile:string,policy_number:string,amount_due:decimal(12,2),"
        "line_of_business:string,agent_id:int,status:string,created_at:timestamp,updated_at:timestamp,"
        "archived_at:timestamp,archived_by:string,archive_reason:string,archive_job_id:string",
        pattern=r"^[a-z0-9_:,()<>]+$",
        description="The archive table's columns for the Glue table, name:athena_type (see the export "
                    "manifest's athena_type).")
    export_memory_mb: int = Field(2048, ge=512, le=10240, description="Export function memory.")
    # Status API
    api_auth: Literal["iam", "api_key"] = Field("iam", description="Status API authorisation: IAM (SigV4) "
                                                                   "or an API key with a usage plan.")
    api_rate_limit: float = Field(5, gt=0, le=10000, description="Status API steady requests per second.")
    api_burst_limit: int = Field(10, ge=1, le=5000, description="Status API burst.")
    log_retention_days: int = Field(90, description="Retention of every log group the stack creates.")
    # Database
    database: Literal["new", "existing"] = Field(
        "new", description="`new`: create Aurora Serverless v2 PostgreSQL; `existing`: use the db_* keys.")
    db_min_capacity: float = Field(0, ge=0, le=256, description="New database: minimum ACUs (0: pauses when "
                                                                 "idle).")
    db_max_capacity: float = Field(4, ge=1, le=256, description="New database: maximum ACUs.")
    db_deletion_protection: bool = Field(True, description="New database: deletion protection.")
    db_vpc_id: str | None = Field(None, pattern=r"^vpc-[0-9a-f]{8,17}$", description="Existing: VPC id.")
    db_availability_zones: list[str] = Field(default_factory=list,
                                             description="Existing: AZs of db_subnet_ids, in the same order.")
    db_subnet_ids: list[str] = Field(default_factory=list,
                                     description="Existing: private subnets for the functions.")
    db_security_group_id: str | None = Field(None, pattern=r"^sg-[0-9a-f]{8,17}$",
                                             description="Existing: the database's security group.")
    db_secret_arn: str | None = Field(None, description="Existing: complete ARN of the credentials secret "
                                                        "(RDS JSON format).")
    db_host: str | None = Field(None, pattern=r"^[A-Za-z0-9.-]{1,253}$", description="Existing: endpoint.")
    db_port: int = Field(POSTGRES_PORT, ge=1, le=65535, description="Existing: port.")
    db_name: str | None = Field(None, description="Database name (new: created with this name, default "
                                                  "`archiver`; existing: default the secret's dbname).")
    db_iam_auth: bool = Field(False, description="Existing: connect with an RDS IAM token instead of the "
                                                 "secret's password.")
    db_user: str | None = Field(None, description="Existing with IAM auth: user.")
    db_resource_id: str | None = Field(None, pattern=r"^(cluster|db)-[A-Z0-9]+$",
                                       description="Existing with IAM auth: cluster or instance resource id.")
    db_ca_bundle: str = Field("certs/rds-global-bundle.pem",
                              description="CA bundle the functions verify the database's certificate with, "
                                          "relative to the project root (shipped in the asset).")
    secrets_kms_key_arn: str | None = Field(None, description="KMS key that encrypts db_secret_arn and "
                                                              "slack_webhook_secret_arn, when not the default "
                                                              "aws/secretsmanager key.")
    xray_endpoint: bool = Field(False, description="Also create an X-Ray interface endpoint (for traces "
                                                   "from the VPC functions when the VPC has no other route).")
    create_vpc_endpoints: bool = Field(True, description="Create the interface endpoints the functions "
                                                         "need (false when the VPC already has them).")

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # `-c alert_email=` clears a value that cdk.json sets.
        return None if isinstance(value, str) and value.strip() == "" else value

    @field_validator("db_availability_zones", "db_subnet_ids", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        # -c flags are strings: "subnet-a,subnet-b".
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("db_subnet_ids")
    @classmethod
    def _subnets(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not re.fullmatch(r"subnet-[0-9a-f]{8,17}", s)]
        if bad:
            raise ValueError(f"not subnet ids: {', '.join(bad)}")
        return value

    @field_validator("db_availability_zones")
    @classmethod
    def _zones(cls, value: list[str]) -> list[str]:
        bad = [z for z in value if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d[a-z]", z)]
        if bad:
            raise ValueError(f"not availability zone names: {', '.join(bad)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return iana_zone(value)

    @field_validator("schema_name", "live_table", "archive_table", "log_table", "db_name", "db_user")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        return None if value is None else identifiers.validate(value, "name")

    @field_validator("schedule_time")
    @classmethod
    def _time(cls, value: str) -> str:
        return hhmm(value)

    @field_validator("slack_webhook_secret_arn", "db_secret_arn")
    @classmethod
    def _secret_arn(cls, value: str | None) -> str | None:
        if value is not None and not _SECRET_ARN.match(value):
            raise ValueError("must be the complete ARN of a Secrets Manager secret, ending in its "
                             "6-character suffix (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf)")
        return value

    @field_validator("secrets_kms_key_arn")
    @classmethod
    def _kms_key_arn(cls, value: str | None) -> str | None:
        if value is not None and not _KMS_KEY_ARN.match(value):
            raise ValueError("must be the ARN of a KMS key (arn:aws:kms:REGION:ACCOUNT:key/KEY-ID)")
        return value

    @model_validator(mode="after")
    def _sources(self) -> ArchiverConfig:
        if self.policy_file is not None and self.policies is not None:
            raise ValueError("give policy_file or policies, not both")
        if self.secrets_kms_key_arn and not (self.db_secret_arn or self.slack_webhook_secret_arn):
            raise ValueError("secrets_kms_key_arn applies to db_secret_arn or slack_webhook_secret_arn: give one")
        return self

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION:
            raise ValueError(f"CloudWatch Logs accepts only {', '.join(map(str, LOG_RETENTION))}")
        return value

    @model_validator(mode="after")
    def _database(self) -> ArchiverConfig:
        if self.database == "new":
            given = [name for name in _EXISTING_ONLY if getattr(self, name)]
            if given or self.db_iam_auth:
                raise ValueError(f"{', '.join(given) or 'db_iam_auth'} only apply to database=existing")
            if self.db_port != POSTGRES_PORT:
                raise ValueError(f"db_port only applies to database=existing (a new database listens on "
                                 f"{POSTGRES_PORT})")
            if not self.create_vpc_endpoints:
                raise ValueError("database=new builds a VPC without internet access: "
                                 "create_vpc_endpoints must stay true")
            if self.db_min_capacity > self.db_max_capacity:
                raise ValueError("db_min_capacity must not exceed db_max_capacity")
            return self
        missing = [name for name in ("db_vpc_id", "db_availability_zones", "db_subnet_ids",
                                     "db_security_group_id", "db_host") if not getattr(self, name)]
        if self.db_iam_auth:
            missing += [name for name in ("db_user", "db_resource_id") if not getattr(self, name)]
            if self.db_secret_arn:
                raise ValueError("give either db_secret_arn or db_iam_auth=true, not both")
        elif not self.db_secret_arn:
            missing.append("db_secret_arn (or db_iam_auth=true)")
        if missing:
            raise ValueError(f"database=existing needs {', '.join(missing)}")
        if len(self.db_subnet_ids) % len(self.db_availability_zones):
            raise ValueError("db_subnet_ids must hold the same number of subnets in each of "
                             "db_availability_zones (listed zone by zone)")
        return self

    @property
    def log_retention(self) -> logs.RetentionDays:
        return LOG_RETENTION[self.log_retention_days]

    @property
    def schedule_hour(self) -> int:
        return int(self.schedule_time.split(":")[0])

    @property
    def schedule_minute(self) -> int:
        return int(self.schedule_time.split(":")[1])

    @property
    def glue_columns(self) -> list[tuple[str, str]]:
        """``export_columns`` as (name, Athena type); commas inside decimal(p,s) are not separators."""
        out = []
        for part in re.split(r",(?![^()]*\))", self.export_columns):
            name, _, kind = part.partition(":")
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name) or not kind:
                raise ConfigError(f"export_columns: expected name:type, got {part!r}")
            out.append((name, kind))
        return out

    @property
    def vpc_tracing(self) -> bool:
        """Trace segments can leave the VPC: through an X-Ray endpoint, or the existing VPC's own route."""
        return self.xray_endpoint or not self.create_vpc_endpoints

    def policy_environment(self) -> dict[str, str]:
        """The ARCHIVER_* variables of the single policy (no policy document)."""
        values = {name: getattr(self, name) for name in _POLICY_FIELDS}
        if self.purge_after_days == DEFAULT_PURGE_AFTER_DAYS:
            values["purge_after_days"] = None
        return _present({policy_variable(name): value for name, value in values.items()})

    def settings_environment(self) -> dict[str, str]:
        """The ARCHIVER_* variables of the run settings, shared by every policy."""
        return _present({settings_variable(name): getattr(self, name) for name in _SETTINGS_FIELDS})


# The core's fields this config sets (same names), handed to the functions by their variables.
_POLICY_FIELDS = ("timezone", "retention_days", "batch_size", "related_mode", "schema_name", "live_table",
                  "archive_table", "log_table", "purge_after_days")
_SETTINGS_FIELDS = ("max_hops", "target_batch_ms", "batch_pause_ms", "lease_seconds", "stuck_after_minutes",
                    "max_replica_lag")


def _present(values: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in values.items() if value is not None}


def _is_ours(key: str) -> bool:
    # Ours are snake_case; CDK's are namespaced or hyphenated ("@aws-cdk/...", "aws:cdk:...",
    # "availability-zones:...", "acknowledged-issue-numbers"), so a typo of ours is still caught.
    return re.fullmatch(r"[a-z][a-z0-9_]*", key) is not None


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "configuration"
        message = str(err["msg"]).removeprefix("Value error, ")
        # Our own messages quote the value already; pydantic's ("Input should be ...") do not.
        quoted = err["type"] == "value_error" or not err["loc"] or isinstance(err["input"], dict)
        given = "" if quoted else f" (got {err['input']!r})"
        lines.append(f"  - {key}: {message}{given}")
    return "\n".join(lines)


def config_from_context(context: Mapping[str, Any]) -> ArchiverConfig:
    """Validate the context keys that belong to the archiver; raise ConfigError naming each bad one."""
    ours = {key: value for key, value in context.items() if _is_ours(key)}
    unknown = sorted(set(ours) - set(ArchiverConfig.model_fields))
    if unknown:
        raise ConfigError(f"invalid configuration (cdk.json context or -c): unknown key(s) {', '.join(unknown)}; "
                          f"known keys: {', '.join(ArchiverConfig.model_fields)}")
    try:
        return ArchiverConfig.model_validate(ours)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration (cdk.json context or -c):\n{_describe(exc)}") from None
