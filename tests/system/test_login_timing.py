"""Failed logins cannot be told apart by timing, end to end: a real server with the failure floor on.

Every other API test runs with ``login_failure_floor_ms: 0`` (tests/support.py). Here a uvicorn process runs with
the floor on, and a client on loopback times four kinds of failed login that all answer the same 400 "Invalid
identifier or password": an unknown identifier, a wrong password, a wrong password on a blocked account, and a
wrong password on an account imported from Strapi (a bcrypt hash, slower to check than argon2: without the floor
this kind stands out at once). A blocked account with its right password answers "Your account has been
blocked", as Strapi's does: the answer itself tells, so its timing hides nothing more.

The method, and why it holds on a busy machine: the kinds are sent one at a time, interleaved in a random order
drawn afresh for each run, and compared with a rank test (Kruskal-Wallis' statistic) whose p-value comes from
re-drawing that same random assignment (a permutation test). If the service treats the kinds alike, the labels are
independent of the times by construction, whatever else the machine is doing meanwhile (other tests, a load
spike): the test then fails with probability at most ``ALPHA``. It fails where the kinds differ: a kind that
skips the padding or the hash, or a floor below what a bcrypt check costs on this machine (``FLOOR_MS`` leaves
room for a busy one).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import User
from app.security import passwords
from app.security.passwords import Argon2Params
from app.services.hashing import STRAPI_BCRYPT_ROUNDS
from tests.servers import running_servers
from tests.support import T0, migrate, recreate_postgres_database

pytestmark = pytest.mark.slow

PASSWORD = "Secret-pass-123"
WRONG = "Wrong-pass-456"
KINDS = ("unknown user", "wrong password", "blocked account", "imported account")
SAMPLES = 25  # per kind
WARM_UP = 3  # per kind, not counted: the first requests of a process pay for imports and caches
# About three times a bcrypt check (Strapi's cost 10) on an idle machine, so that the padding, not the hash, sets
# the time of every kind even on a busy one. The service measures its own floor at start; that has unit tests.
FLOOR_MS = 200
# The false-failure rate: how often this test fails although the kinds take the same time (one CI run in 10,000).
ALPHA = 0.0001
# The smallest p-value this can give is 1 / (PERMUTATIONS + 1) = 0.00001 < ALPHA; about 2 s of CPU.
PERMUTATIONS = 99_999
INVALID = {
    "data": None,
    "error": {
        "status": 400,
        "name": "ValidationError",
        "message": "Invalid identifier or password",
        "details": {},
    },
}


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            result[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spread(rank_of: Sequence[float], labels: Sequence[int], groups: int) -> float:
    """How far apart the groups' ranks lie: the sum of (rank sum)^2 / size over the groups. Kruskal-Wallis' H is
    an increasing function of it for fixed sizes, so the permutation test may use it directly."""
    sums = [0.0] * groups
    sizes = [0] * groups
    for rank, label in zip(rank_of, labels, strict=True):
        sums[label] += rank
        sizes[label] += 1
    return sum(total * total / size for total, size in zip(sums, sizes, strict=True) if size)


def permutation_p_value(
    times: Sequence[float], labels: Sequence[int], rng: random.Random, permutations: int
) -> float:
    """P-value of Kruskal-Wallis' statistic under re-drawn labels (Monte Carlo, counting the observed one, so it
    is a valid p-value for any number of permutations)."""
    rank_of = ranks(times)
    groups = max(labels) + 1
    observed = spread(rank_of, labels, groups)
    shuffled = list(labels)
    as_large = 0
    for _ in range(permutations):
        rng.shuffle(shuffled)
        # A relative tolerance: equal spreads computed in another order must count as equal.
        if spread(rank_of, shuffled, groups) >= observed * (1 - 1e-12):
            as_large += 1
    return (as_large + 1) / (permutations + 1)


def test_the_rank_test_finds_a_shift_and_not_a_shuffle() -> None:
    rng = random.Random(1)
    labels = [i % 3 for i in range(90)]
    shifted = [rng.gauss(100.0, 5.0) + (5.0 if label == 2 else 0.0) for label in labels]
    assert permutation_p_value(shifted, labels, rng, 999) < 0.01
    alike = [rng.gauss(100.0, 5.0) for _ in labels]
    assert permutation_p_value(alike, labels, rng, 999) > 0.01
    # A perfect separation: no re-drawing spreads the groups further.
    assert permutation_p_value([float(i) for i in range(90)], sorted(labels), rng, 999) == 0.001
    assert ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]


async def _insert_accounts(database_url: str, count: int) -> dict[str, list[str]]:
    """``count`` accounts of each kind that has one, by kind: their usernames. Every account is asked once, so
    none collects failures (per-account slowing never starts); one hash per scheme serves them all."""
    argon2 = passwords.hash_password(passwords.build_context(Argon2Params()), PASSWORD)
    strapi = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(STRAPI_BCRYPT_ROUNDS)).decode()
    kinds = {
        "wrong password": (argon2, False),
        "blocked account": (argon2, True),
        "imported account": (strapi, False),
    }
    names = {kind: [f"t{secrets.token_hex(8)}" for _ in range(count)] for kind in kinds}
    rows = [
        {
            "document_id": secrets.token_hex(12),
            "username": name,
            "email": f"{name}@example.com",
            "provider": "local",
            "password_hash": hashed,
            "confirmed": True,
            "blocked": blocked,
            "created_at": T0,
            "updated_at": T0,
            "published_at": T0,
        }
        for kind, (hashed, blocked) in kinds.items()
        for name in names[kind]
    ]
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(User), rows)
    finally:
        await engine.dispose()
    return names


@pytest.fixture(params=["sqlite", "postgresql"])
def timing_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'timing.db'}"
    else:
        url = recreate_postgres_database("login_timing")
    migrate(url)
    return url


def test_failed_logins_cannot_be_told_apart_by_timing(timing_database: str, tmp_path: Path) -> None:
    seed = secrets.randbits(64)
    rng = random.Random(seed)
    identifiers = asyncio.run(_insert_accounts(timing_database, SAMPLES + WARM_UP))
    # A fresh identifier for every request, so nothing keyed by identifier sees it twice.
    identifiers["unknown user"] = [f"n{secrets.token_hex(8)}" for _ in range(SAMPLES + WARM_UP)]
    order = [kind for kind in KINDS for _ in range(SAMPLES)]
    rng.shuffle(order)
    warm_up = [kind for kind in KINDS for _ in range(WARM_UP)]
    rng.shuffle(warm_up)
    env = {
        "LOGIN_FAILURE_FLOOR_MS": str(FLOOR_MS),
        # Every request comes from 127.0.0.1: the per-address login budget must not answer 429 halfway.
        "RATE_LIMIT_MAX": "1000000",
    }
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with (
        running_servers(timing_database, 1, tmp_path, **env) as [server],
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        for index, kind in enumerate(warm_up + order):
            body: dict[str, Any] = {"identifier": identifiers[kind].pop(), "password": WRONG}
            started = time.perf_counter()
            response = client.post("/api/auth/local", json=body)
            elapsed = time.perf_counter() - started
            # The same answer for every kind, so only the time could tell them apart.
            assert (response.status_code, response.json()) == (400, INVALID), (kind, response.text)
            # The floor is on for every kind: no failure answers sooner.
            assert elapsed >= FLOOR_MS / 1000, (kind, elapsed)
            if index >= len(warm_up):
                times[kind].append(elapsed)
    samples = [(label, t) for label, kind in enumerate(KINDS) for t in times[kind]]
    p_value = permutation_p_value(
        [t for _, t in samples], [label for label, _ in samples], rng, PERMUTATIONS
    )
    medians = {kind: f"{statistics.median(times[kind]) * 1000:.2f} ms" for kind in KINDS}
    assert p_value > ALPHA, (
        f"told apart by timing: p = {p_value:.5f}, medians {medians}, seed {seed}"
    )
