"""Where rate-limit budgets are counted: the state of one budget, ``limits``' fixed-window strategy on a storage,
this process's memory on the app's clock, and Redis."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from app.errors import RateLimitError

# A Redis that does not answer must not hold requests for long: the memory budgets take over.
REDIS_TIMEOUT_SECONDS = 1.0
STORE_ERRORS = (StorageError, ConnectionError, OSError, TimeoutError)


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


def redis_storage(url: str) -> Storage:
    """``limits``' async Redis storage for ``REDIS_URL`` (``redis://`` or ``rediss://``)."""
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
