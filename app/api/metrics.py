"""``/metrics`` for Prometheus: on the service's own port, behind a bearer token when ``METRICS_TOKEN`` is set, or
alone on a port of its own (``METRICS_PORT``) that a network rule keeps private."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.api import errors, transport
from app.errors import UnauthorizedError
from app.observability import Metrics

logger = logging.getLogger("refreshd.metrics")
Endpoint = Callable[[Request], Awaitable[Response]]


def metrics_endpoint(metrics: Metrics, token: SecretStr | None) -> Endpoint:
    """The Prometheus exposition; with a token, only for ``Authorization: Bearer <token>``."""

    async def prometheus_metrics(request: Request) -> Response:
        if token is not None and not transport.bearer_matches(request, token):
            return errors.render(
                UnauthorizedError(headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
            )
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return prometheus_metrics


def metrics_only_app(endpoint: Endpoint) -> Starlette:
    """What ``METRICS_PORT`` serves: ``GET /metrics`` and nothing else."""
    return Starlette(routes=[Route("/metrics", endpoint, methods=["GET"])])


@asynccontextmanager
async def metrics_listener(endpoint: Endpoint, host: str, port: int) -> AsyncIterator[None]:
    """Serve ``endpoint`` on ``host:port`` with uvicorn, in this process and event loop, for as long as the
    context lasts. uvicorn's ``serve()`` would install signal handlers of its own over the main server's, so
    the listener is driven by its startup, main loop and shutdown directly."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise RuntimeError(
            f"METRICS_PORT: cannot listen on {host}:{port} ({exc.strerror or exc})"
        ) from None
    config = uvicorn.Config(
        metrics_only_app(endpoint),
        lifespan="off",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    try:
        await server.startup(sockets=[sock])
    except BaseException:
        sock.close()
        raise
    ticking = asyncio.create_task(server.main_loop(), name="refreshd-metrics")
    logger.info("serving /metrics on %s:%d", host, port)
    try:
        yield
    finally:
        server.should_exit = True
        await ticking
        await server.shutdown(sockets=[sock])
