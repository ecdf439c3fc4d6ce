#!/bin/sh
# Install refreshd's locked runtime dependencies, then refreshd itself, into a virtual environment.
# The Dockerfile's RUN lines call this, and tests/system/test_container.py runs the very same commands.
#
#   sh docker/install.sh deps      # only pyproject.toml, uv.lock and README.md are needed
#   sh docker/install.sh project   # then app/ too; installed non-editable
#   sh docker/install.sh trim      # then drop from the venv what the service never imports
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
    trim)
        # Locked, but never imported by the service: python-jose's pure-Python key backends (it signs with
        # the cryptography backend; ecdsa also carries an unfixed timing advisory).
        # tests/system/test_container.py checks they are gone and that the service still imports whole.
        uv pip uninstall --python "$UV_PROJECT_ENVIRONMENT/bin/python" ecdsa rsa pyasn1
        # Sources and headers that wheels ship beside their compiled modules, and the libraries' own test
        # suites (SQLAlchemy's is loaded only by its test plugin, with the dialects' provision modules).
        site="$("$UV_PROJECT_ENVIRONMENT/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
        find "$site" -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pyi' -o -name '*.c' -o -name '*.cpp' \
            -o -name '*.h' \) -delete
        rm -rf "$site/sqlalchemy/testing" "$site/alembic/testing" "$site/mako/testing" "$site/aiosqlite/tests" \
            "$site/certifi/tests" "$site"/sqlalchemy/dialects/*/provision.py \
            "$site"/sqlalchemy/dialects/*/__pycache__/provision.*.pyc
        ;;
    *)
        echo "usage: sh docker/install.sh deps|project|trim" >&2
        exit 2
        ;;
esac
