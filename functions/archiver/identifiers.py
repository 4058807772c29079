"""Validation and quoting of SQL identifiers taken from configuration."""

from __future__ import annotations

import hashlib
import re

from pg8000.native import identifier as _quote

from .exceptions import IdentifierError

# ASCII only, PostgreSQL's 63-byte limit; reserved words are fine because we always quote.
_VALID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def validate(name: object, what: str = "identifier") -> str:
    """Return ``name`` if it is a safe identifier, else raise IdentifierError saying why."""
    if not isinstance(name, str):
        raise IdentifierError(f"{what} must be a string, got {type(name).__name__}")
    if not name:
        raise IdentifierError(f"{what} must not be empty")
    if len(name.encode()) > 63:
        raise IdentifierError(f"{what} {name[:20]!r}... is longer than 63 bytes")
    if not _VALID.match(name):
        raise IdentifierError(
            f"{what} {name!r} is not allowed: use letters, digits and underscores, starting with a letter"
        )
    return name


def quote(name: str) -> str:
    """Quote an already validated identifier."""
    return str(_quote(validate(name)))


def qualified(schema: str, table: str) -> str:
    return f"{quote(schema)}.{quote(table)}"


def stable_name(name: str) -> str:
    """``name`` within PostgreSQL's 63 bytes: it truncates silently; keep names unique and stable instead."""
    return name if len(name) <= 63 else f"{name[:50]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
