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
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address, ip_network
from typing import Any, TypeVar

from fastapi import Request
from limits import RateLimitItem, RateLimitItemPerSecond, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.clock import Clock, system_clock
from app.errors import RateLimitError
from app.observability import Metrics
from app.settings import Settings

logger = logging.getLogger("refreshd.ratelimit")

NO_IDENTIFIER = "noIdentifier"
UNKNOWN_IDENTIFIER = "unknownIdentifier"
STATE_KEY = "rate_limit"
# How long an instance counts in memory after Redis failed before it tries Redis again (on the app's clock).
SHARED_RETRY_SECONDS = 5.0
# An address where an account logged in successfully stays exempt from its attempt budget this long after the
# latest success there.
KNOWN_ADDRESS_SECONDS = 30 * 24 * 3600
# A Redis that does not answer must not hold requests for long: the memory budgets take over.
REDIS_TIMEOUT_SECONDS = 1.0
STORE_ERRORS = (StorageError, ConnectionError, OSError, TimeoutError)

T = TypeVar("T")


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

    def refusal(self) -> RateLimitError:
        return RateLimitError(headers={**self.headers(), "Retry-After": str(self.retry_after)})


class ClockedMemoryStorage(Storage):
    """``limits``' fixed-window storage contract in this process's memory, on the app's clock (``limits``' own
    memory storage reads ``time.time()``, which a test cannot move). Expired counters go on the next look-up, and
    all of them every ``SWEEP_EVERY`` increments, so memory stays bounded by the keys of live windows."""

    STORAGE_SCHEME = None
    SWEEP_EVERY = 1024

    def __init__(self, now: Callable[[], float]) -> None:
        super().__init__()
        self._now = now
        self._counts: dict[str, int] = {}
        self._expiries: dict[str, float] = {}
        self._increments = 0

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    def _expire(self, key: str) -> None:
        if self._expiries.get(key, 0.0) <= self._now():
            self._counts.pop(key, None)
            self._expiries.pop(key, None)

    def _sweep(self) -> None:
        now = self._now()
        for key in [k for k, at in self._expiries.items() if at <= now]:
            self._counts.pop(key, None)
            self._expiries.pop(key, None)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        # No await between the read and the write: atomic on the event loop.
        self._increments += 1
        if self._increments % self.SWEEP_EVERY == 0:
            self._sweep()
        self._expire(key)
        count = self._counts.get(key, 0) + amount
        self._counts[key] = count
        if count == amount:
            self._expiries[key] = self._now() + expiry
        return count

    async def get(self, key: str) -> int:
        self._expire(key)
        return self._counts.get(key, 0)

    async def get_expiry(self, key: str) -> float:
        self._expire(key)
        return self._expiries.get(key, self._now())

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        count = len(self._counts)
        self._counts.clear()
        self._expiries.clear()
        return count

    async def clear(self, key: str) -> None:
        self._counts.pop(key, None)
        self._expiries.pop(key, None)


@dataclass(frozen=True)
class Store:
    """One place budgets are counted: the strategy on its storage, and the clock that storage keeps."""

    storage: Storage
    strategy: FixedWindowRateLimiter
    now: Callable[[], float]

    @classmethod
    def on(cls, storage: Storage, now: Callable[[], float]) -> Store:
        return cls(storage, FixedWindowRateLimiter(storage), now)

    async def stats(self, item: RateLimitItem, key: tuple[str, ...]) -> Budget:
        window = await self.strategy.get_window_stats(item, *key)
        return Budget(
            item.amount,
            max(0, window.remaining),
            math.ceil(window.reset_time),
            max(1, math.ceil(window.reset_time - self.now())),
        )


def _redis_storage(url: str) -> Storage:
    for scheme in ("rediss://", "redis://"):
        if url.startswith(scheme):
            url = "async+" + url
            break
    storage = storage_from_string(
        url,
        wrap_exceptions=True,
        key_prefix="refreshd",
        connect_timeout=REDIS_TIMEOUT_SECONDS,
        stream_timeout=REDIS_TIMEOUT_SECONDS,
    )
    if not isinstance(storage, Storage):
        raise ValueError("REDIS_URL must be a redis:// or rediss:// URL")
    return storage


def client_network(ip: str | None, ipv6_prefix: int) -> str:
    """The address a budget counts: an IPv4 address as it is, an IPv6 one as its network (/64 by default)."""
    if not ip:
        return "unknown"
    try:
        address = ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ip_network(f"{address}/{ipv6_prefix}", strict=False))
    return str(address)


def normalized(value: str) -> str:
    """The form two spellings of one email or identifier share (Unicode NFKC, case-folded, trimmed)."""
    return unicodedata.normalize("NFKC", value).strip().casefold()


def mailbox(email: str) -> str:
    """The mailbox an email delivers to, for the per-mailbox budget: its normalized form without a sub-address
    ("victim+1@x.com" is victim@x.com's mailbox). Dots are left alone: not every provider ignores them. Account
    look-ups keep the exact address."""
    address = normalized(email)
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    base = local.split("+", 1)[0]
    return f"{base or local}@{domain}"


