#!/usr/bin/env bash
# The floors in pyproject.toml are true: every runtime dependency at the lowest version it allows (uv's
# lowest-direct resolution), the dev tools as locked, in a venv of its own (the checkout's .venv and uv.lock are
# left alone), then the API suite. Extra arguments go to pytest (default: tests/api).
#
#   tools/lowest-direct.sh                  # CI
#   tools/lowest-direct.sh tests/api/test_login.py -x
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python="${LOWEST_PYTHON:-3.11}"  # the lowest Python requires-python allows

uv pip compile pyproject.toml --resolution lowest-direct --python-version "$python" -q -o "$work/runtime.txt"
uv export --frozen --only-group dev --no-hashes --no-emit-project -q -o "$work/dev.txt"
uv venv -q --python "$python" "$work/venv"
# The runtime's pins win over the dev tools' (a dev tool depending on pydantic, say, gets the floor's pydantic).
VIRTUAL_ENV="$work/venv" uv pip install -q -r "$work/runtime.txt" -r "$work/dev.txt" --override "$work/runtime.txt"
VIRTUAL_ENV="$work/venv" uv pip install -q --no-deps -e .
echo "lowest-direct:" $(grep -E '^(fastapi|starlette|pydantic|pydantic-settings|sqlalchemy|uvicorn|limits|alembic)==' "$work/runtime.txt")
if [ "$#" -eq 0 ]; then set -- tests/api; fi
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
