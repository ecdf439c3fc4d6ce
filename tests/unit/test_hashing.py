"""The failed-login padding: every failure takes the same time, successes are not slowed."""

from __future__ import annotations

import pytest

from app.security.passwords import Argon2Params
from app.services.hashing import PasswordHasher


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
