"""Metrics and structured logs: Prometheus counters on a per-app registry, request ids, one access line per
request, and a root logging setup (JSON or human-readable) that scrubs secrets from every record.

Wiring, in ``create_app`` (``add_middleware`` wraps, so the last one added runs first)::

    configure_logging(json=..., level=settings.log_level)       # instead of logging.basicConfig
    metrics = Metrics()                                          # one registry per app
    app.state.metrics = metrics
    ... RateLimitHeaders, BodySizeLimit, CORS (as now) ...
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)                      # outermost of ours

Nothing here imports the rest of the app: the domain counters take plain strings, and the callers say which.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Final, Literal, TextIO, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# --- Metrics --------------------------------------------------------------------------------------------------

UNMATCHED_ROUTE: Final = "<unmatched>"

LoginOutcome = Literal["success", "invalid_credentials", "blocked", "unconfirmed", "rate_limited"]
RefreshOutcome = Literal[
    "rotated",
    "reissued_in_grace",
    "not_rotated",  # rotation off: the presented token stays valid
    "invalid",
    "expired",
    "revoked",
    "reused",
    "session_expired",
    "user_blocked",
]
HashOperation = Literal["hash", "verify"]

LOGIN_OUTCOMES: Final[tuple[LoginOutcome, ...]] = get_args(LoginOutcome)
REFRESH_OUTCOMES: Final[tuple[RefreshOutcome, ...]] = get_args(RefreshOutcome)
HASH_OPERATIONS: Final[tuple[HashOperation, ...]] = get_args(HashOperation)
# The values of the sessions' revocation reasons; others may be counted, these are shown from the start at 0.
REVOCATION_REASONS: Final = (
    "logout",
    "logout_others",
    "logout_all",
    "revoked_by_user",
    "reuse_detected",
    "password_changed",
    "password_reset",
    "user_blocked",
    "admin",
)
# A refused refresh's ``details.code`` (the service's Rejection values) → its outcome label.
REFRESH_OUTCOME_BY_CODE: Final[Mapping[str, RefreshOutcome]] = {
    "REFRESH_TOKEN_INVALID": "invalid",
    "REFRESH_TOKEN_EXPIRED": "expired",
    "REFRESH_TOKEN_REVOKED": "revoked",
    "REFRESH_TOKEN_REUSED": "reused",
    "SESSION_EXPIRED": "session_expired",
    "USER_BLOCKED": "user_blocked",
}

# Health checks and token reads take a millisecond or two; logins pay for an argon2 verify (tens of ms) and
# failed ones are padded to the slowest hash an account may hold.
REQUEST_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
HASH_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)

# Methods are client-written: anything else is one label, so a scanner cannot mint new series.
_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)


class Metrics:
    """The service's metrics, on a registry of their own (several apps may live in one process).

    Without a registry, a new one is made and also gets the process, platform and GC collectors that the global
    default registry would have had (memory, CPU, open files). A registry passed in is used as it is.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self.registry = registry
        self.requests_total = Counter(
            "refreshd_http_requests",
            "HTTP requests by method, route template and final status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.request_duration_seconds = Histogram(
            "refreshd_http_request_duration_seconds",
            "Time from the request's arrival until its response was sent.",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.logins_total = Counter(
            "refreshd_logins", "Login attempts by outcome.", ["outcome"], registry=registry
        )
        self.refreshes_total = Counter(
            "refreshd_refreshes",
            "Refresh-token exchanges by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.sessions_revoked_total = Counter(
            "refreshd_sessions_revoked",
            "Sessions revoked, by reason.",
            ["reason"],
            registry=registry,
        )
        self.password_hash_seconds = Histogram(
            "refreshd_password_hash_seconds",
            "Password hashing and verification, including the wait for a pool thread.",
            ["operation"],
            buckets=HASH_BUCKETS,
            registry=registry,
        )
        self.rate_limit_store_up = Gauge(
            "refreshd_rate_limit_store_up",
            "1 while rate limits are counted in Redis (or no REDIS_URL is set), 0 while Redis is unreachable and "
            "this instance counts in its own memory.",
            registry=registry,
        )
        self.rate_limit_store_up.set(1)
        self.rate_limit_fallbacks_total = Counter(
            "refreshd_rate_limit_fallbacks",
            "Rate-limit checks counted in this instance's memory because Redis was unreachable.",
            registry=registry,
        )
        # Every known outcome is exported from the start (as 0), so rates and alerts see the first event.
        for outcome in LOGIN_OUTCOMES:
            self.logins_total.labels(outcome=outcome)
        self._refresh_children = {
            refresh_outcome: self.refreshes_total.labels(outcome=refresh_outcome)
            for refresh_outcome in REFRESH_OUTCOMES
        }
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        for reason in REVOCATION_REASONS:
            self.sessions_revoked_total.labels(reason=reason)
        for operation in HASH_OPERATIONS:
            self.password_hash_seconds.labels(operation=operation)

    def count_request(self, method: str, route: str, status: int, seconds: float) -> None:
        counted = self._request_children.get((method, route, status))
        if counted is None:
            # prometheus_client's labels() validates and locks on every call: each combination once (methods,
            # route templates and statuses are few).
            counted = (
                self.requests_total.labels(method=method, route=route, status=str(status)),
                self.request_duration_seconds.labels(method=method, route=route),
            )
            self._request_children[(method, route, status)] = counted
        counted[0].inc()
        counted[1].observe(seconds)

    def count_login(self, outcome: LoginOutcome) -> None:
        self.logins_total.labels(outcome=outcome).inc()

    def count_refresh(self, outcome: RefreshOutcome) -> None:
        self._refresh_children[outcome].inc()

    def count_revoked(self, reason: str, sessions: int = 1) -> None:
        """``sessions`` revoked at once for ``reason`` (a bulk revoke reports its row count; 0 counts nothing)."""
        if sessions > 0:
            self.sessions_revoked_total.labels(reason=reason).inc(sessions)

    def set_rate_limit_store_up(self, up: bool) -> None:
        self.rate_limit_store_up.set(1 if up else 0)

    def count_rate_limit_fallback(self) -> None:
        self.rate_limit_fallbacks_total.inc()

    def observe_password_hash(self, operation: HashOperation, seconds: float) -> None:
        self.password_hash_seconds.labels(operation=operation).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition (body, content type) for a ``/metrics`` response."""
        # generate_latest writes the classic text format, whose content type is version 0.0.4.
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


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


# --- Request ids and the access log ---------------------------------------------------------------------------

REQUEST_ID_HEADER: Final = "X-Request-ID"
request_id_var: ContextVar[str | None] = ContextVar("refreshd_request_id", default=None)

_HEADER_KEY: Final = REQUEST_ID_HEADER.lower().encode()
# What a proxy or client may name a request by; anything else (log injection, megabyte headers) is replaced.
_SANE_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CONTROL_CHARACTERS: Final = re.compile(r"[\x00-\x1f\x7f]")

access_logger = logging.getLogger("refreshd.access")


def current_request_id() -> str | None:
    """The id of the request being handled, or None outside one."""
    return request_id_var.get()


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


# --- Secret redaction ---------------------------------------------------------------------------------------------

REDACTED: Final = "[REDACTED]"

# Key names whose values are secrets: anything naming a password, secret or token, and the account codes.
_SENSITIVE_KEY: Final = (
    r"(?:[A-Za-z0-9_-]*(?:password|passwd|secret|token|jwt)[A-Za-z0-9_-]*|code|confirmation)"
)
_SENSITIVE_KEY_NAME: Final = re.compile(_SENSITIVE_KEY, re.IGNORECASE)
_QUOTED_VALUE: Final = r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
# key=value, key="value" (also query strings: ?code=...&...).
_KEY_EQUALS: Final = re.compile(
    rf"(?<![A-Za-z0-9_-])(?P<key>{_SENSITIVE_KEY})(?P<sep>\s*=\s*)"
    rf"(?P<value>{_QUOTED_VALUE}|[^\s&#,;\"'<>()\[\]{{}}=][^\s&#,;\"'<>()\[\]{{}}]*)",
    re.IGNORECASE,
)
# "key": "value", 'key': 'value', "key": 123 (JSON and Python reprs); true, false, null and None are no secrets.
_QUOTED_KEY: Final = re.compile(
    rf"(?P<key>(?P<q>[\"']){_SENSITIVE_KEY}(?P=q))(?P<sep>\s*:\s*)"
    rf"(?P<value>{_QUOTED_VALUE}|(?!(?:true|false|null|True|False|None)\b)[^\s,\]}})]+)",
    re.IGNORECASE,
)
_BEARER: Final = re.compile(r"\b(?P<scheme>Bearer)\s+[A-Za-z0-9._~+/-]+=*", re.IGNORECASE)
_JWT: Final = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def _redact_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match['key']}{match['sep']}{quote}{REDACTED}{quote}"


def redact(text: str) -> str:
    """``text`` with secrets replaced by ``[REDACTED]``: values of secret-named keys, bearer credentials, JWTs."""
    text = _KEY_EQUALS.sub(_redact_value, text)
    text = _QUOTED_KEY.sub(_redact_value, text)
    text = _BEARER.sub(lambda m: f"{m['scheme']} {REDACTED}", text)
    return _JWT.sub(REDACTED, text)


def _scrub(value: Any, key: object = None, depth: int = 0) -> Any:
    """A copy of ``value`` with its strings redacted and the values of secret-named keys replaced."""
    if (
        isinstance(key, str)
        and _SENSITIVE_KEY_NAME.fullmatch(key)
        and isinstance(value, str | bytes)  # not flags or counts, such as refresh_token=True
    ):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if depth >= 6:
        return value
    if isinstance(value, Mapping):
        return {k: _scrub(v, k, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v, None, depth + 1) for v in value)
    return value


_RECORD_ATTRIBUTES: Final = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}


class RedactSecrets(logging.Filter):
    """Scrubs secrets from a record: its message (after the arguments are merged in) and its extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "redaction_exempt", False):
            return True  # the development mailer's link, on purpose (never used in production)
        if isinstance(record.msg, Mapping) and not record.args:
            record.msg = _scrub(record.msg)  # a dict message (JSON logs show it as fields)
        else:
            try:
                message = record.getMessage()
            except Exception:
                # A broken format string: keep what there is, scrubbed, instead of letting the handler's
                # error report print the raw arguments.
                message = f"{record.msg} {record.args!r}"
            record.msg, record.args = redact(message), None
        for key, value in list(record.__dict__.items()):
            if key not in _RECORD_ATTRIBUTES:
                record.__dict__[key] = _scrub(value, key)
        return True


