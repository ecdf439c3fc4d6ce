"""Faults: the database stops mid-load, the server is killed mid-load. Nothing hangs, nothing is half-written."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from jose import jwt as jose_jwt

from tests.pg_instance import PostgresInstance, postgres_instance
from tests.servers import Server, running_servers
from tests.support import asyncpg_dsn, migrate

pytestmark = pytest.mark.slow

PASSWORD = "Secret-pass-123"
REQUEST_TIMEOUT = 20.0  # a request that takes longer than this counts as hung
WAIT_TIMEOUT = 60.0  # for the load to reach a point the test waits for
# The restarted server must judge the lost answers' tokens within the reuse grace; a busy machine can take longer
# than the default 10 s to restart, and the window's length is not what this test is about.
RESTART_GRACE = "10m"


@pytest.fixture
def private_postgres() -> Any:
    with postgres_instance() as instance:
        migrate(instance.url)
        yield instance


async def _login_many(client: httpx.AsyncClient, base: str, count: int) -> list[str]:
    tokens = []
    for i in range(count):
        registered = await client.post(
            f"{base}/api/auth/local/register",
            json={"username": f"user{i}", "email": f"user{i}@example.com", "password": PASSWORD},
        )
        assert registered.status_code == 200, registered.text
        login = await client.post(
            f"{base}/api/auth/local",
            json={"identifier": f"user{i}", "password": PASSWORD, "requestRefresh": True},
        )
        assert login.status_code == 200, login.text
        tokens.append(login.json()["refreshToken"])
    return tokens


async def _until(
    condition: Callable[[], bool], workers: list[asyncio.Task[None]], what: str
) -> None:
    """Wait for ``condition``. The workers only end by failing (or when told to stop, after this): one that ended
    fails the test at once, with its own error, instead of leaving the wait to spin."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not condition():
        for worker in workers:
            if worker.done():
                worker.result()  # raises the worker's failure
                raise AssertionError(f"a worker ended while waiting for {what}")
        assert time.monotonic() < deadline, f"no {what} within {WAIT_TIMEOUT}s"
        await asyncio.sleep(0.01)


async def _check_invariants(url: str) -> list[Any]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT s.id, s.generation, s.rotated_at, s.refresh_expires_at, s.expires_at, s.user_id, "
            "u.id AS owner FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.generation > 0"
        )
    finally:
        await conn.close()
    for row in rows:
        assert row["owner"] is not None, "a session without its user"
        assert row["rotated_at"] is not None
        assert row["refresh_expires_at"] is not None
        assert row["refresh_expires_at"] <= row["expires_at"]
    return list(rows)


def test_database_outage_gives_fast_503s_and_recovers(
    private_postgres: PostgresInstance, tmp_path: Path
) -> None:
    with running_servers(private_postgres.url, 1, tmp_path, RATE_LIMIT_ENABLED="false") as servers:
        base = servers[0].url

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as client:
                tokens = await _login_many(client, base, 5)
                statuses: list[int] = []
                stop = asyncio.Event()

                async def chain(token: str) -> None:
                    while not stop.is_set():
                        response = await client.post(
                            f"{base}/api/auth/refresh", json={"refreshToken": token}
                        )
                        statuses.append(response.status_code)
                        if response.status_code == 200:
                            token = response.json()["refreshToken"]
                        elif response.status_code == 503:
                            body = response.json()
                            assert body["error"]["name"] == "ServiceUnavailableError"
                        else:
                            raise AssertionError(response.text)

                workers = [asyncio.create_task(chain(t)) for t in tokens]
                await _until(lambda: statuses.count(200) >= 50, workers, "50 refreshes")
                await asyncio.to_thread(private_postgres.stop)
                await _until(lambda: statuses.count(503) >= 20, workers, "20 answers of 503")
                outage = await client.post(
                    f"{base}/api/auth/local", json={"identifier": "user0", "password": PASSWORD}
                )
                assert outage.status_code == 503
                ready = await client.get(f"{base}/readyz")
                assert ready.status_code == 503
                assert (await client.get(f"{base}/healthz")).status_code == 200
                await asyncio.to_thread(private_postgres.start)
                recovered_at = len(statuses)
                await _until(
                    lambda: statuses[recovered_at:].count(200) >= 50,
                    workers,
                    "recovery (50 refreshes after the restart)",
                )
                stop.set()
                await asyncio.gather(*workers)
                assert set(statuses) <= {200, 503}
                assert (await client.get(f"{base}/readyz")).status_code == 200

        asyncio.run(scenario())
    asyncio.run(_check_invariants(private_postgres.url))


