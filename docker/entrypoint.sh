#!/bin/sh
# Start refreshd: bring the database schema up to date, then serve. The container's CMD.
# Settings come from the environment (see app/settings.py); PORT tunes uvicorn. Behind a proxy, set
# TRUSTED_PROXIES: the application, not uvicorn, decides when X-Forwarded-For is believed.
set -eu

# alembic.ini and migrations/ sit beside docker/.
cd "$(dirname "$0")/.."

# Settings first: a container missing its secrets (or with any other bad setting) stops here, in one line, before
# it touches the database, rather than migrating it and then refusing to serve.
python -c 'from app.main import settings_from_environment; settings_from_environment()'

# Several containers may start at once on one PostgreSQL: migrations/env.py makes them take turns.
alembic upgrade head

# exec: uvicorn replaces this shell, so it receives SIGTERM and shuts down gracefully.
# The access log is off: request logging is the application's job. The loop is asyncio's: see app/serving.py.
exec uvicorn --factory app.main:create_app \
    --host 0.0.0.0 \
    --port "${PORT:-8000}" \
    --no-proxy-headers \
    --no-access-log \
    --loop asyncio
