"""Typed configuration: the archiving policy and the runtime settings.

Both are parsed once, at the edge, from a policy file (TOML or JSON) and ``ARCHIVER_*``
environment variables; the core only ever sees these models.
Precedence: built-in defaults (the seeds' values) < policy file < environment.
"""

from __future__ import annotations

import json
import tomllib
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import identifiers
from .exceptions import ConfigError

RelatedMode = Literal["keep", "skip", "move"]
RULE_NAMES = ("no_active_aod", "no_unpaid_installment", "no_upcoming_follow_up", "no_recent_call")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RelatedTable(_Model):
    """A table whose rows belong to a live row (found by foreign key, or listed in the policy)."""

    table: str
    column: str = "customer_id"

    @field_validator("table", "column")
    @classmethod
    def _ident(cls, v: str) -> str:
        return identifiers.validate(v, "related table name or column")


class Rules(_Model):
    """The seed's Phase-2 eligibility rules, each switchable."""

    no_active_aod: bool = False
    no_unpaid_installment: bool = False
    no_upcoming_follow_up: bool = False
    no_recent_call: bool = False
    window_days: int = Field(30, ge=1, le=3650)
    customer_column: str = "customer_id"
    aod_table: str = "nic_cc_aod"
    installment_table: str = "nic_cc_installment"
    follow_up_table: str = "nic_cc_follow_up"
    call_log_table: str = "nic_cc_call_log"
    aod_status_column: str = "status"
    aod_active_value: str = "active"
    installment_status_column: str = "status"
    installment_paid_value: str = "paid"
    follow_up_date_column: str = "due_date"
    call_date_column: str = "called_at"

    @field_validator("customer_column", "aod_table", "installment_table", "follow_up_table", "call_log_table",
                     "aod_status_column", "installment_status_column", "follow_up_date_column",
                     "call_date_column")
    @classmethod
    def _ident(cls, v: str) -> str:
        return identifiers.validate(v, "rule table or column")

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(name for name in RULE_NAMES if getattr(self, name))


class Policy(_Model):
    """What to archive, where to, and how."""

    schema_name: str = "public"
    live_table: str = "nic_cc_customer"
    archive_table: str = "nic_cc_customer_backup"
    log_table: str = "nic_cc_archive_log"
    age_column: str = "created_at"
    lob_column: str = "line_of_business"
    retention_days: int = Field(60, ge=1, le=36500)
    retention_by_lob: dict[str, int] = Field(default_factory=dict)
    # Where an adaptive run starts, and the size of a run started with it: a night's few thousand
    # rows move in one or two batches (docs/decisions/default-batch-size.md).
    batch_size: int = Field(5000, ge=1, le=10000)
    archived_by: str = Field("system", min_length=1, max_length=100)
    archive_reason: str = Field("60_day_rule", min_length=1, max_length=100)
    related_mode: RelatedMode = "skip"
    related_tables: tuple[RelatedTable, ...] = ()
    related_archive_suffix: str = "_backup"
    rules: Rules = Rules()
    purge_after_days: int = Field(730, ge=1, le=36500)
    timezone: str = "Indian/Mauritius"

    @field_validator("schema_name", "live_table", "archive_table", "log_table", "age_column", "lob_column")
    @classmethod
    def _ident(cls, v: str) -> str:
        return identifiers.validate(v, "table or column name")

    @field_validator("related_archive_suffix")
    @classmethod
    def _suffix(cls, v: str) -> str:
        identifiers.validate("t" + v, "related archive suffix")
        return v

    @field_validator("retention_by_lob")
    @classmethod
    def _lob(cls, v: dict[str, int]) -> dict[str, int]:
        for lob, days in v.items():
            if not lob or len(lob) > 100:
                raise ValueError("line-of-business names must be 1-100 characters")
            if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36500:
                raise ValueError(f"retention for {lob!r} must be a whole number of days in 1..36500")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {v!r}") from exc
        return v

    @model_validator(mode="after")
    def _distinct_tables(self) -> Policy:
        names = {self.live_table, self.archive_table, self.log_table}
        if len(names) != 3:
            raise ValueError("live_table, archive_table and log_table must be three different tables")
        return self

    @property
    def key(self) -> str:
        """One active run per live table: this key names it in the run log."""
        return f"{self.schema_name}.{self.live_table}"