@dataclass
class Chain:
    """One session's refresh chain, as the client saw it."""

    token: str  # the last refresh token the client received: acknowledged
    stopped_by: str | None = None  # why the chain ended: only the kill may end one

    @property
    def session(self) -> tuple[str, int]:
        """(session id, generation) of the acknowledged token."""
        claims = jose_jwt.get_unverified_claims(self.token)
        return str(claims["sid"]), int(claims["gen"])


async def _refresh(client: httpx.AsyncClient, base: str, token: str) -> httpx.Response:
    return await client.post(f"{base}/api/auth/refresh", json={"refreshToken": token})


def test_killing_the_server_mid_load_leaves_every_session_consistent(
    private_postgres: PostgresInstance, tmp_path: Path
) -> None:
    """SIGKILL under refresh load: no session is half-rotated, and a restarted server carries every chain on
    from the last token its client received, whether the rotation in flight was committed (its answer lost with
    the process: the grace hands out the same successor) or not."""
    chains: list[Chain] = []
    env = {"RATE_LIMIT_ENABLED": "false", "REFRESH_TOKEN_REUSE_GRACE": RESTART_GRACE}

    async def load(server: Server) -> None:
        base = server.url
        killed = False
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as client:
            chains.extend(Chain(token) for token in await _login_many(client, base, 8))

            async def run(chain: Chain) -> None:
                while True:
                    try:
                        response = await _refresh(client, base, chain.token)
                    except httpx.TransportError as exc:
                        if not killed:  # a hung or dropped request before the kill: a failure
                            raise AssertionError(f"{chain.session} stopped early: {exc!r}") from exc
                        chain.stopped_by = f"the kill ({type(exc).__name__})"
                        return
                    # Any other answer (a 500, a 401) is a failure: a chain never stops on it silently.
                    assert response.status_code == 200, (chain.session, response.text)
                    chain.token = response.json()["refreshToken"]

            workers = [asyncio.create_task(run(chain)) for chain in chains]
            await _until(
                lambda: sum(chain.session[1] for chain in chains) >= 200,
                workers,
                "200 acknowledged generations",
            )
            killed = True
            os.killpg(server.process.pid, signal.SIGKILL)
            await asyncio.gather(*workers)

    with running_servers(private_postgres.url, 1, tmp_path, **env) as servers:
        asyncio.run(load(servers[0]))
    assert len(chains) == 8
    # Every chain ran until the kill and was ended by it, not by anything else.
    assert all(chain.stopped_by for chain in chains), [chain.stopped_by for chain in chains]
    rows = asyncio.run(_check_invariants(private_postgres.url))
    by_id = {row["id"]: row["generation"] for row in rows}
    for chain in chains:
        sid, generation = chain.session
        # Either the last refresh fully happened (its answer was lost with the process) or not at all.
        assert by_id.get(sid) in (generation, generation + 1), (sid, generation, by_id.get(sid))

    async def resume(base: str) -> None:
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as client:
            for chain in chains:
                sid, generation = chain.session
                # The acknowledged token refreshes: rotated now or, if its rotation was committed before the
                # kill, the same successor handed out again. Either way the next generation: one branch.
                first = await _refresh(client, base, chain.token)
                assert first.status_code == 200, (sid, generation, by_id[sid], first.text)
                successor = Chain(first.json()["refreshToken"])
                assert successor.session == (sid, generation + 1), (by_id[sid], first.text)
                # ... and the chain goes on from there.
                second = await _refresh(client, base, successor.token)
                assert second.status_code == 200, (sid, generation, by_id[sid], second.text)
                assert Chain(second.json()["refreshToken"]).session == (sid, generation + 2)
                me = await client.get(
                    f"{base}/api/users/me",
                    headers={"Authorization": f"Bearer {second.json()['jwt']}"},
                )
                assert me.status_code == 200, me.text

    (tmp_path / "again").mkdir()
    with running_servers(private_postgres.url, 1, tmp_path / "again", **env) as servers:
        ready = httpx.get(f"{servers[0].url}/readyz", timeout=REQUEST_TIMEOUT)
        assert ready.status_code == 200
        asyncio.run(resume(servers[0].url))
    expected = {sid: generation + 2 for sid, generation in (chain.session for chain in chains)}
    after = {
        row["id"]: row["generation"] for row in asyncio.run(_check_invariants(private_postgres.url))
    }
    assert {sid: after[sid] for sid in expected} == expected
