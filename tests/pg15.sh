#!/usr/bin/env bash
# The database-touching suites (unit, integration, e2e, quick chaos) on PostgreSQL 15, an older
# major version managed services still run, beside the embedded 18 of `make test`. Debian's
# postgresql-15 is installed when missing (CI runs as root); the cluster lives in .data/pg15, is
# started on a free port on 127.0.0.1 for this run and stopped at the end, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=/usr/lib/postgresql/15/bin
DATA="$PWD/.data/pg15"

if [ ! -x "$BIN/initdb" ]; then
  apt-get install -y -q postgresql-15 || { apt-get update -q && apt-get install -y -q postgresql-15; }
fi
# initdb refuses to run as root: as root, the server runs as the package's `postgres` user.
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

mkdir -p "$DATA"
[ "$(id -u)" = 0 ] && chown postgres "$DATA" && chmod 700 "$DATA"
if [ ! -f "$DATA/PG_VERSION" ]; then
  as_owner "$BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --no-sync >/dev/null
fi
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Throwaway test data: durability off, as the embedded server's tests run it.
as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -s start \
  -o "-p $PORT -c listen_addresses=127.0.0.1 -k $DATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
trap 'as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w -s stop' EXIT
as_owner "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -Atqc "SELECT version()" | cut -d' ' -f1-2

export DATABASE_URL="postgresql://postgres@127.0.0.1:$PORT/postgres?sslmode=disable"
.venv/bin/pytest -q -m "not slow" tests/unit tests/integration tests/e2e tests/chaos "$@"
