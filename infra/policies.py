"""The archiving policies of a deployment: one per table, each with its own schedule.

A policy document (``-c policy_file=PATH`` or a ``policies`` list in cdk.json) is validated at
synth and handed to every function as ``ARCHIVER_POLICIES`` (compact JSON of the keys the document
sets). Without one, today's single-table context keys (``retention_days``, ``schedule_time``, ...)
make one policy, handed over as ``ARCHIVER_*`` variables as before.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from archiver import config as core_config
from archiver.config import Mode, hhmm, iana_zone
from archiver.exceptions import ArchiverError

from .config import ArchiverConfig, ConfigError, core

POLICIES_ENV = core_config.POLICIES_ENV
# Lambda allows 4 KB for all of a function's variables; the rest need about 500 bytes.
MAX_POLICIES_BYTES = 3500
# The keys a policy entry adds to the core's Policy for its schedule (the contract's "policy file").
SCHEDULE_KEYS = ("schedule_time", "mode", "dry_run_until", "run_until")
DEFAULT_LIVE_TABLE: str = core_config.Policy.model_fields["live_table"].default
DEFAULT_TIMEZONE: str = core_config.Policy.model_fields["timezone"].default
# Context keys that describe the single policy; with a policy document they belong in its entries.
SINGLE_POLICY_KEYS = ("timezone", "schedule_time", "retention_days", "batch_size", "related_mode", "schema_name",
                      "live_table", "archive_table", "log_table")


class ScheduledPolicy(BaseModel):
    """What the stack needs of one policy: its table and when (and how) its runs are triggered."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    live_table: str = DEFAULT_LIVE_TABLE
    schedule_time: str = core(core_config.Policy, "schedule_time")
    timezone: str = DEFAULT_TIMEZONE
    mode: Mode = "archive"
    dry_run_until: dt.date | None = None
    run_until: str | None = None
    purge_after_days: int | None = core(core_config.Policy, "purge_after_days", None)
    # False for the single policy of the context keys: its events name no table (the only policy).
    named: bool = True

    @field_validator("schedule_time", "run_until")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        return None if value is None else hhmm(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return iana_zone(value)

    @property
    def table(self) -> str | None:
        """The ``table`` the events carry (None: the only policy)."""
        return self.live_table if self.named else None

    @property
    def hour(self) -> int:
        return int(self.schedule_time[:2])

    @property
    def minute(self) -> int:
        return int(self.schedule_time[3:])

    def in_trial(self, today: dt.date) -> bool:
        """Its scheduled runs are dry runs (mode, or a dry_run_until still ahead)."""
        return self.mode == "dry_run" or (self.dry_run_until is not None and today < self.dry_run_until)


class Deployment(BaseModel):
    """The policies of the stack and the variables that hand them to the functions."""

    model_config = ConfigDict(frozen=True)

    policies: tuple[ScheduledPolicy, ...]
    environment: dict[str, str]


def _plain(value: Any) -> Any:
    """TOML dates and times as the ISO text JSON (and the core) read back."""
    if isinstance(value, (dt.date, dt.time, dt.datetime)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a policy value")


def read_document(path: Path) -> Any:
    """The policy file, read as the core reads it."""
    try:
        return core_config.read_document(path)
    except ArchiverError as exc:
        raise ConfigError(f"policy_file: {exc}") from None


def entries(document: Any, source: str) -> list[dict[str, Any]]:
    """The policy entries: ``{"policies": [...]}``, a bare list, or one policy (optionally under ``policy``)."""
    if isinstance(document, Mapping) and "policies" in document:
        document = document["policies"]
    elif isinstance(document, Mapping):
        document = [document.get("policy", document)]
    if not isinstance(document, list) or not document:
        raise ConfigError(f"{source}: expected a non-empty list of policies ([[policies]] entries)")
    for index, entry in enumerate(document):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{source}: policies[{index}] must be a table/object of policy keys")
    return [dict(entry) for entry in document]


def _where(index: int, entry: Mapping[str, Any]) -> str:
    table = entry.get("live_table", DEFAULT_LIVE_TABLE)
    return f"policies[{index}] ({table})" if isinstance(table, str) else f"policies[{index}]"


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'policy'}: "
                     f"{str(err['msg']).removeprefix('Value error, ')}" for err in exc.errors())


def _schedule(index: int, entry: Mapping[str, Any], source: str) -> ScheduledPolicy:
    keys = {key: entry[key] for key in (*SCHEDULE_KEYS, "live_table", "timezone", "purge_after_days")
            if key in entry}
    try:
        return ScheduledPolicy.model_validate(keys)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_where(index, entry)}: {_errors(exc)}") from None


def _validate_with_core(document_json: str, source: str) -> None:
    """The core's own validation of every key, exactly as the functions will read the variable."""
    try:
        core_config.load_policies({POLICIES_ENV: document_json})
    except ArchiverError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def from_document(document: Any, source: str) -> tuple[tuple[ScheduledPolicy, ...], str]:
    """Validate a policy document; return its schedules and the compact JSON the functions receive."""
    policies = entries(document, source)
    try:
        text = json.dumps({"policies": policies}, separators=(",", ":"), default=_plain)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    scheduled = tuple(_schedule(index, entry, source) for index, entry in enumerate(policies))
    tables = [p.live_table for p in scheduled]
    repeated = sorted({t for t in tables if tables.count(t) > 1})
    if repeated:
        raise ConfigError(f"{source}: one policy per live table; {', '.join(repeated)} has more than one")
    _validate_with_core(text, source)
    size = len(text.encode())
    if size > MAX_POLICIES_BYTES:
        raise ConfigError(f"{source}: the policies take {size} bytes as JSON, more than the {MAX_POLICIES_BYTES} "
                          f"a Lambda environment variable can hold here; shorten them or split the deployment")
    return scheduled, text


def deployment(config: ArchiverConfig, root: Path) -> Deployment:
    """The stack's policies: from the policy document when there is one, else the single-table context keys."""
    if config.policy_file is None and config.policies is None:
        single = ScheduledPolicy(live_table=config.live_table or DEFAULT_LIVE_TABLE,
                                 schedule_time=config.schedule_time, timezone=config.timezone, named=False)
        return Deployment(policies=(single,),
                          environment={**config.policy_environment(), **config.settings_environment()})
    given = sorted(key for key in set(SINGLE_POLICY_KEYS) & config.model_fields_set
                   if getattr(config, key) != ArchiverConfig.model_fields[key].default)
    if given:
        raise ConfigError(f"invalid configuration (cdk.json context or -c): {', '.join(given)} describe the single "
                          f"policy; with a policy document set them in its entries instead")
    if config.policy_file is not None:
        path = root / config.policy_file
        source = f"policy_file {config.policy_file}"
        document: Any = read_document(path)
    else:
        source, document = "policies (cdk.json context)", config.policies
    policies, text = from_document(document, source)
    return Deployment(policies=policies, environment={POLICIES_ENV: text, **config.settings_environment()})
