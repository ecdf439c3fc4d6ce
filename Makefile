# One place for the commands the README, CI and the Dockerfile agree on.
UV ?= uv
export UV_PYTHON_DOWNLOADS := never
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup run migrate test lint typecheck check clean

setup:  ## install uv if needed, then the locked dependencies into .venv
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet "uv>=0.5"
	$(UV) sync --frozen

migrate: setup
	$(UV) run --frozen alembic upgrade head

run: migrate  ## serve on SQLite at http://$(HOST):$(PORT) with no configuration
	$(UV) run --frozen uvicorn --factory app.main:create_app --host $(HOST) --port $(PORT) --no-proxy-headers --loop asyncio

lint: setup
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

typecheck: setup
	$(UV) run --frozen mypy

test: setup  ## the whole suite, on SQLite and PostgreSQL
	$(UV) run --frozen pytest

check: lint typecheck test

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
