"""Password hashing off the event loop, in a bounded pool of threads (argon2 and bcrypt release the GIL)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import bcrypt

from app.security import passwords
from app.security.passwords import Argon2Params

# Strapi's cost: imported accounts keep bcrypt hashes of this cost until their next login.
STRAPI_BCRYPT_ROUNDS = 10


# Hashing threads run at a lower priority than the event loop (a nice value, Linux only): they use the CPU the
# loop leaves, so logins saturating the pool do not stretch the latency of refreshes and authenticated requests.
HASH_THREAD_NICE = 10
# New hashes for anonymous callers (register, reset) run lower still: beside a login's verification on one core,
# the login gets most of it (a nice 19 thread weighs 15 against a nice 10 thread's 110).
ANONYMOUS_HASH_THREAD_NICE = 19


def _lower_thread_priority(nice: int = HASH_THREAD_NICE) -> None:
    """Runs in each hashing thread as it starts. On Linux a thread id names that one thread for setpriority."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


def measure_failed_verify(context_verify: Callable[[], object], repeats: int = 3) -> float:
    """The slowest of a few runs of a verification, in seconds."""
    slowest = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        context_verify()
        slowest = max(slowest, time.perf_counter() - started)
    return slowest


class PasswordHasher:
    """Hashes and verifies in a pool of ``workers`` threads.

    A failed verification is padded to ``floor`` seconds (the cost of the slowest hash an account may hold:
    a Strapi bcrypt hash not yet upgraded), so "no such user", "wrong password on an argon2 account" and "wrong
    password on an imported account" all take the same time. Successful logins are not padded.
    """

    def __init__(
        self,
        params: Argon2Params,
        workers: int,
        *,
        anonymous_limit: int | None = None,
        floor: float | None = None,
        pad: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        observe: Callable[[Literal["hash", "verify"], float], None] | None = None,
    ) -> None:
        self.params = params
        self.workers = workers
        # New hashes for anonymous callers (register, reset) run in a pool of their own, of this many threads at
        # a lower priority: a registration flood queues there, never ahead of a login's verification in the
        # main pool, and takes only the CPU logins leave (bench/results/2026-12-03-registration-flood.md).
        # Its threads start on the first registration; each then keeps its argon2 memory, like the main pool's.
        self.anonymous_limit = max(1, workers // 2) if anonymous_limit is None else anonymous_limit
        self._anonymous_pool = ThreadPoolExecutor(
            max_workers=self.anonymous_limit,
            thread_name_prefix="refreshd-hash-anonymous",
            initializer=_lower_thread_priority,
            initargs=(ANONYMOUS_HASH_THREAD_NICE,),
        )
        self._anonymous_turns = asyncio.Semaphore(self.anonymous_limit)
        self._context = passwords.build_context(params)
        self._pool = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="refreshd-hash",
            initializer=_lower_thread_priority,
        )
        # The startup hashes run in a pool thread too: glibc keeps a thread's argon2 working memory for its next
        # hash, and on the event loop's thread it would stay resident for nothing
        # (bench/results/2026-11-28-hot-path.md).
        self._dummy_hash = self._pool.submit(passwords.make_dummy_hash, self._context).result()
        self._pad = pad
        self._monotonic = monotonic
        self._observe = observe
        self.floor = self._pool.submit(self._calibrate).result() if floor is None else floor

    def _calibrate(self) -> float:
        legacy = bcrypt.hashpw(b"calibration", bcrypt.gensalt(STRAPI_BCRYPT_ROUNDS)).decode()
        slowest = max(
            measure_failed_verify(lambda: self._context.verify(b"wrong", legacy)),
            measure_failed_verify(lambda: self._context.verify(b"wrong", self._dummy_hash)),
        )
        return slowest * 1.2

    def anonymous_turn(self) -> asyncio.Semaphore:
        """``async with`` it around an anonymous request's expensive part (its look-ups and its hash): as many
        run at once as the anonymous pool has threads; the rest wait on the event loop, holding nothing."""
        return self._anonymous_turns

    async def hash(self, password: str, *, anonymous: bool = False) -> str:
        """A new argon2 hash. ``anonymous``: for a caller nobody has authenticated, in the capped pool."""
        loop = asyncio.get_running_loop()
        started = self._monotonic()
        hashed = await loop.run_in_executor(
            self._anonymous_pool if anonymous else self._pool,
            passwords.hash_password,
            self._context,
            password,
        )
        if self._observe:
            self._observe("hash", self._monotonic() - started)  # queueing in the pool included
        return hashed

    async def verify(self, password: str, stored_hash: str | None) -> tuple[bool, str | None]:
        """(ok, upgraded hash or None). An absent hash costs one dummy verify, and every failure the same time."""
        loop = asyncio.get_running_loop()
        started = self._monotonic()
        ok, upgraded = await loop.run_in_executor(
            self._pool,
            passwords.verify_password,
            self._context,
            password,
            stored_hash,
            self._dummy_hash,
        )
        if self._observe:
            self._observe("verify", self._monotonic() - started)
        if not ok:
            remaining = self.floor - (self._monotonic() - started)
            if remaining > 0:
                await self._pad(remaining)
        return ok, upgraded

    def close(self) -> None:
        self._anonymous_pool.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)
