"""Typed configuration: the archiving policy and the runtime settings.

Both are parsed once, at the edge, from a policy file (TOML or JSON) and ``ARCHIVER_*``
environment variables; the core only ever sees these models.
Precedence: built-in defaults (the seeds' values) < policy file < environment.

A policy file holds one policy (today's form, optionally under ``[policy]``) or several, as
``[[policies]]`` entries (JSON: ``{"policies": [...]}``), one per live table, sharing one run log:
``load_policies`` reads either into a ``PolicySet``, validated once.
"""

from __future__ import annotations

import json
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import identifiers
from .exceptions import ConfigError, UnknownTableError

RelatedMode = Literal["keep", "skip", "move"]
Mode = Literal["archive", "dry_run", "off"]
DEFAULT_PURGE_AFTER_DAYS = 730  # `archiver purge` without --older-than, when the policy sets none
# Rows per batch transaction, at most: a policy, a start request, the CLI flag, the steering.
MAX_BATCH_SIZE = 10000
# Any count of days (retention, purge age, --older-than, the infra's lifecycle): at most a century.
MAX_DAYS = 36500
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)(:00)?")
RULE_NAMES = ("no_active_aod", "no_unpaid_installment", "no_upcoming_follow_up", "no_recent_call")


def iana_zone(value: str) -> str:
    """``value`` if it names an IANA time zone, else ValueError saying so (the policy's and the CDK's rule)."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone (e.g. Indian/Mauritius, Europe/Paris)") from None
    return value


def hhmm(value: str) -> str:
    """``value`` as HH:MM if it is a 24-hour local time (``HH:MM:00`` too), else ValueError saying so."""
    m = _HHMM.fullmatch(value.strip())
    if not m:
        raise ValueError(f"{value!r} is not a 24-hour HH:MM time (e.g. 02:00)")
    return f"{m.group(1)}:{m.group(2)}"


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
    archive_table: str = "nic_cc_customer_backup"  # default: <live_table>_backup (see _default_archive)
    log_table: str = "nic_cc_archive_log"
    age_column: str = "created_at"
    lob_column: str = "line_of_business"
    retention_days: int = Field(60, ge=1, le=MAX_DAYS)
    retention_by_lob: dict[str, int] = Field(default_factory=dict)
    # The starting size of a run's steered batch size (Settings.target_batch_ms), and every batch's size
    # when the target is 0; not the fixed size a run may be started with (Archiver.start). A night's
    # few thousand rows move in one or two batches (docs/decisions/default-batch-size.md).
    batch_size: int = Field(5000, ge=1, le=MAX_BATCH_SIZE)
    archived_by: str = Field("system", min_length=1, max_length=100)
    archive_reason: str = Field("60_day_rule", min_length=1, max_length=100)
    related_mode: RelatedMode = "skip"
    related_tables: tuple[RelatedTable, ...] = ()
    related_archive_suffix: str = "_backup"
    rules: Rules = Rules()
    # Long-term retention of the archive: set, a scheduled purge removes rows archived longer ago.
    purge_after_days: int | None = Field(None, ge=1, le=MAX_DAYS)
    # The scheduled purge deletes only rows a verified export holds (issue: verify before delete);
    # true lets it delete archive rows without one, for a deployment that keeps no cold copy (logged).
    purge_without_export: bool = False
    timezone: str = "Indian/Mauritius"
    # The schedule, in the policy's time zone: when the nightly run starts, whether it archives,
    # until which date it only counts (the trial phase), and by when it stops for the night.
    schedule_time: str = "02:00"
    mode: Mode = "archive"
    dry_run_until: date | None = None
    run_until: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_archive(cls, data: Any) -> Any:
        # Each live table gets its own archive by default, so two policies never share one.
        if isinstance(data, dict) and "archive_table" not in data and isinstance(data.get("live_table"), str):
            return {**data, "archive_table": f"{data['live_table']}_backup"}
        return data

    @field_validator("schedule_time", "run_until", mode="before")
    @classmethod
    def _hhmm(cls, v: Any) -> Any:
        if isinstance(v, time):
            v = v.strftime("%H:%M:%S")
        return v if v is None else hhmm(str(v))

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
            if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
                raise ValueError(f"retention for {lob!r} must be a whole number of days in 1..{MAX_DAYS}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return iana_zone(v)

    @model_validator(mode="after")
    def _distinct_tables(self) -> Policy:
        names = {self.live_table, self.archive_table, self.log_table}
        if len(names) != 3:
            raise ValueError("live_table, archive_table and log_table must be three different tables")
        if self.run_until is not None and self.run_until == self.schedule_time:
            raise ValueError("run_until must differ from schedule_time (it ends the night's window)")
        return self

    @property
    def key(self) -> str:
        """One active run per live table: this key names it in the run log."""
        return f"{self.schema_name}.{self.live_table}"

    def local(self, when: datetime) -> datetime:
        """``when`` (aware) in the policy's time zone."""
        return when.astimezone(zoneinfo.ZoneInfo(self.timezone))

    def scheduled_dry_run(self, when: datetime) -> bool:
        """Whether the scheduled run for ``when`` only counts: mode dry_run, or before dry_run_until
        (a date in the policy's time zone: the trial phase before going live)."""
        if self.mode == "dry_run":
            return True
        return self.dry_run_until is not None and self.local(when).date() < self.dry_run_until

    def outside_run_window(self, when: datetime) -> bool:
        """Whether a scheduled run must stop for the night at ``when``: its local time is past
        ``run_until`` and before the next ``schedule_time`` (the window may span midnight)."""
        if self.run_until is None:
            return False
        now = self.local(when).strftime("%H:%M")
        start, end = self.schedule_time, self.run_until
        inside = start <= now < end if start < end else (now >= start or now < end)
        return not inside


