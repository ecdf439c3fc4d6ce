"""The failed-login padding: every failure takes the same time, successes are not slowed."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from app.security.passwords import Argon2Params
from app.services.hashing import HASH_THREAD_NICE, PasswordHasher


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.pads: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def pad(self, seconds: float) -> None:
        self.pads.append(seconds)
        self.now += seconds


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def hasher(fake: FakeTime) -> PasswordHasher:
    return PasswordHasher(Argon2Params(), 1, floor=0.5, pad=fake.pad, monotonic=fake.monotonic)


async def test_failures_are_padded_to_the_floor(hasher: PasswordHasher, fake: FakeTime) -> None:
    stored = await hasher.hash("right-password")
    assert await hasher.verify("wrong-password", stored) == (False, None)
    assert await hasher.verify("anything", None) == (False, None)
    assert fake.pads == [0.5, 0.5]  # the fake clock did not move during the hashing itself


async def test_successes_are_not_padded(hasher: PasswordHasher, fake: FakeTime) -> None:
    stored = await hasher.hash("right-password")
    ok, upgraded = await hasher.verify("right-password", stored)
    assert (ok, upgraded) == (True, None)
    assert fake.pads == []


def test_the_floor_is_measured_from_the_slowest_hash() -> None:
    hasher = PasswordHasher(Argon2Params(), 1)
    try:
        # bcrypt at Strapi's cost is the slowest an account may hold; a few ms at the very least.
        assert hasher.floor > 0.005
    finally:
        hasher.close()


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's"
)
async def test_hashing_threads_yield_the_cpu_to_the_event_loop() -> None:
    hasher = PasswordHasher(Argon2Params(), workers=2, floor=0)
    try:
        assert await hasher.hash("Secret-pass-123")
        threads = [t for t in threading.enumerate() if t.name.startswith("refreshd-hash")]
        assert threads
        for thread in threads:
            assert thread.native_id is not None
            assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == HASH_THREAD_NICE
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == 0
    finally:
        hasher.close()
