"""Contract §6: the budgets a varied email or address cannot dodge, each in memory and in a real Redis, and Redis
stopped in the middle of a run. Clients are told apart by X-Forwarded-For from the trusted test peer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import coredis
import httpx
import pytest

from app.api.ratelimit import SHARED_RETRY_SECONDS
from app.settings import Settings
from tests.api.helpers import PASSWORD, bearer, error_of, register
from tests.api.limits_support import (
    PROXY,
    assert_budget,
    assert_limited,
    from_address,
    keys_in,
    labelled_metric,
    metric,
    redis_server,
)
from tests.conftest import Harness
from tests.servers import free_port
from tests.support import TEST_REDIS_URL, FakeClock

ROUTES_BY_EMAIL = ["register", "forgot-password", "send-email-confirmation"]


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """Where the budgets are counted: this instance's memory, or the test Redis (emptied before and after)."""
    if request.param == "memory":
        yield None
        return
    redis: coredis.Redis[Any] = coredis.Redis.from_url(TEST_REDIS_URL)
    await redis.flushdb()
    yield TEST_REDIS_URL
    await redis.flushdb()


@pytest.fixture
def app_client(
    harness: Harness, settings_factory: Callable[..., Settings], store: str | None
) -> Callable[..., Any]:
    async def make(**overrides: Any) -> httpx.AsyncClient:
        return await harness.client(
            settings_factory(redis_url=store, trusted_proxies=PROXY, **overrides)
        )

    return make


def now_of(store: str | None, clock: FakeClock) -> float:
    """The clock a store keeps: the app's in memory, real time in Redis."""
    return clock().timestamp() if store is None else time.time()


async def by_email(
    client: httpx.AsyncClient, route: str, email: str, address: str, n: int = 0
) -> httpx.Response:
    if route == "register":
        body = {"username": f"user{n}-{address}", "email": email, "password": PASSWORD}
        return await client.post(
            "/api/auth/local/register", json=body, headers=from_address(address)
        )
    return await client.post(
        f"/api/auth/{route}", json={"email": email}, headers=from_address(address)
    )


def allowed(response: httpx.Response) -> bool:
    """Served, not refused by a budget (a taken email on register is a 400 of its own)."""
    return response.status_code == 200 or (
        response.status_code == 400
        and error_of(response)["message"] == "Email or Username are already taken"
    )


@pytest.mark.parametrize("route", ROUTES_BY_EMAIL)
async def test_one_address_cannot_dodge_its_budget_with_fresh_emails(
    app_client: Callable[..., Any], store: str | None, clock: FakeClock, route: str
) -> None:
    client = await app_client()
    for n in range(10):
        response = await by_email(client, route, f"fresh{n}@example.com", "198.51.100.1", n)
        assert response.status_code == 200, response.text
        assert_budget(response, 9, now=now_of(store, clock))  # Strapi's key: one email, one address
    assert_limited(await by_email(client, route, "fresh10@example.com", "198.51.100.1", 10))
    other = await by_email(client, route, "fresh11@example.com", "198.51.100.2", 11)
    assert other.status_code == 200


async def flood_one_mailbox(client: httpx.AsyncClient, route: str) -> None:
    """Ten requests for one mailbox from ten addresses, then the eleventh refused by the mailbox's budget."""
    # Spellings of one mailbox (case, Unicode compatibility forms) share its budget.
    fullwidth = "\uff56\uff49\uff43\uff54\uff49\uff4d@example.com"
    spellings = ["victim@example.com", "Victim@Example.COM", fullwidth]
    for n in range(10):
        response = await by_email(client, route, spellings[n % 3], f"198.51.100.{n}", n)
        assert allowed(response), response.text
    assert_limited(await by_email(client, route, "victim@example.com", "198.51.100.10", 10))
    assert (
        await by_email(client, route, "other@example.com", "198.51.100.10", 11)
    ).status_code == 200