class Settings(_Model):
    """How the job runs (not what it archives)."""

    lease_seconds: int = Field(300, ge=5, le=3600)
    max_hops: int = Field(200, ge=1, le=100000)
    stuck_after_minutes: int = Field(60, ge=1, le=10080)
    lock_timeout_ms: int = Field(5000, ge=100, le=600000)
    statement_timeout_ms: int = Field(300000, ge=1000, le=3600000)
    hop_seconds: float = Field(900, gt=0, le=900)
    reserve_ms: int = Field(10000, ge=0, le=600000)
    # Runs started without a fixed batch size steer it (from the policy's batch_size, within
    # 1..MAX_BATCH_SIZE) so each batch takes about this long; 0 keeps the size fixed. 100 ms: on a stock
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
# Field -> the variable that sets it (ARCHIVER_SCHEMA, the shorter one, for schema_name).
_POLICY_VARIABLE = {name: var for var, name in _POLICY_ENV.items()}
_SETTINGS_VARIABLE = {name: var for var, name in _SETTINGS_ENV.items()}
POLICY_FILE_ENV = "ARCHIVER_POLICY_FILE"  # a policy document's path
POLICIES_ENV = "ARCHIVER_POLICIES"  # the same document as inline JSON (how the infra hands it over)
RULES_ENV = "ARCHIVER_RULES"  # the rules to turn on: all, none, or RULE_NAMES separated by commas


def policy_variable(field: str) -> str:
    """The environment variable that sets the policy's ``field`` (the infra hands values over by it)."""
    return _POLICY_VARIABLE[field]


def settings_variable(field: str) -> str:
    """The environment variable that sets the run settings' ``field``."""
    return _SETTINGS_VARIABLE[field]


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
        raise ConfigError(f"{RULES_ENV}: unknown rule {unknown[0]!r}; known: {', '.join(RULE_NAMES)}, all")
    return {n: True for n in names if n != "none"}


def read_document(path: Path) -> Any:
    """A policy file: TOML, or JSON when it ends in .json (the CDK reads it with this too)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc.strerror}") from exc
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ConfigError(f"policy file {path} is not valid {kind}: {exc}") from exc


def _document(env: Mapping[str, str], path: Path | None) -> tuple[str, Any] | None:
    """The policy document and where it came from: ``path``, else ARCHIVER_POLICY_FILE, else
    ARCHIVER_POLICIES (the same document as inline JSON), else none."""
    file_path = path or (Path(env[POLICY_FILE_ENV]) if env.get(POLICY_FILE_ENV) else None)
    if file_path is not None:
        return f"policy file {file_path}", read_document(file_path)
    if env.get(POLICIES_ENV):
        try:
            return POLICIES_ENV, json.loads(env[POLICIES_ENV])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{POLICIES_ENV} is not valid JSON: {exc}") from None
    return None


def _entries(source: str, data: Any) -> list[dict[str, Any]] | None:
    """The ``policies`` list of a multi-policy document; None for today's single-policy form."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a table/object (optionally under 'policy')")
    if "policies" not in data:
        section = data.get("policy", data)
        if not isinstance(section, dict):
            raise ConfigError(f"{source} must hold a table/object (optionally under 'policy')")
        return None
    others = sorted(set(data) - {"policies"})
    if others:
        raise ConfigError(f"{source}: unexpected top-level key {others[0]!r} next to 'policies'"
                          " (set it in each policy)")
    entries = data["policies"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: 'policies' must be a non-empty list of tables/objects")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: policies[{i}] must be a table/object")
    return entries


def _env_values(env: Mapping[str, str]) -> dict[str, Any]:
    """The policy values the ARCHIVER_* variables set."""
    data: dict[str, Any] = {}
    for var, field in _POLICY_ENV.items():
        if var not in env or env[var] == "":
            continue
        value: Any = env[var]
        if field == "retention_by_lob":
            value = _parse_mapping(value, var)
        elif field == "related_tables":
            value = _parse_related(value)
        data[field] = value
    return data


