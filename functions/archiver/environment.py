"""The environment variables, modelled like ``Settings``: each reader is a frozen typed model whose
fields are named by their variables and built in one place, ``from_env(environ)``.

An unset or empty variable takes the field's default; a bad value is a ConfigError of one line
naming the variable (and the value, unless it is a secret). The policy and the run settings
have their own readers in ``config``; the handlers' own variables are modelled in ``handlers.env``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from .exceptions import ConfigError

# The secret holding the erasure records' HMAC key: read by the status and export functions and the CLI.
ERASURE_KEY_ENV = "ARCHIVER_ERASURE_KEY_SECRET_ARN"
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class EnvModel(BaseModel):
    """Variables -> typed values. A field's alias is its variable; other variables are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def variables(cls) -> tuple[str, ...]:
        return tuple(str(f.alias) for f in cls.model_fields.values() if f.alias)

    @classmethod
    def variable(cls, field: str) -> str:
        """The variable that sets ``field`` (the infra hands values over by it)."""
        return str(cls.model_fields[field].alias)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """The model of ``environ``'s variables; ConfigError naming the first bad one."""
        given = {name: environ[name] for name in cls.variables() if environ.get(name, "") != ""}
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            raise ConfigError(_one_line(cls, exc)) from None


def _one_line(model: type[EnvModel], exc: ValidationError) -> str:
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else model.__name__
    if err["type"] == "missing":
        return f"{name} is not set"
    message = str(err["msg"]).removeprefix("Value error, ")
    field = next((f for f in model.model_fields.values() if f.alias == name), None)
    secret = field is not None and "SecretStr" in str(field.annotation)
    return f"{name}: {message}" + ("" if secret else f" (got {err['input']!r})")


class DatabaseEnv(EnvModel):
    """Where the database is and how to log in (``connection.params_from_env`` reads these only)."""

    url: SecretStr | None = Field(None, alias="DATABASE_URL")  # may hold the password
    secret_arn: str | None = Field(None, alias="ARCHIVER_DB_SECRET_ARN")
    host: str | None = Field(None, alias="ARCHIVER_DB_HOST", max_length=253)
    port: int = Field(5432, alias="ARCHIVER_DB_PORT", ge=1, le=65535)
    name: str | None = Field(None, alias="ARCHIVER_DB_NAME", max_length=63)
    user: str = Field("archiver", alias="ARCHIVER_DB_USER", min_length=1, max_length=63)
    password: SecretStr | None = Field(None, alias="ARCHIVER_DB_PASSWORD")
    iam_auth: bool = Field(False, alias="ARCHIVER_DB_IAM_AUTH")
    ssl_mode: SslMode = Field("verify-full", alias="ARCHIVER_DB_SSL")
    ca_file: str | None = Field(None, alias="ARCHIVER_DB_CA_FILE")  # sslrootcert; default: the RDS bundle
