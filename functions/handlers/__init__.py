"""Lambda entry points: thin wiring over the ``archiver`` core."""
