"""Typed errors of the core; the CLI maps them to exit codes and the REST API to HTTP codes."""

from __future__ import annotations


class ArchiverError(Exception):
    """Base of every error the core raises on purpose."""


class ConfigError(ArchiverError):
    """Configuration (environment, policy file, CLI flags) is invalid."""


class UnknownTableError(ConfigError):
    """A table was asked for (``--table``, ``table``) that no policy archives, or none where several do."""

    def __init__(self, table: str | None, choices: tuple[str, ...]) -> None:
        what = f"no policy for table {table!r}" if table else "several policies: name a table"
        super().__init__(f"{what}; choose one of: {', '.join(choices)}")
        self.table = table
        self.choices = choices


class IdentifierError(ConfigError, ValueError):
    """A table or column name is not acceptable as a PostgreSQL identifier."""


class InvalidKeyError(ConfigError):
    """A record's key (erasure) is not a value of the table's key column; the message never quotes it."""


class InvalidEventError(ConfigError):
    """The archive function received an event it does not understand."""


class SchemaError(ArchiverError):
    """The database schema cannot support the run (missing table, incompatible archive table)."""


class ColumnsChangedError(SchemaError):
    """A table's columns changed since the run built its statements (DDL between two batches)."""


class AlreadyRunningError(ArchiverError):
    """Another run of the same policy is active."""

    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(f"a run is already active for this policy: job {job_id} ({state})")
        self.job_id = job_id
        self.state = state


class DuplicateTriggerError(AlreadyRunningError):
    """The scheduler delivered the same night's trigger again; its run exists already."""


class JobNotFoundError(ArchiverError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no run with job id {job_id}")
        self.job_id = job_id


class InvalidJobIdError(ArchiverError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"malformed job id {job_id!r}: expected a UUID")
        self.job_id = job_id


class JobStateError(ArchiverError):
    """The requested operation does not fit the job's state (e.g. cancelling a finished run)."""

    def __init__(self, job_id: str, state: str, action: str) -> None:
        super().__init__(f"cannot {action} job {job_id}: it is {state}")
        self.job_id = job_id
        self.state = state


class LeaseLostError(ArchiverError):
    """Another worker took the job over; this worker must stop without touching anything."""


class HopLimitError(ArchiverError):
    def __init__(self, job_id: str, hop: int, max_hops: int) -> None:
        super().__init__(f"job {job_id} reached hop {hop}, over the limit of {max_hops}: chain stopped")
        self.job_id = job_id
        self.hop = hop
        self.max_hops = max_hops


class DatabaseUnavailableError(ArchiverError):
    """The database cannot be reached."""


class RunStartError(ArchiverError):
    """The run was created but the archive function could not be started; the run is marked failed."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"could not start the archive function for job {job_id}: {reason}")
        self.job_id = job_id
        self.reason = reason


class RunFailedError(ArchiverError):
    """A run failed; the message is safe to log (no row data)."""

    def __init__(self, job_id: str, message: str) -> None:
        super().__init__(f"run {job_id} failed: {message}")
        self.job_id = job_id


class ServerError(ArchiverError):
    """An error the server reported, typed by its SQLSTATE in one place (``db.py``), never from its
    message text at a call site. ``sqlstate`` names the code, or the class of codes a prefix stands for
    (PostgreSQL's errcodes); an instance made from a server error carries the server's exact code. Its
    text is the server's message, never the DETAIL (which can quote a row)."""

    sqlstate = ""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        if sqlstate:
            self.sqlstate = sqlstate


class UniqueViolationError(ServerError):
    """SQLSTATE 23505: a row would duplicate a unique key. Raised only where the caller expects it
    (``db.expecting``): elsewhere it is a bug, reported as the server's error."""

    sqlstate = "23505"


class InvalidValueError(ServerError):
    """SQLSTATE class 22 (data exception): a value does not fit its type. Raised only where the caller
    expects it (``db.expecting``), e.g. a key given on the command line."""

    sqlstate = "22"


class LockNotAvailableError(ServerError):
    """SQLSTATE 55P03: a lock was not granted within ``lock_timeout`` (or NOWAIT). Raised only where the
    caller expects it (``db.expecting``): a whole-partition move then gives way to row batches."""

    sqlstate = "55P03"


class QueryCanceledError(ServerError):
    """SQLSTATE 57014: a statement ran past ``statement_timeout`` (or was cancelled). Raised only where
    the caller expects it (``db.expecting``)."""

    sqlstate = "57014"


class FeatureNotSupportedError(ServerError):
    """SQLSTATE 0A000: e.g. TRUNCATE of a table a foreign key references. Raised only where the caller
    expects it (``db.expecting``)."""

    sqlstate = "0A000"


class PartitionLayoutError(ServerError):
    """SQLSTATE 42P17 (invalid object definition): a partition's range overlaps another's. Raised only
    where the caller expects it (``db.expecting``): a partition then stays where it is."""

    sqlstate = "42P17"


class CheckViolationError(ServerError):
    """SQLSTATE 23514: e.g. a default partition already holds rows of a range a new partition would take.
    Raised only where the caller expects it (``db.expecting``)."""

    sqlstate = "23514"


class DatatypeMismatchError(ServerError):
    """SQLSTATE 42804: e.g. a table to attach lacks a column of the partitioned table or has another type.
    Raised only where the caller expects it (``db.expecting``)."""

    sqlstate = "42804"


class CollationMismatchError(ServerError):
    """SQLSTATE 42P21: a table to attach has a column of another collation. Raised only where the caller
    expects it (``db.expecting``)."""

    sqlstate = "42P21"


class DuplicateTableError(ServerError):
    """SQLSTATE 42P07: a table of that name exists. Raised only where the caller expects it."""

    sqlstate = "42P07"


class ServerRefusedError(ServerError):
    """The server refused a statement for a reason the operator must fix, not the data: translated for
    every statement (``db.translate``)."""


class PermissionDeniedError(ServerRefusedError):
    """SQLSTATE 42501: the role lacks a grant (docs/security.md lists them)."""

    sqlstate = "42501"


class ReadOnlyError(ServerRefusedError):
    """SQLSTATE 25006, or ``pg_is_in_recovery()``: a hot standby or a read-only database."""

    sqlstate = "25006"


class UndefinedTableError(SchemaError, ServerRefusedError):
    """SQLSTATE 42P01: a table the step needs does not exist (not migrated, or a wrong name)."""

    sqlstate = "42P01"


class UndefinedSchemaError(SchemaError, ServerRefusedError):
    """SQLSTATE 3F000: the configured schema does not exist."""

    sqlstate = "3F000"


class StorageError(ArchiverError):
    """Cold storage (a directory or S3) could not be read or written; the message names the object, not its data."""


class VerificationError(ArchiverError):
    """An export's files do not match its manifest or the database: nothing may be deleted on its strength."""

    def __init__(self, export_id: str, problems: list[str]) -> None:
        super().__init__(f"export {export_id} failed verification: " + "; ".join(problems[:5]))
        self.export_id = export_id
        self.problems = problems


class SlackError(ArchiverError):
    """The Slack webhook refused an alert or kept failing; the text names the HTTP status, never the URL."""