class RequestIdFilter(logging.Filter):
    """Gives every record a ``request_id`` (the current request's, or ``missing`` outside a request)."""

    def __init__(self, missing: str | None = None) -> None:
        super().__init__()
        self.missing = missing

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get() or self.missing
        return True


# --- Logging setup ------------------------------------------------------------------------------------------------

_HANDLER_NAME: Final = "refreshd"
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"
_SysExcInfo = (
    tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
)


class _TextFormatter(logging.Formatter):
    """Human-readable lines, redacted whole: tracebacks too (exception messages may quote input), even one
    another handler formatted first and cached on the record."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _redact_lines(text: str | list[str]) -> str | list[str]:
    return redact(text) if isinstance(text, str) else [redact(line) for line in text]


class _JsonFormatter(JsonFormatter):
    """One JSON object per line: timestamp, level, logger, message, request_id, then the extras."""

    def formatException(self, ei: _SysExcInfo) -> str | list[str]:  # type: ignore[override]
        return _redact_lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str | list[str]:  # type: ignore[override]
        return _redact_lines(super().formatStack(stack_info))

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_text and not record.exc_info:
            record.exc_text = redact(
                record.exc_text
            )  # only then is a traceback cached elsewhere shown
        return super().format(record)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        timestamp = log_data.pop("timestamp", None)
        return {"timestamp": timestamp, **log_data}


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to ``sys.stderr`` as it is at each record (test runners swap it), as ``logging.lastResort`` does."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(*, json: bool, level: str, stream: TextIO | None = None) -> None:
    """Send every log record, uvicorn's included, through one handler on the root logger.

    ``json``: one JSON object per line (production); otherwise a readable line. Both show the request id and
    have secrets redacted. Calling it again replaces the handler it installed (other handlers, such as a test
    runner's, are left alone). ``stream`` defaults to standard error.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    handler: logging.Handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    if json:
        handler.setFormatter(
            _JsonFormatter(
                ["levelname", "name", "message", "request_id"],
                rename_fields={"levelname": "level", "name": "logger"},
                # uvicorn's copy of its message with terminal colours has no place in JSON.
                reserved_attrs=[*RESERVED_ATTRS, "color_message"],
                timestamp=True,
            )
        )
    else:
        handler.setFormatter(_TextFormatter(_TEXT_FORMAT))
    # In this order: the request id is attached first, so the redaction sees every field.
    handler.addFilter(RequestIdFilter(missing=None if json else "-"))
    handler.addFilter(RedactSecrets())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        for own in list(logger.handlers):
            logger.removeHandler(own)
        logger.propagate = True
    # refreshd.access replaces uvicorn's access line, which has the query string and no request id.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
