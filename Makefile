# Craftreel developer commands. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
PY ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

# Use the local PostgreSQL and Redis for the test suite when they answer.
PG_TEST_URL := postgresql+asyncpg://postgres@127.0.0.1:5432/test
REDIS_TEST_URL := redis://127.0.0.1:6379/15
CRAFTREEL_TEST_DATABASE_URL ?= $(shell $(PY) -c "import socket; s=socket.socket(); s.settimeout(0.5); print('$(PG_TEST_URL)' if s.connect_ex(('127.0.0.1', 5432)) == 0 else '')")
CRAFTREEL_TEST_REDIS_URL ?= $(shell $(PY) -c "import socket; s=socket.socket(); s.settimeout(0.5); print('$(REDIS_TEST_URL)' if s.connect_ex(('127.0.0.1', 6379)) == 0 else '')")
export CRAFTREEL_TEST_DATABASE_URL
export CRAFTREEL_TEST_REDIS_URL

.PHONY: install run test test-fast lint format typecheck e2e clean

$(UV):
	$(PY) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen
	$(UV) sync --frozen --reinstall-package craftreel
	touch $@

install: $(VENV)/.synced

# Embedded defaults: SQLite under var/, local disk media, mail written to var/mail/.
run: install
	CRAFTREEL_DEMO_MODE=true $(VENV)/bin/craftreel migrate
	CRAFTREEL_DEMO_MODE=true $(VENV)/bin/craftreel seed-demo
	CRAFTREEL_DEMO_MODE=true CRAFTREEL_LOG_JSON=false $(VENV)/bin/craftreel serve --host 127.0.0.1 --port 8000

# The whole suite: unit, API, both databases (when reachable) and the Chromium journeys.
test: install
	@echo "PostgreSQL: $${CRAFTREEL_TEST_DATABASE_URL:-not reachable, SQLite only}"
	@echo "Redis: $${CRAFTREEL_TEST_REDIS_URL:-not reachable, in-process only}"
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf .tools $(VENV) var .pytest_cache .mypy_cache .ruff_cache
