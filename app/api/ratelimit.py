"""Rate limits on the ``limits`` library: Strapi's budget, and the budgets a varied email or address cannot dodge.

Every budget is a fixed window that starts at its first hit (as koa2-ratelimit's, which Strapi uses):

- Strapi's key, ``<identifier>:<path>:<address>|<user id or address>``: the identifier is the lower-cased ``email``
  of the body on register, forgot-password and send-email-confirmation, ``noIdentifier`` elsewhere. Its numbers are
  the ones the ``X-RateLimit-*`` headers of an allowed request describe.
- per route and address alone (register, forgot-password, send-email-confirmation; on login and reset-password
  Strapi's key already is that), per route and mailbox across addresses (the email without a "+tag"
  sub-address, so victim+1@x.com and victim+2@x.com share victim@x.com's budget), per user across addresses
  (change-password);
- per account for login attempts across addresses (``login_attempt``): tiers of growing windows keyed on the
  normalized identifier, so an unknown identifier is counted exactly like a known one. An address where the
  account logged in successfully is exempt, so an attacker slows the account's guessing, never its owner.

An IPv6 client counts by its network (``RATE_LIMIT_IPV6_PREFIX``, /64): one host holds 2^64 addresses.
In memory by default; in Redis with ``REDIS_URL``, shared by every instance. While Redis is unreachable, each
instance counts in its own memory (logged and counted in metrics), and tries Redis again every
``SHARED_RETRY_SECONDS``. The memory store reads the app's clock, so tests move its windows without sleeping.

Here: which budgets a route's request is counted against (``enforce``) and the headers that report them
(``RateLimitHeaders``). The budgets and the limiter are in ``app.api.ratelimit_budgets``, where they are counted
in ``app.api.ratelimit_storage``; every name is re-exported from here.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from limits import RateLimitItem
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.ratelimit_budgets import (
    KNOWN_ADDRESS_SECONDS,
    SHARED_RETRY_SECONDS,
    AccountAttempt,
    RateLimiter,
    client_network,
    digest,
    encodable,
    mailbox,
    normalized,
)
from app.api.ratelimit_storage import (
    REDIS_TIMEOUT_SECONDS,
    STORE_ERRORS,
    Budget,
    ClockedMemoryStorage,
    Store,
    redis_storage,
)

__all__ = [
    "KNOWN_ADDRESS_SECONDS",
    "NO_IDENTIFIER",
    "REDIS_TIMEOUT_SECONDS",
    "SHARED_RETRY_SECONDS",
    "STATE_KEY",
    "STORE_ERRORS",
    "UNKNOWN_IDENTIFIER",
    "AccountAttempt",
    "Budget",
    "ClockedMemoryStorage",
    "RateLimitHeaders",
    "RateLimiter",
    "Store",
    "client_network",
    "enforce",
    "mailbox",
    "normalized",
    "redis_storage",
]

NO_IDENTIFIER = "noIdentifier"
UNKNOWN_IDENTIFIER = "unknownIdentifier"
STATE_KEY = "rate_limit"


def _normalized_path(path: str) -> str:
    parts = [p for p in path.lower().split("/") if p and p != "."]
    return "/" + "/".join(parts)


async def _email_of(request: Request) -> str | None:
    try:
        body: Any = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None
    email = body.get("email") if isinstance(body, dict) else None
    return email if isinstance(email, str) and email else None


async def enforce(
    request: Request,
    limiter: RateLimiter,
    *,
    ip: str | None,
    by_email: bool,
    user_id: int | None = None,
) -> None:
    """Strapi's budget for this route, plus the route's own: with ``by_email``, per address and per email; with
    ``user_id``, per user across addresses."""
    if not limiter.enabled:
        return
    path = _normalized_path(request.url.path)
    address = client_network(ip, limiter.ipv6_prefix)
    email = await _email_of(request) if by_email else None
    identifier = (
        (encodable(email.lower()) if email else UNKNOWN_IDENTIFIER) if by_email else NO_IDENTIFIER
    )
    budgets: list[tuple[RateLimitItem, tuple[str, ...]]] = [
        (limiter.item, (f"{identifier}:{path}:{address}|{user_id or address}",))
    ]
    if by_email:
        budgets.append((limiter.item, ("address", path, address)))
        if email:  # without one the body is refused anyway, and no mailbox is at stake
            inbox = digest(mailbox(email))
            budgets += [(item, ("email", path, inbox)) for item in limiter.email_items]
    if user_id is not None:
        budgets.append((limiter.item, ("user", path, str(user_id))))
    setattr(request.state, STATE_KEY, await limiter.hit(budgets))


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
