"""The budgets a varied email or address cannot dodge, counted in Redis or, while it is unreachable, in memory.

``RateLimiter`` counts requests against budgets (``hit``) and login attempts against their account
(``login_attempt``); the helpers here make the keys: an address's network, an email's mailbox, digests.
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address, ip_network
from typing import TypeVar

from limits import RateLimitItem, RateLimitItemPerSecond, parse_many

from app.api.ratelimit_storage import (
    STORE_ERRORS,
    Budget,
    ClockedMemoryStorage,
    Store,
    redis_storage,
)
from app.clock import Clock, system_clock
from app.settings import Settings
from app.telemetry.metrics import Metrics

logger = logging.getLogger("refreshd.ratelimit")

# How long an instance counts in memory after Redis failed before it tries Redis again (on the app's clock).
SHARED_RETRY_SECONDS = 5.0
# An address where an account logged in successfully stays exempt from its attempt budget this long after the
# latest success there.
KNOWN_ADDRESS_SECONDS = 30 * 24 * 3600

T = TypeVar("T")


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


def encodable(value: str) -> str:
    """``value`` with any lone surrogate (valid JSON, not UTF-8) escaped: Redis keys are UTF-8 bytes."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def digest(value: str) -> str:
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
            Store.on(redis_storage(settings.redis_url), time.time) if settings.redis_url else None
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
            digest(normalized(identifier)), client_network(ip, self.ipv6_prefix)
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
