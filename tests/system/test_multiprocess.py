"""Two server processes on one PostgreSQL database: a token refreshed through both gets exactly one successor."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.servers import running_servers
from tests.support import asyncpg_dsn, migrate, recreate_postgres_database

pytestmark = pytest.mark.slow

PASSWORD = "Secret-pass-123"


@pytest.fixture(scope="module")
def shared_postgres() -> str:
    url = recreate_postgres_database("multiprocess")
    migrate(url)
    return url


async def _generations(url: str) -> list[tuple[int, object]]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch("SELECT generation, revoked_at FROM sessions WHERE generation > 0")
    finally:
        await conn.close()
    return [(r["generation"], r["revoked_at"]) for r in rows]


def test_twenty_simultaneous_refreshes_through_two_processes(
    shared_postgres: str, tmp_path: Path
) -> None:
    with running_servers(shared_postgres, 2, tmp_path) as servers:

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=30) as client:
                first, second = (s.url for s in servers)
                registered = await client.post(
                    f"{first}/api/auth/local/register",
                    json={"username": "alice", "email": "alice@example.com", "password": PASSWORD},
                )
                assert registered.status_code == 200, registered.text
                login = await client.post(
                    f"{second}/api/auth/local",
                    json={"identifier": "alice", "password": PASSWORD, "requestRefresh": True},
                )
                token = login.json()["refreshToken"]
                responses = await asyncio.gather(
                    *(
                        client.post(
                            f"{(first, second)[i % 2]}/api/auth/refresh",
                            json={"refreshToken": token},
                        )
                        for i in range(20)
                    )
                )
                assert [r.status_code for r in responses] == [200] * 20
                successors = {r.json()["refreshToken"] for r in responses}
                assert len(successors) == 1
                assert await _generations(shared_postgres) == [(2, None)]
                # The one successor works on either process; the original is now spent.
                (successor,) = successors
                assert (
                    await client.post(
                        f"{second}/api/auth/refresh", json={"refreshToken": successor}
                    )
                ).status_code == 200

        asyncio.run(scenario())
