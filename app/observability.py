"""Metrics and structured logs: Prometheus counters on a per-app registry, request ids, one access line per
request, and a root logging setup (JSON or human-readable) that scrubs secrets from every record.

This module is the front door: the parts live in ``app.telemetry.metrics`` (the registry and its labels),
``app.telemetry.redaction`` and ``app.telemetry.logs`` (log records), and ``app.api.telemetry`` (the ASGI
middleware, in the transport layer with the rest of HTTP); every name is importable from here.

Wiring, in ``create_app`` (``add_middleware`` wraps, so the last one added runs first)::

    configure_logging(json=..., level=settings.log_level)       # instead of logging.basicConfig
    metrics = Metrics()                                          # one registry per app
    app.state.metrics = metrics
    ... RateLimitHeaders, BodySizeLimit, CORS (as now) ...
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)                      # outermost of ours

None of it imports the app's domain: the domain counters take plain strings, and the callers say which.
"""

from __future__ import annotations

from app.api.telemetry import (
    REQUEST_ID_HEADER,
    MetricsMiddleware,
    RequestIdMiddleware,
    access_logger,
    incoming_request_id,
    route_template,
)
from app.telemetry.logs import (
    RequestIdFilter,
    configure_logging,
    current_request_id,
    request_id_var,
)
from app.telemetry.metrics import (
    HASH_BUCKETS,
    HASH_OPERATIONS,
    LOGIN_OUTCOMES,
    REFRESH_OUTCOME_BY_CODE,
    REFRESH_OUTCOMES,
    REQUEST_BUCKETS,
    REVOCATION_REASONS,
    UNMATCHED_ROUTE,
    HashOperation,
    LoginOutcome,
    Metrics,
    RefreshOutcome,
)
from app.telemetry.redaction import REDACTED, RedactSecrets, redact

__all__ = [
    "HASH_BUCKETS",
    "HASH_OPERATIONS",
    "LOGIN_OUTCOMES",
    "REDACTED",
    "REFRESH_OUTCOMES",
    "REFRESH_OUTCOME_BY_CODE",
    "REQUEST_BUCKETS",
    "REQUEST_ID_HEADER",
    "REVOCATION_REASONS",
    "UNMATCHED_ROUTE",
    "HashOperation",
    "LoginOutcome",
    "Metrics",
    "MetricsMiddleware",
    "RedactSecrets",
    "RefreshOutcome",
    "RequestIdFilter",
    "RequestIdMiddleware",
    "access_logger",
    "configure_logging",
    "current_request_id",
    "incoming_request_id",
    "redact",
    "request_id_var",
    "route_template",
]