def _encodable(value: str) -> str:
    """``value`` with any lone surrogate (valid JSON, not UTF-8) escaped: Redis keys are UTF-8 bytes."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _digest(value: str) -> str:
    # Keys stay short and hold no email in clear, whatever the client sent (bodies go up to MAX_BODY_SIZE).
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class AccountAttempt:
    """A login attempt counted against its account; ``login_succeeded`` exempts its address from then on."""

    account: str
    network: str


class RateLimiter:
    def __init__(
        self, settings: Settings, *, clock: Clock = system_clock, metrics: Metrics | None = None
    ) -> None:
        self.enabled = settings.rate_limit_enabled
        self.ipv6_prefix = settings.rate_limit_ipv6_prefix
        self.item = RateLimitItemPerSecond(
            settings.rate_limit_max,
            int(settings.rate_limit_interval.total_seconds()),
            namespace="refreshd",
        )
        self.email_items = parse_many(settings.rate_limit_per_email)
        self.account_items = parse_many(settings.rate_limit_login_attempts)
        self._metrics = metrics
        self._clock_seconds: Callable[[], float] = lambda: clock().timestamp()
        self.memory = Store.on(ClockedMemoryStorage(self._clock_seconds), self._clock_seconds)
        self.shared = (
            Store.on(_redis_storage(settings.redis_url), time.time) if settings.redis_url else None
        )
        self._shared_down = False
        self._shared_retry_at = 0.0

    async def _counted(self, work: Callable[[Store], Awaitable[T]]) -> T:
        """Run ``work`` on Redis when it is configured and up, else (and when it fails) on this instance's memory:
        an outage never lifts the limits."""
        shared = self.shared
        if shared is not None:
            if self._clock_seconds() >= self._shared_retry_at:
                try:
                    result = await work(shared)
                except STORE_ERRORS:
                    self._shared_retry_at = self._clock_seconds() + SHARED_RETRY_SECONDS
                    if not self._shared_down:
                        self._shared_down = True
                        logger.error(
                            "rate-limit store unreachable; counting in this instance's memory",
                            exc_info=True,
                        )
                        if self._metrics:
                            self._metrics.set_rate_limit_store_up(False)
                else:
                    if self._shared_down:
                        self._shared_down = False
                        logger.warning("rate-limit store reachable again; counting in Redis")
                        if self._metrics:
                            self._metrics.set_rate_limit_store_up(True)
                    return result
            if self._metrics:
                self._metrics.count_rate_limit_fallback()
        return await work(self.memory)

    async def hit(self, budgets: Sequence[tuple[RateLimitItem, tuple[str, ...]]]) -> Budget:
        """Count one request against every budget (a refused request counts too, as in Strapi). Returns the first
        budget's state; raises ``RateLimitError`` with the refusing budget that resets last."""

        async def work(store: Store) -> tuple[Budget, Budget | None]:
            refusing: Budget | None = None
            headline: Budget | None = None
            for index, (item, key) in enumerate(budgets):
                allowed = await store.strategy.hit(item, *key)
                if index == 0 or not allowed:
                    budget = await store.stats(item, key)
                    headline = headline or budget
                    if not allowed and (refusing is None or budget.reset > refusing.reset):
                        refusing = budget
            assert headline is not None
            return headline, refusing

        headline, refusing = await self._counted(work)
        if refusing is not None:
            raise refusing.refusal()
        return headline

    async def login_attempt(self, identifier: str, ip: str | None) -> AccountAttempt | None:
        """Count a login attempt against the account ``identifier`` names (known or not: the same budget, the
        same answer, the same time). Refused when any tier is spent, without counting it; an address where the
        account logged in before is exempt."""
        if not self.enabled:
            return None
        attempt = AccountAttempt(
            _digest(normalized(identifier)), client_network(ip, self.ipv6_prefix)
        )
        items = self.account_items

        async def work(store: Store) -> Budget | None:
            if await store.storage.get(self._known_key(attempt)) > 0:
                return None
            key = ("account", attempt.account)
            for item in items:
                if not await store.strategy.test(item, *key):
                    return await self._latest_reset(store, key)
            allowed = [await store.strategy.hit(item, *key) for item in items]
            # Two attempts can pass the test together; the counts after the increments decide.
            return None if all(allowed) else await self._latest_reset(store, key)

        refusing = await self._counted(work)
        if refusing is not None:
            raise refusing.refusal()
        return attempt

    async def _latest_reset(self, store: Store, key: tuple[str, ...]) -> Budget:
        spent = [
            await store.stats(item, key)
            for item in self.account_items
            if not await store.strategy.test(item, *key)
        ]
        return max(spent, key=lambda budget: budget.reset)

    async def login_succeeded(self, attempt: AccountAttempt | None) -> None:
        if attempt is None:
            return

        async def work(store: Store) -> None:
            # Every success renews the exemption: an increment sets the expiry only when it creates the key, so
            # clear it first (or the address would lapse KNOWN_ADDRESS_SECONDS after its first success).
            key = self._known_key(attempt)
            await store.storage.clear(key)
            await store.storage.incr(key, KNOWN_ADDRESS_SECONDS)

        await self._counted(work)

    @staticmethod
    def _known_key(attempt: AccountAttempt) -> str:
        return f"known/{attempt.account}/{attempt.network}"

    async def reset(self) -> None:
        await self.memory.storage.reset()
        if self.shared is not None:
            await self.shared.storage.reset()


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
        (_encodable(email.lower()) if email else UNKNOWN_IDENTIFIER) if by_email else NO_IDENTIFIER
    )
    budgets: list[tuple[RateLimitItem, tuple[str, ...]]] = [
        (limiter.item, (f"{identifier}:{path}:{address}|{user_id or address}",))
    ]
    if by_email:
        budgets.append((limiter.item, ("address", path, address)))
        if email:  # without one the body is refused anyway, and no mailbox is at stake
            inbox = _digest(mailbox(email))
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