class Settings(_Model):
    """How the job runs (not what it archives)."""

    lease_seconds: int = Field(300, ge=5, le=3600)
    max_hops: int = Field(200, ge=1, le=100000)
    stuck_after_minutes: int = Field(60, ge=1, le=10080)
    lock_timeout_ms: int = Field(5000, ge=100, le=600000)
    statement_timeout_ms: int = Field(300000, ge=1000, le=3600000)
    hop_seconds: float = Field(900, gt=0, le=900)
    reserve_ms: int = Field(10000, ge=0, le=600000)
    # Runs started without an explicit batch size adapt it (from the policy's batch_size, within
    # 1..10000) so each batch takes about this long; 0 keeps the size fixed. 100 ms: on a stock
    # server over TCP a batch's fixed cost (round trips, commit) is 10-30 ms, and a 10 ms target
    # shrank batches to ~70 rows, 0.09 of the single statement; from ~2000 rows a batch the time per
    # row is flat (docs/decisions/default-batch-size.md). Lower it where the application updates
    # old rows at night: a batch's time is how long such an update can wait.
    target_batch_ms: int = Field(100, ge=0, le=60000)
    # Idle time after each batch, outside any transaction: leaves the database room for its other
    # work on a busy server (pt-archiver's --sleep). 0: batch after batch.
    batch_pause_ms: int = Field(0, ge=0, le=60000)
    # Seconds: between batches, wait while any standby's replay lag (pg_stat_replication) is above
    # it, within the hop's time budget (archiver/replicas.py). 0: off.
    max_replica_lag: float = Field(0, ge=0, le=3600)
    # The statements every batch repeats run prepared (see Database.prepare); false for a pooler
    # in transaction mode that does not keep prepared statements between transactions.
    prepared_statements: bool = True
    anomaly_factor: float = Field(5.0, ge=1.0, le=1000.0)
    success_alerts: bool = False
    status_base_url: str | None = None
    alert_topic_arn: str | None = None


# Environment variable -> (model, field). Values are strings; pydantic converts them.
_POLICY_ENV = {f"ARCHIVER_{name.upper()}": name for name in Policy.model_fields if name != "rules"}
_POLICY_ENV["ARCHIVER_SCHEMA"] = "schema_name"
_SETTINGS_ENV = {f"ARCHIVER_{name.upper()}": name for name in Settings.model_fields}


def _parse_mapping(text: str, what: str) -> dict[str, int]:
    """``Life=90,Motor=60`` -> {"Life": 90, "Motor": 60}."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise ConfigError(f"{what}: expected NAME=DAYS pairs separated by commas, got {part!r}")
        out[key.strip()] = int(value)
    return out


def _parse_related(text: str) -> list[dict[str, str]]:
    """``table:column,table2:column2`` -> [{"table": ..., "column": ...}, ...]."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        table, _, column = part.partition(":")
        out.append({"table": table, "column": column or "customer_id"})
    return out


def _parse_rules(text: str) -> dict[str, bool]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        names = list(RULE_NAMES)
    unknown = [n for n in names if n not in RULE_NAMES and n != "none"]
    if unknown:
        raise ConfigError(f"ARCHIVER_RULES: unknown rule {unknown[0]!r}; known: {', '.join(RULE_NAMES)}, all")
    return {n: True for n in names if n != "none"}


def _read_policy_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"policy file {path} is not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}") from exc
    section = data.get("policy", data) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(f"policy file {path} must hold a table/object (optionally under 'policy')")
    return section


def _validation_message(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "policy"
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return f"invalid {source}: " + "; ".join(parts)


def load_policy(env: Mapping[str, str], path: Path | None = None, **overrides: Any) -> Policy:
    """Build the policy from a file (``ARCHIVER_POLICY_FILE`` unless ``path``), env and overrides."""
    data: dict[str, Any] = {}
    file_path = path or (Path(env["ARCHIVER_POLICY_FILE"]) if env.get("ARCHIVER_POLICY_FILE") else None)
    if file_path is not None:
        data.update(_read_policy_file(file_path))
    for var, field in _POLICY_ENV.items():
        if var not in env or env[var] == "":
            continue
        value: Any = env[var]
        if field == "retention_by_lob":
            value = _parse_mapping(value, var)
        elif field == "related_tables":
            value = _parse_related(value)
        data[field] = value
    if env.get("ARCHIVER_RULES"):
        data["rules"] = {**dict(data.get("rules") or {}), **_parse_rules(env["ARCHIVER_RULES"])}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc, "policy")) from None


def load_settings(env: Mapping[str, str], **overrides: Any) -> Settings:
    data: dict[str, Any] = {f: env[v] for v, f in _SETTINGS_ENV.items() if env.get(v, "") != ""}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc, "settings")) from None
