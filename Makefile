# One place for the commands the README, CI and the Dockerfile agree on.
#
# Needs Python 3.11, 3.12 or 3.13 as python3 (pyproject's requires-python). uv is taken from PATH; without it, it
# is installed into .tools/, a venv of this checkout's own: PEP 668 refuses `pip install` into the system Python
# of Debian 12 and Ubuntu 24.04, and a venv is where it allows it (Debian needs the python3-venv package).
TOOLS := .tools
UV ?= $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
export UV_PYTHON_DOWNLOADS := never
HOST ?= 127.0.0.1
PORT ?= 8000
# `uv run` would otherwise install the dev tools into the environment `make run` keeps to the runtime.
RUN := $(UV) run --frozen --no-sync

.PHONY: runtime setup run migrate test lint typecheck check env-example clean

$(TOOLS)/bin/uv:
	@python3 -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' || \
		{ echo "make: refreshd needs Python 3.11 to 3.13 as python3" >&2; exit 1; }
	@python3 -m venv $(TOOLS) || \
		{ echo "make: python3 -m venv failed: install python3-venv (apt-get install python3-venv)" >&2; exit 1; }
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv>=0.5"

runtime: $(if $(filter $(TOOLS)/bin/uv,$(UV)),$(TOOLS)/bin/uv)  ## the runtime dependencies only, into .venv
	$(UV) sync --frozen --no-dev --inexact

setup: $(if $(filter $(TOOLS)/bin/uv,$(UV)),$(TOOLS)/bin/uv)  ## the runtime and the dev tools (tests, linters)
	$(UV) sync --frozen

migrate: runtime
	$(RUN) refreshd migrate

run: migrate  ## serve on SQLite at http://$(HOST):$(PORT) with no configuration (HOST=0.0.0.0 PORT=9000 make run)
	$(RUN) uvicorn --factory app.main:create_app --host $(HOST) --port $(PORT) --no-proxy-headers --loop asyncio

lint: setup
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: setup
	$(RUN) mypy

test: setup  ## the whole suite, on SQLite and PostgreSQL
	$(RUN) pytest

check: lint typecheck test

env-example: runtime  ## rewrite .env.example from app/settings.py
	$(RUN) python -m app.config.env_example

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache $(TOOLS)
