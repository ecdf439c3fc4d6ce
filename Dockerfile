# syntax=docker/dockerfile:1
# refreshd: a small image with the locked dependencies in /opt/venv, run as a non-root user.
#   docker build -t refreshd .
#   docker run -p 8000:8000 -v refreshd-data:/data \
#     -e JWT_SECRET=... -e REFRESH_JWT_SECRET=... refreshd
# In production (the default here) the service refuses to start without two different secrets of
# at least 32 bytes each. compose.yaml runs it with PostgreSQL and Redis. tests/system/test_container.py
# builds this file unchanged with buildah and runs the image (README, "Container").

FROM python:3.11-slim AS builder

ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"

WORKDIR /src
COPY docker/install.sh docker/install.sh

# Dependencies first: this layer is rebuilt only when the lock (or the install script) changes.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv sh docker/install.sh deps

# Then the service itself, installed as a regular (non-editable) package: the source tree stays here.
COPY app/ app/
RUN --mount=type=cache,target=/root/.cache/uv sh docker/install.sh project \
    && sh docker/install.sh trim


FROM python:3.11-slim

# A fixed numeric id, so that orchestrators can check runAsNonRoot.
RUN groupadd --system --gid 10001 refreshd \
    && useradd --system --uid 10001 --gid refreshd --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin refreshd \
    && mkdir /data \
    && chown refreshd:refreshd /data

COPY --from=builder /opt/venv /opt/venv

# Code and migrations belong to root: the service can read them but not change them.
WORKDIR /app
COPY alembic.ini ./
COPY migrations/ migrations/
COPY --chmod=0755 docker/entrypoint.sh docker/entrypoint.sh

# DEV_SECRETS_FILE is a path, not a secret (production never writes it).
# hadolint ignore=DL3064
ENV PATH=/opt/venv/bin:$PATH \
    ENVIRONMENT=production \
    DATABASE_URL=sqlite+aiosqlite:////data/refreshd.db \
    DEV_SECRETS_FILE=/data/.refreshd-secrets.json \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

VOLUME ["/data"]
USER 10001:10001
EXPOSE 8000

# No curl in slim images: ask with the standard library. Honours PORT like the entrypoint does.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

# Migrates the database, then execs uvicorn (PID 1, so SIGTERM from `docker stop` reaches it).
CMD ["/app/docker/entrypoint.sh"]
