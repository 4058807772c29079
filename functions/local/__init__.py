"""The local edge: the ``archiver`` CLI, the local API server, the local runner, demo data, the
embedded PostgreSQL and the signing proxy. It imports the core and the handlers; neither imports
it, and the Lambda asset does not hold it."""
