"""Typed errors of the core; the CLI maps them to exit codes and the REST API to HTTP codes."""

from __future__ import annotations


class ArchiverError(Exception):
    """Base of every error the core raises on purpose."""


class ConfigError(ArchiverError):
    """Configuration (environment, policy file, CLI flags) is invalid."""


class IdentifierError(ConfigError, ValueError):
    """A table or column name is not acceptable as a PostgreSQL identifier."""


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


class StorageError(ArchiverError):
    """Cold storage (a directory or S3) could not be read or written; the message names the object, not its data."""


class VerificationError(ArchiverError):
    """An export's files do not match its manifest or the database: nothing may be deleted on its strength."""

    def __init__(self, export_id: str, problems: list[str]) -> None:
        super().__init__(f"export {export_id} failed verification: " + "; ".join(problems[:5]))
        self.export_id = export_id
        self.problems = problems