def _with_env(entry: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """One policy's values with the ARCHIVER_* variables on top (environment wins over the file)."""
    data = {**entry, **_env_values(env)}
    if env.get(RULES_ENV):
        data["rules"] = {**dict(data.get("rules") or {}), **_parse_rules(env[RULES_ENV])}
    return data


def _validation_message(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "policy"
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return f"invalid {source}: " + "; ".join(parts)


def _label(i: int, entry: Mapping[str, Any]) -> str:
    """How errors name a policy: ``policies[1] (nic_cc_call_log)``."""
    name = entry.get("live_table")
    return f"policies[{i}] ({name})" if isinstance(name, str) else f"policies[{i}]"


@dataclass(frozen=True)
class PolicySet:
    """Every policy of a deployment, one per live table, all sharing one run log."""

    policies: tuple[Policy, ...]

    def __post_init__(self) -> None:
        _check_set(self.policies)

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(p.live_table for p in self.policies)

    @property
    def enabled(self) -> tuple[Policy, ...]:
        """The policies the schedule runs (mode is not off)."""
        return tuple(p for p in self.policies if p.mode != "off")

    def get(self, table: str | None = None) -> Policy:
        """The policy of ``table`` (its live table, or schema.table); None: the only policy."""
        if table is None:
            if len(self.policies) == 1:
                return self.policies[0]
        else:
            for p in self.policies:
                if table in (p.live_table, p.key):
                    return p
        raise UnknownTableError(table, self.tables)

    def by_key(self, key: str) -> Policy | None:
        """The policy whose runs the run log records under ``key`` (its ``policy_key``)."""
        return next((p for p in self.policies if p.key == key), None)

    def to_json(self) -> str:
        """The document as compact JSON of the keys each policy sets (for ARCHIVER_POLICIES)."""
        entries = [p.model_dump(mode="json", exclude_unset=True) for p in self.policies]
        return json.dumps({"policies": entries}, separators=(",", ":"))


def _check_set(policies: tuple[Policy, ...]) -> None:
    """Distinct live tables and archive tables, and one run log for all (it keys runs by table)."""
    if not policies:
        raise ConfigError("no policy: 'policies' must list at least one")
    seen: dict[str, tuple[int, str]] = {}  # table -> (policy index, its role there)
    first = policies[0]
    for i, p in enumerate(policies):
        label = _label(i, {"live_table": p.live_table})
        if (p.schema_name, p.log_table) != (first.schema_name, first.log_table):
            key = "log_table" if p.log_table != first.log_table else "schema_name"
            raise ConfigError(f"invalid policy file: {label}: {key}: every policy shares one run log, "
                              f"{first.schema_name}.{first.log_table} (as policies[0])")
        for key, table in (("live_table", p.live_table), ("archive_table", p.archive_table)):
            name = f"{p.schema_name}.{table}"
            if name in seen:
                j, role = seen[name]
                raise ConfigError(f"invalid policy file: {label}: {key}: {name} is already the {role} of "
                                  f"{_label(j, {'live_table': policies[j].live_table})}")
            if name == f"{first.schema_name}.{first.log_table}":
                raise ConfigError(f"invalid policy file: {label}: {key}: {name} is the run log")
            seen[name] = (i, key.replace("_", " "))


def load_policies(env: Mapping[str, str], path: Path | None = None, **overrides: Any) -> PolicySet:
    """Every policy: from ``path``, else ARCHIVER_POLICY_FILE, else ARCHIVER_POLICIES (inline JSON),
    else one policy from the ARCHIVER_* variables. With one policy the ARCHIVER_* variables override
    its values (as they always did); with several, each policy's values come from the document.
    ``overrides`` (not None) apply to every policy. Raises ConfigError naming the policy and the key."""
    found = _document(env, path)
    entries = _entries(*found) if found is not None else None
    single = entries is None
    if entries is None:
        entries = [dict(found[1].get("policy", found[1])) if found is not None else {}]
    if len(entries) == 1:
        entries = [_with_env(entries[0], env)]
    extra = {k: v for k, v in overrides.items() if v is not None}
    policies = []
    for i, entry in enumerate(entries):
        try:
            policies.append(Policy.model_validate({**entry, **extra}))
        except ValidationError as exc:
            where = "policy" if single or found is None else f"{found[0]}: {_label(i, entry)}"
            raise ConfigError(_validation_message(exc, where)) from None
    return PolicySet(tuple(policies))


def load_policy(env: Mapping[str, str], path: Path | None = None, **overrides: Any) -> Policy:
    """The one policy (see load_policies); a document of several is refused, naming its tables."""
    return load_policies(env, path, **overrides).get(None)


def load_settings(env: Mapping[str, str], **overrides: Any) -> Settings:
    data: dict[str, Any] = {f: env[v] for v, f in _SETTINGS_ENV.items() if env.get(v, "") != ""}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc, "settings")) from None
