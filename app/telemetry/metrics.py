"""The service's Prometheus metrics on a registry of their own, and the label values they are shown with.

The domain counters take plain strings: callers say which outcome or reason, and nothing here imports the rest
of the app.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, get_args

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

# From health checks and token reads up to logins, which pay for an argon2 verify (failed ones padded to the
# slowest hash an account may hold); the latencies they span: bench/README.md.
REQUEST_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
HASH_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The service's metrics, on a registry of their own (several apps may live in one process).

    Without a registry, a new one is made and also gets the process, platform and GC collectors that the global
    default registry would have had (memory, CPU, open files). A registry passed in is used as it is.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = _process_registry() if registry is None else registry
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
        self.signing_key_reloads_total = Counter(
            "refreshd_signing_key_reloads",
            "Rereads of JWT_SIGNING_KEYS_FILE that changed the keys in use (loaded) or were refused (refused: the "
            "file did not load, the keys in use stay; see the log).",
            ["outcome"],
            registry=registry,
        )
        self.signing_key_info = Gauge(
            "refreshd_signing_key_info",
            "1 for the kid that signs this instance's access tokens (ES256/RS256): instances sharing a key file "
            "should agree.",
            ["kid"],
            registry=registry,
        )
        self._refresh_children = {
            refresh_outcome: self.refreshes_total.labels(outcome=refresh_outcome)
            for refresh_outcome in REFRESH_OUTCOMES
        }
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._export_known_labels()

    def _export_known_labels(self) -> None:
        """Every known outcome, reason and operation, exported from the start (as 0), so that rates and alerts
        see the first event."""
        for outcome in LOGIN_OUTCOMES:
            self.logins_total.labels(outcome=outcome)
        for reason in REVOCATION_REASONS:
            self.sessions_revoked_total.labels(reason=reason)
        for operation in HASH_OPERATIONS:
            self.password_hash_seconds.labels(operation=operation)
        for reload_outcome in ("loaded", "refused"):
            self.signing_key_reloads_total.labels(outcome=reload_outcome)

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

    def count_key_reload(self, signing_kid: str | None) -> None:
        """A reread of the key file: ``signing_kid`` of the keys now in use, or None when it was refused."""
        if signing_kid is None:
            self.signing_key_reloads_total.labels(outcome="refused").inc()
            return
        self.signing_key_reloads_total.labels(outcome="loaded").inc()
        self.set_signing_kid(signing_kid)

    def set_signing_kid(self, kid: str) -> None:
        self.signing_key_info.clear()
        self.signing_key_info.labels(kid=kid).set(1)

    def observe_password_hash(self, operation: HashOperation, seconds: float) -> None:
        self.password_hash_seconds.labels(operation=operation).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition (body, content type) for a ``/metrics`` response."""
        # generate_latest writes the classic text format, whose content type is version 0.0.4.
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


def _process_registry() -> CollectorRegistry:
    """A new registry with the process, platform and GC collectors the global default registry would have had."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
