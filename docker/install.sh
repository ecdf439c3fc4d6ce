#!/bin/sh
# Install refreshd's locked runtime dependencies, then refreshd itself, into a virtual environment.
# The Dockerfile's RUN lines call this, and tests/system/test_container.py runs the very same commands.
#
#   sh docker/install.sh deps      # only pyproject.toml, uv.lock and README.md are needed
#   sh docker/install.sh project   # then app/ too; installed non-editable
#
# Run it from the source directory. The venv goes to $UV_PROJECT_ENVIRONMENT (default /opt/venv).
set -eu

UV_PROJECT_ENVIRONMENT="${UV_PROJECT_ENVIRONMENT:-/opt/venv}"
export UV_PROJECT_ENVIRONMENT
# Use the interpreter that is there; never fetch one.
export UV_PYTHON_DOWNLOADS=never
# Compile at install time: the image's files are read-only to the service user.
export UV_COMPILE_BYTECODE="${UV_COMPILE_BYTECODE:-1}"
# The uv cache may be a mount on another filesystem, where hard links fail.
export UV_LINK_MODE="${UV_LINK_MODE:-copy}"

case "${1:-}" in
    deps)
        uv sync --frozen --no-dev --no-install-project
        ;;
    project)
        uv sync --frozen --no-dev --no-editable
        ;;
    *)
        echo "usage: sh docker/install.sh deps|project" >&2
        exit 2
        ;;
esac
