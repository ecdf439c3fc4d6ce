"""Rate limits as Strapi keys them, in memory and shared through Redis; trusted proxies; the 413 body limit."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import coredis
import httpx
import pytest

from app.settings import Settings
from tests.api.helpers import PASSWORD, bearer, error_of, login, register
from tests.api.limits_support import metric
from tests.conftest import Harness
from tests.servers import free_port
from tests.support import T0, TEST_REDIS_URL

REDIS_URL = TEST_REDIS_URL


def _assert_budget(
    response: httpx.Response, remaining: int, limit: int = 10, now: float | None = None
) -> None:
    """``now``: the store's clock; the app's (FakeClock's T0) in memory, real time in Redis."""
    assert response.headers["x-ratelimit-limit"] == str(limit)
    assert response.headers["x-ratelimit-remaining"] == str(remaining)
    reset = int(response.headers["x-ratelimit-reset"])
    now = T0.timestamp() if now is None else now
    assert now - 1 <= reset <= now + 61


def _assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429
    assert error_of(response) == {
        "status": 429,
        "name": "RateLimitError",
        "message": "Too many requests, please try again later.",
        "details": {},
    }
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(response.headers["retry-after"]) <= 60


async def test_login_allows_ten_per_window_then_429(client: httpx.AsyncClient) -> None:
    await register(client)
    for attempt in range(10):
        response = await login(client, password=PASSWORD if attempt % 2 else "wrong")
        assert response.status_code in (200, 400)
        _assert_budget(response, 9 - attempt)
    _assert_limited(await login(client))
    # Other routes have budgets of their own.
    assert (await register(client, "bob", "bob@example.com"))["user"]["username"] == "bob"


async def test_register_is_limited_per_email(client: httpx.AsyncClient) -> None:
    for _ in range(10):
        response = await client.post(
            "/api/auth/local/register",
            json={"username": "x", "email": "Same@Example.com", "password": PASSWORD},
        )
        assert response.status_code == 400  # username too short: refused, and counted
    response = await client.post(
        "/api/auth/local/register",
        json={"username": "alice", "email": "same@example.com", "password": PASSWORD},
    )
    _assert_limited(response)
    # Contract §6: the address has a budget of its own on this route too, which these eleven requests spent.
    _assert_limited(
        await client.post(
            "/api/auth/local/register",
            json={"username": "bob", "email": "bob@example.com", "password": PASSWORD},
        )
    )


async def test_change_password_is_limited_per_user_and_unauthenticated_calls_do_not_count(
    client: httpx.AsyncClient,
) -> None:
    token = (await register(client))["jwt"]
    body = {
        "currentPassword": "wrong",
        "password": "New-pass-123",
        "passwordConfirmation": "New-pass-123",
    }
    for _ in range(12):
        response = await client.post("/api/auth/change-password", json=body)
        assert response.status_code == 403
        assert "x-ratelimit-limit" not in response.headers
    for attempt in range(10):
        response = await client.post("/api/auth/change-password", json=body, headers=bearer(token))
        assert response.status_code == 400
        _assert_budget(response, 9 - attempt)
    _assert_limited(
        await client.post("/api/auth/change-password", json=body, headers=bearer(token))
    )


async def test_unlimited_routes_carry_no_budget(client: httpx.AsyncClient) -> None:
    token = (await register(client))["jwt"]
    for _ in range(15):
        response = await client.get("/api/users/me", headers=bearer(token))
        assert response.status_code == 200
        assert "x-ratelimit-limit" not in response.headers


async def test_limits_are_configurable_and_can_be_switched_off(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    strict = await harness.client(settings_factory(rate_limit_max=3))
    await register(strict)
    for attempt in range(3):
        _assert_budget(await login(strict), 2 - attempt, limit=3)
    _assert_limited(await login(strict))
    off = await harness.client(settings_factory(rate_limit_enabled=False))  # same database
    for _ in range(15):
        response = await login(off)
        assert response.status_code == 200
        assert "x-ratelimit-limit" not in response.headers


async def test_forwarded_for_is_ignored_from_untrusted_peers(client: httpx.AsyncClient) -> None:
    await register(client)
    for i in range(10):
        await client.post(
            "/api/auth/local",
            json={"identifier": "alice", "password": "wrong"},
            headers={"X-Forwarded-For": f"198.51.100.{i}"},
        )
    response = await client.post(
        "/api/auth/local",
        json={"identifier": "alice", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.99"},
    )
    _assert_limited(response)


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    # The test transport's peer is 203.0.113.7: make it the proxy.
    client = await harness.client(settings_factory(trusted_proxies="203.0.113.0/24, 10.0.0.1"))
    await register(client)
    # All from the proxy itself (no header), and for other accounts: alice's own budget is kept.
    for attempt in range(10):
        await login(client, f"nobody{attempt}", "wrong")
    _assert_limited(await login(client))
    spoofed_then_real = {"X-Forwarded-For": "1.2.3.4, 198.51.100.20, 10.0.0.1"}
    response = await client.post(
        "/api/auth/local",
        json={"identifier": "alice", "password": PASSWORD, "requestRefresh": True},
        headers=spoofed_then_real,
    )
    assert response.status_code == 200
    sessions = await client.get("/api/auth/sessions", headers=bearer(response.json()["jwt"]))
    current = next(s for s in sessions.json()["data"] if s["current"])
    assert current["ip"] == "198.51.100.20"
    garbled = await client.post(
        "/api/auth/local",
        json={"identifier": "alice", "password": PASSWORD},
        headers={"X-Forwarded-For": "not-an-ip"},
    )
    _assert_limited(garbled)  # falls back to the proxy's own address, which is spent


@pytest.fixture
async def redis_db() -> AsyncIterator[str]:
    redis: coredis.Redis[Any] = coredis.Redis.from_url(REDIS_URL)
    await redis.flushdb()
    yield REDIS_URL
    await redis.flushdb()


async def test_two_instances_share_one_limit_through_redis(
    harness: Harness, settings_factory: Callable[..., Settings], redis_db: str
) -> None:
    first = await harness.client(settings_factory(redis_url=redis_db))
    second = await harness.client(settings_factory(redis_url=redis_db))
    await register(first)
    for attempt in range(10):
        # A different identifier each time: the per-account budget (tests/api/test_abuse_budgets.py) stays out.
        response = await login(first if attempt % 2 else second, f"nobody{attempt}", "wrong")
        assert response.status_code == 400
        _assert_budget(response, 9 - attempt, now=time.time())
    _assert_limited(await login(first))
    _assert_limited(await login(second))


async def test_an_unreachable_redis_falls_back_to_memory_budgets(
    harness: Harness, settings_factory: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    # Contract §6: never "unlimited" while Redis is down (this used to fail open).
    client = await harness.client(settings_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    await register(client)
    for attempt in range(10):
        response = await login(client, f"nobody{attempt}", "wrong")
        assert response.status_code == 400
        _assert_budget(response, 9 - attempt)  # counted in memory, on the app's clock
    _assert_limited(await login(client))
    assert "rate-limit store unreachable; counting in this instance's memory" in caplog.text
    metrics = (await client.get("/metrics")).text
    assert "refreshd_rate_limit_store_up 0.0" in metrics
    # Each request made at least one check (login makes two: its route's and its account's).
    assert metric(metrics, "refreshd_rate_limit_fallbacks_total") >= 12


async def test_bodies_over_the_limit_get_413(client: httpx.AsyncClient) -> None:
    big = {"identifier": "a" * (64 * 1024), "password": "x"}
    response = await client.post("/api/auth/local", json=big)
    assert response.status_code == 413
    assert error_of(response) == {
        "status": 413,
        "name": "PayloadTooLargeError",
        "message": "Payload Too Large",
        "details": {},
    }

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"identifier": "'
        for _ in range(100):
            yield b"a" * 1024
        yield b'", "password": "x"}'

    streamed = await client.post(
        "/api/auth/local", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert error_of(streamed)["name"] == "PayloadTooLargeError"


async def test_body_limit_is_configurable(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await harness.client(settings_factory(max_body_size=2048))
    response = await client.post(
        "/api/auth/local", json={"identifier": "a" * 3000, "password": "x"}
    )
    assert response.status_code == 413
    response = await client.post(
        "/api/auth/local", json={"identifier": "a" * 1500, "password": "x"}
    )
    assert response.status_code == 400
