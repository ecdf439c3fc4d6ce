"""Rate limits, keyed as Strapi keys them (koa2-ratelimit in ``users-permissions``), via the ``limits`` library.

Key: ``<identifier>:<path>:<ip>|<user id or ip>``, where the identifier is the lower-cased ``email`` of the body on
register, forgot-password and send-email-confirmation, and ``noIdentifier`` elsewhere. A fixed window starts at
the first hit; refused requests count too. In memory by default; in Redis when ``REDIS_URL`` is set, so every
instance shares one budget.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import RateLimitError
from app.settings import Settings

logger = logging.getLogger("refreshd.ratelimit")

NO_IDENTIFIER = "noIdentifier"
UNKNOWN_IDENTIFIER = "unknownIdentifier"
STATE_KEY = "rate_limit"


@dataclass(frozen=True)
class Budget:
    limit: int
    remaining: int
    reset: int  # epoch seconds at which the window ends
    retry_after: int  # whole seconds until then, at least 1

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


def _storage(settings: Settings) -> Storage:
    if not settings.redis_url:
        return MemoryStorage()
    url = settings.redis_url
    for scheme in ("rediss://", "redis://"):
        if url.startswith(scheme):
            url = "async+" + url
            break
    storage = storage_from_string(url, wrap_exceptions=True, key_prefix="refreshd")
    if not isinstance(storage, Storage):
        raise ValueError("REDIS_URL must be a redis:// or rediss:// URL")
    return storage


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit_enabled
        self.item = RateLimitItemPerSecond(
            settings.rate_limit_max,
            int(settings.rate_limit_interval.total_seconds()),
            namespace="refreshd",
        )
        self.storage = _storage(settings)
        self._strategy = FixedWindowRateLimiter(self.storage)

    async def hit(self, key: str) -> tuple[bool, Budget] | None:
        """Count one request; (allowed, budget left), or None when the store is unreachable."""
        try:
            allowed = await self._strategy.hit(self.item, key)
            stats = await self._strategy.get_window_stats(self.item, key)
        except (StorageError, ConnectionError, OSError, TimeoutError):
            # Failing open keeps logins possible while Redis is down; the outage is logged loudly.
            logger.error("rate-limit store unreachable; request let through", exc_info=True)
            return None
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        budget = Budget(
            self.item.amount, max(0, stats.remaining), math.ceil(stats.reset_time), retry_after
        )
        return allowed, budget

    async def reset(self) -> None:
        await self.storage.reset()


def _normalized_path(path: str) -> str:
    parts = [p for p in path.lower().split("/") if p and p != "."]
    return "/" + "/".join(parts)


async def _email_identifier(request: Request) -> str:
    try:
        body: Any = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return UNKNOWN_IDENTIFIER
    email = body.get("email") if isinstance(body, dict) else None
    return email.lower() if isinstance(email, str) and email else UNKNOWN_IDENTIFIER


async def enforce(
    request: Request,
    limiter: RateLimiter,
    *,
    ip: str | None,
    by_email: bool,
    user_id: int | None = None,
) -> None:
    if not limiter.enabled:
        return
    identifier = await _email_identifier(request) if by_email else NO_IDENTIFIER
    address = ip or "unknown"
    key = f"{identifier}:{_normalized_path(request.url.path)}:{address}|{user_id or address}"
    outcome = await limiter.hit(key)
    if outcome is None:
        return
    allowed, budget = outcome
    setattr(request.state, STATE_KEY, budget)
    if not allowed:
        raise RateLimitError(headers={**budget.headers(), "Retry-After": str(budget.retry_after)})


class RateLimitHeaders:
    """Adds ``X-RateLimit-*`` to every response of a rate-limited route, success or error."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                budget = scope.get("state", {}).get(STATE_KEY)
                if isinstance(budget, Budget):
                    headers = list(message.get("headers", []))
                    present = {name.lower() for name, _ in headers}
                    for name, value in budget.headers().items():
                        if name.lower().encode() not in present:
                            headers.append((name.lower().encode(), value.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
