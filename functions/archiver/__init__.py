"""Core of the archiver: policy, database access, schema, job state and the archiving engine.

Every entry point (CLI, local runner, Lambda handlers) goes through this package.
"""

__version__ = "0.1.0"