@pytest.mark.parametrize("route", ROUTES_BY_EMAIL)
async def test_one_mailbox_cannot_be_flooded_from_many_addresses(
    app_client: Callable[..., Any], route: str
) -> None:
    await flood_one_mailbox(await app_client(), route)


@pytest.mark.parametrize("store", ["memory"], indirect=True)
@pytest.mark.parametrize("route", ROUTES_BY_EMAIL)
async def test_one_mailbox_budget_has_an_hourly_tier_in_memory(
    app_client: Callable[..., Any], clock: FakeClock, route: str
) -> None:
    """Memory store only: its windows follow the app's clock, which the test moves (Redis keeps real time)."""
    client = await app_client()
    await flood_one_mailbox(client, route)
    clock.advance(timedelta(seconds=61))  # the minute's window is over; the hour's is not
    for n in range(9):  # 11 counted so far (a refused request counts too, as in Strapi)
        response = await by_email(client, route, "victim@example.com", f"198.51.101.{n}", 20 + n)
        assert allowed(response), response.text
    retry_after = assert_limited(
        await by_email(client, route, "victim@example.com", "198.51.101.10", 30),
        limit=20,
        longest=3600,
    )
    assert retry_after > 60


@pytest.mark.parametrize("route", ROUTES_BY_EMAIL)
async def test_sub_addresses_share_their_mailbox_budget(
    app_client: Callable[..., Any], route: str
) -> None:
    """victim+1@, victim+2@ deliver to one mailbox: one budget for all of them (dots are not folded)."""
    client = await app_client()
    for n in range(10):
        response = await by_email(client, route, f"victim+{n}@example.com", f"198.51.100.{n}", n)
        assert response.status_code == 200, response.text
    for n, email in enumerate(["victim+99@example.com", "Victim@Example.com"]):
        assert_limited(await by_email(client, route, email, f"198.51.100.{20 + n}", 20 + n))
    dotted = await by_email(client, route, "vic.tim@example.com", "198.51.100.30", 30)
    assert dotted.status_code == 200, dotted.text


