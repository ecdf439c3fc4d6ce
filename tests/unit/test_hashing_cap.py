"""New hashes for anonymous callers (register, reset) take at most part of the hashing pool, so a flood of them
cannot queue logins behind it (the HTTP measure is bench/README.md's registration-flood scenario)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from app.security.passwords import Argon2Params
from app.services.hashing import ANONYMOUS_HASH_THREAD_NICE, HASH_THREAD_NICE, PasswordHasher


async def _finishing_order(hasher: PasswordHasher, flood: int, *, anonymous: bool) -> list[str]:
    # Both threads started and warm: a thread's first argon2 call also pays for its fresh 19 MiB of pages.
    stored, _ = await asyncio.gather(hasher.hash("the-owner's-password"), hasher.hash("warm-up"))
    finished: list[str] = []

    async def register(n: int) -> None:
        await hasher.hash(f"password-{n}", anonymous=anonymous)
        finished.append(f"hash{n}")

    async def log_in() -> None:
        assert (await hasher.verify("the-owner's-password", stored))[0]
        finished.append("login")

    # Tasks start in this order: the whole flood asks for the pool before the login does.
    await asyncio.gather(*(register(n) for n in range(flood)), log_in())
    return finished


@pytest.mark.parametrize("anonymous", [True, False])
async def test_a_login_does_not_queue_behind_a_flood_of_anonymous_hashes(anonymous: bool) -> None:
    hasher = PasswordHasher(Argon2Params(), 2, anonymous_limit=1, floor=0)
    try:
        finished = await _finishing_order(hasher, flood=12, anonymous=anonymous)
    finally:
        hasher.close()
    position = finished.index("login")
    if anonymous:
        # Capped at one thread, the flood leaves the other to the login, which runs at once and finishes about
        # with the first hash (half the flood is a margin for a machine busy with other work).
        assert position < 6, finished
    else:
        # The control, how register hashed before: the login queues behind the ten hashes ahead of it.
        assert position >= 9, finished


def test_the_cap_defaults_to_half_the_pool() -> None:
    hasher = PasswordHasher(Argon2Params(), 4, floor=0)
    try:
        assert hasher.anonymous_limit == 2
    finally:
        hasher.close()


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's"
)
async def test_anonymous_hashes_run_below_the_logins_priority() -> None:
    hasher = PasswordHasher(Argon2Params(), 2, anonymous_limit=1, floor=0)
    try:
        await asyncio.gather(hasher.hash("a"), hasher.hash("b", anonymous=True))
        nice = {
            t.name.rsplit("_", 1)[0]: os.getpriority(os.PRIO_PROCESS, t.native_id)
            for t in threading.enumerate()
            if t.name.startswith("refreshd-hash") and t.native_id is not None
        }
        assert nice == {
            "refreshd-hash": HASH_THREAD_NICE,
            "refreshd-hash-anonymous": ANONYMOUS_HASH_THREAD_NICE,
        }
    finally:
        hasher.close()
