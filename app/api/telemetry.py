"""The ASGI middleware behind metrics and the access log: each HTTP request timed and counted by route template,
named by a request id (kept in ``app.telemetry.logs.request_id_var`` while it is handled), and written as one
access line on ``refreshd.access``."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.telemetry.logs import request_id_var
from app.telemetry.metrics import UNMATCHED_ROUTE, Metrics

# Methods are client-written: anything else is one label, so a scanner cannot mint new series.
_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/auth/sessions/{session_id}``), never the raw path.

    Read after the app ran: the router records the match in the scope. A request no route matched (404,
    a 413 before routing, a CORS preflight) is ``<unmatched>``.
    """
    route = scope.get("route")
    if route is None:
        return UNMATCHED_ROUTE
    # FastAPI (>= 0.16x) keeps routers it includes, and scope["route"] is then the router's own route: its path
    # lacks a prefix given to include_router. The included path is in the match FastAPI records beside it.
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        effective = fastapi_scope.get("effective_route_context")
        if effective is not None and getattr(effective, "original_route", None) is route:
            included = getattr(effective, "path_format", None)
            if isinstance(included, str) and included:
                return included
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


def _method_label(scope: Scope) -> str:
    method = str(scope.get("method", ""))
    return method if method in _KNOWN_METHODS else "OTHER"


class MetricsMiddleware:
    """Times and counts every HTTP request by method, route template and the status actually sent.

    A request that raises counts as 500, even if its response had started: it did not complete.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None
        failed = False

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except BaseException:
            failed = True
            raise
        finally:
            elapsed = time.perf_counter() - started
            method, route = _method_label(scope), route_template(scope)
            final = 500 if failed or status is None else status
            self.metrics.count_request(method, route, final, elapsed)


REQUEST_ID_HEADER: Final = "X-Request-ID"

_HEADER_KEY: Final = REQUEST_ID_HEADER.lower().encode()
# What a proxy or client may name a request by; anything else (log injection, megabyte headers) is replaced.
_SANE_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CONTROL_CHARACTERS: Final = re.compile(r"[\x00-\x1f\x7f]")

access_logger = logging.getLogger("refreshd.access")


def incoming_request_id(scope: Scope) -> str | None:
    """The request's own ``X-Request-ID`` (the first one), if it is a sane value."""
    for name, value in scope.get("headers", ()):
        if name == _HEADER_KEY:
            text = value.decode("latin-1")
            return text if _SANE_REQUEST_ID.fullmatch(text) else None
    return None


def _printable(path: str) -> str:
    # The path is percent-decoded: an encoded newline must not start a forged line in text logs.
    return _CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", path)


def _peer_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


class RequestIdMiddleware:
    """Names each HTTP request, keeps the name in ``request_id_var`` while it is handled, returns it in
    ``X-Request-ID``, and writes one access line per request on ``refreshd.access``.

    The access line has the path without its query string: tokens travel in query strings (the
    email-confirmation code). ``client_ip`` maps the scope to the address to log; by default the direct peer.
    """

    def __init__(
        self, app: ASGIApp, *, client_ip: Callable[[Scope], str | None] | None = None
    ) -> None:
        self.app = app
        self.client_ip = client_ip or _peer_address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or os.urandom(16).hex()
        header = (_HEADER_KEY, request_id.encode("latin-1"))
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status: int | None = None
        failed = False

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [
                    (name, value)
                    for name, value in message.get("headers", ())
                    if name.lower() != _HEADER_KEY
                ]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            failed = True
            raise
        finally:
            self._log_access(
                scope, request_id, 500 if failed or status is None else status, started
            )
            if not failed:
                request_id_var.reset(token)
            # On an exception the id stays set: the server error handler outside this middleware and the
            # server's own traceback then still carry it. Servers run each request in a task of its own, so it
            # ends with the request.

    def _log_access(self, scope: Scope, request_id: str, status: int, started: float) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        method, path = str(scope.get("method", "")), _printable(str(scope.get("path", "")))
        access_logger.info(
            "%s %s %d %.1fms",
            method,
            path,
            status,
            duration_ms,
            extra={
                "method": method,
                "path": path,
                "route": route_template(scope),
                "status": status,
                "duration_ms": duration_ms,
                "client_ip": self.client_ip(scope),
                "request_id": request_id,
            },
        )
