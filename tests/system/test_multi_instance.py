"""Two server processes on one PostgreSQL and one Redis, under interleaved load: logins, refreshes of the same
tokens through both, logouts and revocations. No token works after its revocation, no 5xx, one successor per
rotation."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import coredis
import httpx
import pytest

from tests.servers import running_servers
from tests.support import TEST_REDIS_URL, migrate, recreate_postgres_database

pytestmark = pytest.mark.slow

PASSWORD = "Secret-pass-123"
USERS = 6
ROUNDS = 4


@pytest.fixture(scope="module")
def shared_postgres() -> str:
    url = recreate_postgres_database("multi_instance")
    migrate(url)
    return url


class Load:
    def __init__(self, client: httpx.AsyncClient, bases: list[str]) -> None:
        self.client = client
        self.bases = bases
        self.statuses: list[int] = []
        self.random = random.Random(7)

    def base(self) -> str:
        return self.random.choice(self.bases)

    async def call(self, method: str, base: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.request(method, f"{base}{path}", **kwargs)
        self.statuses.append(response.status_code)
        assert response.status_code < 500, response.text
        return response

    async def login(self, username: str) -> dict[str, Any]:
        response = await self.call(
            "POST",
            self.base(),
            "/api/auth/local",
            json={"identifier": username, "password": PASSWORD, "requestRefresh": True},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def race_refresh(self, token: str) -> dict[str, Any]:
        """The same token through both instances at once: every answer is the one successor."""
        responses = await asyncio.gather(
            *(
                self.call("POST", base, "/api/auth/refresh", json={"refreshToken": token})
                for base in self.bases * 2
            )
        )
        assert [r.status_code for r in responses] == [200] * len(responses)
        assert len({r.json()["refreshToken"] for r in responses}) == 1
        body: dict[str, Any] = responses[0].json()
        return body

    async def assert_dead(self, device: dict[str, Any]) -> None:
        for base in self.bases:
            refreshed = await self.call(
                "POST", base, "/api/auth/refresh", json={"refreshToken": device["refreshToken"]}
            )
            assert refreshed.status_code == 401, refreshed.text
            assert refreshed.json()["error"]["details"]["code"] == "REFRESH_TOKEN_REVOKED"
            me = await self.call(
                "GET", base, "/api/users/me", headers={"Authorization": f"Bearer {device['jwt']}"}
            )
            assert me.status_code == 401, me.text
            assert me.json()["error"]["message"] == "Invalid credentials", me.text

    async def logout(self, **kwargs: Any) -> None:
        response = await self.call("POST", self.base(), "/api/auth/logout", **kwargs)
        assert response.status_code == 200, response.text
        assert response.json() == {"ok": True}

    async def assert_alive(self, device: dict[str, Any]) -> None:
        me = await self.call(
            "GET",
            self.base(),
            "/api/users/me",
            headers={"Authorization": f"Bearer {device['jwt']}"},
        )
        assert me.status_code == 200, me.text

    async def user_story(self, index: int) -> None:
        username = f"user{index}"
        registered = await self.call(
            "POST",
            self.base(),
            "/api/auth/local/register",
            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        )
        assert registered.status_code == 200, registered.text
        for round_ in range(ROUNDS):
            device = await self.login(username)
            other = await self.login(username)
            for _ in range(3):
                device = await self.race_refresh(device["refreshToken"])
            await self.assert_alive(device)
            way = (index + round_) % 3
            bearer = {"Authorization": f"Bearer {other['jwt']}"}
            if way == 0:  # logout of this session, through one instance
                await self.logout(headers={"Authorization": f"Bearer {device['jwt']}"})
                await self.assert_dead(device)
                await self.assert_alive(other)
            elif way == 1:  # revoked from another session, through the other instance
                sessions = await self.call(
                    "GET", self.bases[0], "/api/auth/sessions", headers=bearer
                )
                target = next(
                    s["id"]
                    for s in sessions.json()["data"]
                    if not s["current"] and s["id"] == _sid(device["jwt"])
                )
                deleted = await self.call(
                    "DELETE", self.bases[1], f"/api/auth/sessions/{target}", headers=bearer
                )
                assert deleted.status_code == 200
                await self.assert_dead(device)
                await self.assert_alive(other)
            else:  # log out everywhere with only the refresh token
                await self.logout(json={"refreshToken": other["refreshToken"], "scope": "all"})
                await self.assert_dead(device)
                await self.assert_dead(other)


def _sid(jwt: str) -> str:
    from jose import jwt as jose_jwt

    return str(jose_jwt.get_unverified_claims(jwt)["sid"])


def test_interleaved_load_across_two_instances(shared_postgres: str, tmp_path: Path) -> None:
    async def flush_redis() -> None:
        redis: coredis.Redis[Any] = coredis.Redis.from_url(TEST_REDIS_URL)
        await redis.flushdb()

    asyncio.run(flush_redis())
    with running_servers(
        shared_postgres, 2, tmp_path, REDIS_URL=TEST_REDIS_URL, RATE_LIMIT_MAX="1000"
    ) as servers:

        async def scenario() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as client:
                load = Load(client, [s.url for s in servers])
                await asyncio.gather(*(load.user_story(i) for i in range(USERS)))
                return load.statuses

        statuses = asyncio.run(scenario())
    assert len(statuses) > 300
    assert max(statuses) < 500