async def test_sub_addresses_stay_distinct_accounts(app_client: Callable[..., Any]) -> None:
    """The mailbox is the budget's key only: accounts keep, and are found by, their exact address."""
    client = await app_client()
    await register(client, "one", "victim+1@example.com")
    await register(client, "two", "victim+2@example.com")
    login = await client.post(
        "/api/auth/local", json={"identifier": "victim+2@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    assert login.json()["user"]["username"] == "two"
    assert login.json()["user"]["email"] == "victim+2@example.com"


async def spend_the_account_budget(client: httpx.AsyncClient) -> None:
    """Five wrong passwords for alice (in several spellings) from five addresses; the right one from a sixth waits."""
    await register(client)
    spellings = ["alice", "ALICE", " Alice", "alice"]
    for n in range(5):
        response = await client.post(
            "/api/auth/local",
            json={"identifier": spellings[n % 4], "password": "wrong"},
            headers=from_address(f"198.51.100.{n}"),
        )
        assert response.status_code == 400
    # The right password from yet another address waits too: the budget is the account's.
    refused = await client.post(
        "/api/auth/local",
        json={"identifier": "alice", "password": PASSWORD},
        headers=from_address("198.51.100.50"),
    )
    assert_limited(refused, limit=5)


async def test_wrong_passwords_across_addresses_spend_the_account_budget(
    app_client: Callable[..., Any],
) -> None:
    await spend_the_account_budget(await app_client())


@pytest.mark.parametrize("store", ["memory"], indirect=True)
async def test_wrong_passwords_across_addresses_slow_the_account_down_progressively_in_memory(
    app_client: Callable[..., Any], clock: FakeClock
) -> None:
    """Memory store only: its windows follow the app's clock, which the test moves (Redis keeps real time)."""
    client = await app_client()
    await spend_the_account_budget(client)
    clock.advance(timedelta(seconds=60))
    for n in range(5):  # a second minute's five guesses spend the ten-minute tier
        response = await client.post(
            "/api/auth/local",
            json={"identifier": "alice", "password": "wrong"},
            headers=from_address(f"198.51.100.{10 + n}"),
        )
        assert response.status_code == 400
    clock.advance(timedelta(seconds=60))
    slower = await client.post(
        "/api/auth/local",
        json={"identifier": "alice", "password": PASSWORD},
        headers=from_address("198.51.100.51"),
    )
    assert assert_limited(slower, limit=10, longest=600) > 60
    clock.advance(timedelta(minutes=9))  # never a lock-out: the windows end
    response = await client.post(
        "/api/auth/local",
        json={"identifier": "alice", "password": PASSWORD},
        headers=from_address("198.51.100.52"),
    )
    assert response.status_code == 200


async def test_an_unknown_identifier_is_answered_exactly_like_a_known_one(
    app_client: Callable[..., Any],
) -> None:
    client = await app_client()
    await register(client)

    async def attempts(identifier: str, network: str) -> list[tuple[int, Any, list[str]]]:
        seen = []
        for n in range(7):
            response = await client.post(
                "/api/auth/local",
                json={"identifier": identifier, "password": "wrong"},
                headers=from_address(f"{network}.{n}"),
            )
            names = sorted(h for h in response.headers if h.startswith(("x-ratelimit", "retry")))
            seen.append((response.status_code, response.json(), names))
        return seen

    known = await attempts("alice", "198.51.100")
    unknown = await attempts("ghost", "198.51.101")
    assert known == unknown
    assert [status for status, _, _ in known] == [400] * 5 + [429] * 2


async def test_the_owner_is_never_locked_out_from_an_address_it_logged_in_from(
    app_client: Callable[..., Any],
) -> None:
    client = await app_client()
    await register(client)
    home = from_address("198.51.100.1")
    ok = await client.post(
        "/api/auth/local", json={"identifier": "alice", "password": PASSWORD}, headers=home
    )
    assert ok.status_code == 200
    # The owner's login counted one attempt; an attacker spends the other four from elsewhere.
    for n in range(4):
        guess = await client.post(
            "/api/auth/local",
            json={"identifier": "alice", "password": "wrong"},
            headers=from_address(f"192.0.2.{n}"),
        )
        assert guess.status_code == 400, guess.text
    assert_limited(
        await client.post(
            "/api/auth/local",
            json={"identifier": "alice", "password": PASSWORD},
            headers=from_address("192.0.2.99"),
        ),
        limit=5,
    )
    typo = await client.post(
        "/api/auth/local", json={"identifier": "alice", "password": "typo"}, headers=home
    )
    assert typo.status_code == 400
    again = await client.post(
        "/api/auth/local", json={"identifier": "alice", "password": PASSWORD}, headers=home
    )
    assert again.status_code == 200


@pytest.mark.parametrize("store", ["memory"], indirect=True)
async def test_every_success_renews_the_known_address_in_memory(
    app_client: Callable[..., Any], clock: FakeClock
) -> None:
    """The exemption lasts 30 days after the latest success from an address, not after the first (memory store:
    only its windows follow the app's clock)."""
    client = await app_client()
    await register(client)
    home = from_address("198.51.100.1")
    login = {"identifier": "alice", "password": PASSWORD}
    first = await client.post("/api/auth/local", json=login, headers=home)
    assert first.status_code == 200, first.text
    clock.advance(timedelta(days=25))
    daily = await client.post("/api/auth/local", json=login, headers=home)
    assert daily.status_code == 200, daily.text
    clock.advance(timedelta(days=15))  # day 40: 15 days after the latest success
    for n in range(5):  # an attacker spends the account's budget from elsewhere
        guess = await client.post(
            "/api/auth/local",
            json={"identifier": "alice", "password": "wrong"},
            headers=from_address(f"192.0.2.{n}"),
        )
        assert guess.status_code == 400, guess.text
    assert_limited(
        await client.post("/api/auth/local", json=login, headers=from_address("192.0.2.99")),
        limit=5,
    )
    owner = await client.post("/api/auth/local", json=login, headers=home)
    assert owner.status_code == 200, owner.text


@pytest.mark.parametrize("prefix", [64, 48])
async def test_ipv6_clients_count_by_their_network(
    app_client: Callable[..., Any], prefix: int
) -> None:
    client = await app_client(rate_limit_ipv6_prefix=prefix)
    for n in range(10):  # other identifiers each time: the address's budget, not an account's
        response = await client.post(
            "/api/auth/local",
            json={"identifier": f"nobody{n}", "password": "wrong"},
            headers=from_address(f"2001:db8:1:2::{n + 1:x}"),
        )
        assert response.status_code == 400
    same_64 = await client.post(
        "/api/auth/local",
        json={"identifier": "nobody-else", "password": "wrong"},
        headers=from_address("2001:db8:1:2:ffff:1:2:3"),
    )
    assert_limited(same_64)
    next_64 = await client.post(
        "/api/auth/local",
        json={"identifier": "nobody-else", "password": "wrong"},
        headers=from_address("2001:db8:1:3::1"),
    )
    if prefix == 64:
        assert next_64.status_code == 400
    else:
        assert_limited(next_64)  # one /48
    reset = await client.post(
        "/api/auth/reset-password",
        json={"code": "x", "password": PASSWORD, "passwordConfirmation": PASSWORD},
        headers=from_address("2001:db8:9::1"),
    )
    assert reset.status_code == 400
    for n in range(9):
        reset = await client.post(
            "/api/auth/reset-password",
            json={"code": "x", "password": PASSWORD, "passwordConfirmation": PASSWORD},
            headers=from_address(f"2001:db8:9::{n + 2:x}"),
        )
        assert reset.status_code == 400, reset.text
    assert_limited(
        await client.post(
            "/api/auth/reset-password",
            json={"code": "x", "password": PASSWORD, "passwordConfirmation": PASSWORD},
            headers=from_address("2001:db8:9::ffff"),
        )
    )


async def test_wrong_current_passwords_for_one_user_are_limited_across_addresses(
    app_client: Callable[..., Any],
) -> None:
    client = await app_client()
    token = (await register(client))["jwt"]
    other = (await register(client, "bob", "bob@example.com"))["jwt"]
    body = {
        "currentPassword": "wrong",
        "password": "New-pass-123",
        "passwordConfirmation": "New-pass-123",
    }
    for n in range(10):  # ten different /64s
        response = await client.post(
            "/api/auth/change-password",
            json=body,
            headers={**bearer(token), **from_address(f"2001:db8:{n + 1:x}::1")},
        )
        assert response.status_code == 400
    assert_limited(
        await client.post(
            "/api/auth/change-password",
            json=body,
            headers={**bearer(token), **from_address("2001:db8:ff::1")},
        )
    )
    bobs = await client.post(
        "/api/auth/change-password",
        json=body,
        headers={**bearer(other), **from_address("2001:db8:ff::1")},
    )
    assert bobs.status_code == 400


async def test_redis_stopped_mid_run_falls_back_to_memory_and_back(
    harness: Harness,
    settings_factory: Callable[..., Settings],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with redis_server() as redis:
        client = await harness.client(settings_factory(redis_url=redis.url, trusted_proxies=PROXY))
        shared = await harness.client(settings_factory(redis_url=redis.url, trusted_proxies=PROXY))
        address = from_address("198.51.100.1")

        async def attempt(on: httpx.AsyncClient, n: int) -> httpx.Response:
            return await on.post(
                "/api/auth/local",
                json={"identifier": f"nobody{n}", "password": "wrong"},
                headers=address,
            )

        for n in range(4):  # counted in Redis: the second instance sees them
            assert_budget(await attempt(client if n % 2 else shared, n), 9 - n, now=time.time())
        assert await keys_in(redis.url)

        redis.kill()
        for n in range(10):  # this instance's memory: a fresh budget, still a budget
            response = await attempt(client, 10 + n)
            assert response.status_code == 400
            assert_budget(response, 9 - n, now=clock().timestamp())
        assert_limited(await attempt(client, 20))
        assert "rate-limit store unreachable; counting in this instance's memory" in caplog.text
        metrics = (await client.get("/metrics")).text
        assert metric(metrics, "refreshd_rate_limit_store_up") == 0
        assert metric(metrics, "refreshd_rate_limit_fallbacks_total") >= 11

        redis.start()  # an empty Redis on the same port
        assert_limited(await attempt(client, 21))  # within the retry interval: still memory
        clock.advance(timedelta(seconds=SHARED_RETRY_SECONDS))
        back = await attempt(client, 22)
        assert back.status_code == 400
        assert_budget(back, 9, now=time.time())  # counted in the new Redis again
        assert "rate-limit store reachable again; counting in Redis" in caplog.text
        assert await keys_in(redis.url)
        metrics = (await client.get("/metrics")).text
        assert metric(metrics, "refreshd_rate_limit_store_up") == 1


async def test_register_refuses_a_taken_name_before_hashing(client: httpx.AsyncClient) -> None:
    await register(client)

    async def hashes() -> float:
        text = (await client.get("/metrics")).text
        return labelled_metric(text, "refreshd_password_hash_seconds_count", 'operation="hash"')

    before = await hashes()
    for username, email in (("alice", "new@example.com"), ("new", "ALICE@example.com")):
        response = await client.post(
            "/api/auth/local/register",
            json={"username": username, "email": email, "password": PASSWORD},
        )
        assert error_of(response)["message"] == "Email or Username are already taken"
    assert await hashes() == before


async def test_every_budget_holds_while_redis_is_unreachable(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await harness.client(
        settings_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0", trusted_proxies=PROXY)
    )
    token = (await register(client, "bob", "bob@example.com"))["jwt"]
    for n in range(5):  # the account's attempts, across addresses
        guess = await client.post(
            "/api/auth/local",
            json={"identifier": "bob", "password": "wrong"},
            headers=from_address(f"198.51.100.{n}"),
        )
        assert guess.status_code == 400, guess.text
    assert_limited(
        await client.post(
            "/api/auth/local",
            json={"identifier": "bob", "password": PASSWORD},
            headers=from_address("198.51.100.99"),
        ),
        limit=5,
    )
    for n in range(10):  # one mailbox, across addresses
        forgot = await by_email(client, "forgot-password", "victim@example.com", f"192.0.2.{n}")
        assert forgot.status_code == 200, forgot.text
    assert_limited(await by_email(client, "forgot-password", "victim@example.com", "192.0.2.99"))
    for n in range(10):  # one address, fresh emails
        sent = await by_email(client, "send-email-confirmation", f"x{n}@example.com", "192.0.2.200")
        assert sent.status_code == 200, sent.text
    assert_limited(
        await by_email(client, "send-email-confirmation", "x10@example.com", "192.0.2.200")
    )
    body = {"currentPassword": "wrong", "password": "New-pass-123", "passwordConfirmation": "x"}
    for n in range(10):  # one user, across addresses
        change = await client.post(
            "/api/auth/change-password",
            json=body,
            headers={**bearer(token), **from_address(f"2001:db8:{n + 1:x}::1")},
        )
        assert change.status_code == 400, change.text
    assert_limited(
        await client.post(
            "/api/auth/change-password",
            json=body,
            headers={**bearer(token), **from_address("2001:db8:ff::1")},
        )
    )


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/api/auth/local", b'{"identifier": "\\ud800", "password": "x"}'),
        ("/api/auth/local", b'{"identifier": "  ", "password": "x"}'),
        ("/api/auth/forgot-password", b'{"email": "\\udfff@example.com"}'),
        ("/api/auth/send-email-confirmation", b'{"email": ["not", "a", "string"]}'),
    ],
)
async def test_budget_keys_never_turn_odd_input_into_a_500(
    app_client: Callable[..., Any], path: str, raw: bytes
) -> None:
    client = await app_client()
    response = await client.post(
        path,
        content=raw,
        headers={"content-type": "application/json", **from_address("::ffff:198.51.100.1")},
    )
    assert response.status_code in (200, 400), response.text
