"""The application factory: ``uvicorn --factory app.main:create_app`` builds it from the environment."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pydantic import ValidationError

from app.api import errors, openapi, swagger
from app.api.limits import BodySizeLimit
from app.api.metrics import metrics_endpoint, metrics_listener
from app.api.ratelimit import RateLimitHeaders
from app.api.routers import account, auth, health, keys, sessions, users
from app.clock import Clock, system_clock
from app.observability import Metrics, MetricsMiddleware, RequestIdMiddleware, configure_logging
from app.runtime import Runtime
from app.security.keys import KeySetError
from app.services.key_file import KeyFileWatcher, load_signing_keys
from app.services.purge import Purged, purge_all
from app.settings import Settings

logger = logging.getLogger("refreshd")
# Net allocations between two collections of the garbage collector's youngest generation (Python's default: 700).
YOUNG_COLLECTION_THRESHOLD = 10_000


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock) -> FastAPI:
    """Build the app. Nothing connects here: the lifespan opens the database and the hashing pool."""
    settings = settings or settings_from_environment()
    configure_logging(json=settings.json_logs, level=settings.log_level)
    settings = settings.with_development_secrets()
    try:
        signing = load_signing_keys(settings)
    except KeySetError as exc:
        raise SystemExit(f"refreshd: invalid configuration: {exc}") from None
    if signing is not None:
        _ignore_hangups()  # until the lifespan listens: a SIGHUP sent for a reload must never stop the server
    metrics = Metrics()
    metrics_route = (
        metrics_endpoint(metrics, settings.metrics_token) if settings.metrics_served else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as own_port:
            if metrics_route is not None and settings.metrics_port is not None:
                # First: a port that cannot be had stops the start before anything else is opened.
                await own_port.enter_async_context(
                    metrics_listener(metrics_route, settings.metrics_host, settings.metrics_port)
                )
            runtime = Runtime.start(settings, clock, metrics, signing)
            app.state.runtime = runtime
            if settings.environment != "test":
                _tune_garbage_collector()
            purger = asyncio.create_task(purge_periodically(runtime), name="refreshd-purge")
            if signing is not None:
                metrics.set_signing_kid(signing.keys[0].kid)
                watcher = KeyFileWatcher(
                    settings, runtime.transport.keys, signing, metrics.count_key_reload
                )
                app.state.key_watcher = watcher  # for tests that change the file in-process
                own_port.enter_context(_reload_on_hangup(watcher))
                own_port.push_async_callback(
                    _cancelled, asyncio.create_task(watcher.run(), name="refreshd-keys")
                )
            logger.info(
                "refreshd ready (%s, database %s)", settings.environment, _safe_url(settings)
            )
            try:
                yield
            finally:
                purger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purger
                await runtime.stop()

    app = FastAPI(
        title="refreshd",
        summary="Strapi-compatible local auth with refresh tokens, sessions and logout.",
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's own /docs and /redoc load their files from a CDN: app.api.swagger serves /docs itself.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_url=openapi.OPENAPI_URL if settings.docs_served else None,
    )
    errors.install(app)
    _add_middleware(app, settings, metrics)
    _add_routes(app, settings, metrics_route)
    openapi.install(app, settings)
    if settings.docs_served:
        swagger.add_docs_routes(app, openapi.OPENAPI_URL)
    return app


def _add_middleware(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_size)
    if settings.allowed_origins:
        # Credentials (the refresh cookie) only for the configured origins, never a wildcard.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "DELETE"],
            # X-Strapi-Refresh-Cookie: Strapi core's session-mode clients ask for the cookie with it.
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-Request-ID",
                "X-Strapi-Refresh-Cookie",
            ],
            expose_headers=["X-Request-ID"],
            max_age=600,
        )
    # Outermost last: every response, 413s and preflights included, is counted, timed and given an id.
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    app.state.metrics = metrics


def _add_routes(app: FastAPI, settings: Settings, metrics_route: Any) -> None:
    # The two hottest routes are the app's own, matched before the included routers: FastAPI matches an included
    # router's routes twice per request, each at several times the cost of a route of the app's own
    # (bench/results/2026-11-29-reference-emulated.md).
    auth.add_refresh_routes(app.router)
    users.add_me_route(app.router)
    app.include_router(auth.router)
    app.include_router(account.router)
    app.include_router(sessions.router)
    app.include_router(keys.router)
    app.include_router(health.router)
    if metrics_route is not None and settings.metrics_port is None:
        app.add_api_route("/metrics", metrics_route, methods=["GET"], include_in_schema=False)
        if settings.environment == "production" and settings.metrics_token is None:
            logger.warning(
                "/metrics is served without METRICS_TOKEN (METRICS_ENABLED=true): "
                "keep it off the public side with a network rule"
            )


def _tune_garbage_collector() -> None:
    """Move what startup built (modules, routes, compiled statements) out of the garbage collector's reach: full
    collections then scan only what requests allocate, instead of stalling the event loop over everything
    (bench/results/2026-11-28-hot-path.md). Tests build many apps in one process and skip this: frozen objects are
    never collected.

    Then collect the youngest generation every 10 000 net allocations instead of every 700: young collections were
    a visible share of a refresh's CPU (bench/results/ab.md). Garbage in reference cycles waits a little longer;
    the rest is freed at once, as ever."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])


def settings_from_environment() -> Settings:
    """Settings from the environment; a bad configuration stops the process with a readable reason."""
    try:
        return Settings()
    except ValidationError as exc:
        reasons = "; ".join(
            (f"{'.'.join(str(p) for p in error['loc']).upper()}: " if error["loc"] else "")
            + str(error["msg"]).removeprefix("Value error, ")
            for error in exc.errors()
        )
        raise SystemExit(f"refreshd: invalid configuration: {reasons}") from None


@contextlib.contextmanager
def _reload_on_hangup(watcher: KeyFileWatcher) -> Iterator[None]:
    """SIGHUP rereads the signing keys at once. Only where the loop may take signals (the main thread of a
    server process); elsewhere the file is still watched."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, watcher.wake.set)
    except (RuntimeError, ValueError, NotImplementedError):
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        _ignore_hangups()  # not the default back: a reload's SIGHUP during shutdown must not cut it short


def _ignore_hangups() -> None:
    with contextlib.suppress(
        ValueError
    ):  # only the main thread may set handlers; elsewhere there is nothing to do
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def purge_periodically(runtime: Runtime) -> None:
    """Delete dead sessions every SESSION_PURGE_INTERVAL; a failed round is logged and retried next time."""
    while True:
        await asyncio.sleep(runtime.settings.session_purge_interval.total_seconds())
        try:
            purged = await purge_once(runtime)
            if purged.sessions or purged.codes or purged.audit_events:
                logger.info(
                    "purged %d sessions, %d codes, %d audit events",
                    purged.sessions,
                    purged.codes,
                    purged.audit_events,
                )
        except Exception:
            logger.exception("session purge failed; retrying at the next interval")


async def purge_once(runtime: Runtime) -> Purged:
    """One purge round inside the server: batches go through the store, beside the requests."""
    settings = runtime.settings
    return await purge_all(
        runtime.store.write_alone,
        now=runtime.clock(),
        access_ttl=settings.jwt_expires_in,
        audit_retention=settings.audit_retention,
        batch_size=settings.session_purge_batch,
    )


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url).render_as_string(hide_password=True)
