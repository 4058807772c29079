"""Each handler's own environment variables, modelled once (the policy, the run settings and the
database have theirs in the core: ``config``, ``environment.DatabaseEnv``). Built in the handler's
``build_deps`` with ``from_env(os.environ)``; a bad value is a one-line ConfigError naming it."""

from __future__ import annotations

from pydantic import Field

from archiver.environment import ERASURE_KEY_ENV, EnvModel


class StatusEnv(EnvModel):
    """The status function: which archive function POST /runs starts (name or ARN)."""

    archive_function_name: str = Field(alias="ARCHIVER_ARCHIVE_FUNCTION_NAME",
                                       pattern=r"^[A-Za-z0-9_:.-]{1,170}$")
    # POST /erasures hands its work to the export function (cold storage on): its name, and the
    # secret holding the erasure records' HMAC key. Empty: no cold storage, the route answers 501.
    export_function_name: str = Field("", alias="ARCHIVER_EXPORT_FUNCTION_NAME", pattern=r"^[A-Za-z0-9_:.-]{0,170}$")
    erasure_key_secret_arn: str = Field("", alias=ERASURE_KEY_ENV, max_length=2048)


class SlackEnv(EnvModel):
    """The Slack function: the secret holding the incoming-webhook URL (fetched each invocation)."""

    webhook_secret_arn: str = Field(alias="ARCHIVER_SLACK_WEBHOOK_SECRET_ARN", min_length=1, max_length=2048)


class ExportEnv(EnvModel):
    """The export function: where the export goes, and the rows of one Parquet file."""

    dest: str = Field(alias="ARCHIVER_EXPORT_DEST", pattern=r"^s3://[a-z0-9.-]{3,63}(/.*)?$")
    rows_per_file: int = Field(100_000, alias="ARCHIVER_EXPORT_ROWS_PER_FILE", ge=1, le=10_000_000)
    erasure_key_secret_arn: str = Field("", alias=ERASURE_KEY_ENV, max_length=2048)
