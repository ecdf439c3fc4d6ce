#!/bin/sh
# Start refreshd: bring the database schema up to date, then serve. The container's CMD.
# Settings come from the environment (see app/settings.py); PORT and FORWARDED_ALLOW_IPS tune uvicorn.
set -eu

# alembic.ini and migrations/ sit beside docker/.
cd "$(dirname "$0")/.."

alembic upgrade head

# exec: uvicorn replaces this shell, so it receives SIGTERM and shuts down gracefully.
# The access log is off: request logging is the application's job.
exec uvicorn --factory app.main:create_app \
    --host 0.0.0.0 \
    --port "${PORT:-8000}" \
    --proxy-headers \
    --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
    --no-access-log
