"""The PostgreSQL store's connection pool, against the real server: connections are reused, bounded, replaced
when they fail or idle out, and never handed back in an unknown state."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from app.errors import DatabaseUnavailable
from app.store.postgres import IDLE_LIFETIME_S, FairPool
from tests.support import asyncpg_dsn


@pytest.fixture
def dsn(postgres_database: str) -> str:
    return asyncpg_dsn(postgres_database)


def _pool(dsn: str, size: int, clock: list[float] | None = None) -> FairPool:
    now = clock if clock is not None else [0.0]
    return FairPool(lambda: asyncpg.connect(dsn, timeout=5), size, monotonic=lambda: now[0])


async def _pid(pool: FairPool) -> int:
    return int(await pool.run(lambda connection: connection.fetchval("SELECT pg_backend_pid()")))


async def test_a_connection_is_reused_after_a_statement_error(dsn: str) -> None:
    pool = _pool(dsn, 2)
    try:
        first = await _pid(pool)
        with pytest.raises(asyncpg.DivisionByZeroError):
            await pool.run(lambda connection: connection.fetchval("SELECT 1 / 0"))
        assert await _pid(pool) == first  # the server answered: the connection works
        assert pool.open_connections == 1
    finally:
        await pool.close()


async def test_a_connection_the_server_dropped_is_replaced(dsn: str) -> None:
    pool = _pool(dsn, 1)
    admin = await asyncpg.connect(dsn)
    try:
        first = await _pid(pool)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        with pytest.raises(DatabaseUnavailable):
            await _pid(pool)
        assert pool.open_connections == 0
        second = await _pid(pool)
        assert second != first
    finally:
        await admin.close()
        await pool.close()


async def test_a_cancelled_call_does_not_hand_its_connection_back(dsn: str) -> None:
    """Cancelled mid-statement, a connection is in an unknown state: it is closed, not reused."""
    pool = _pool(dsn, 1)
    try:
        first = await _pid(pool)
        started = asyncio.Event()

        async def sleep(connection: asyncpg.Connection) -> str:
            started.set()
            return str(await connection.execute("SELECT pg_sleep(30)"))

        sleeper = asyncio.ensure_future(pool.run(sleep))
        await started.wait()
        await asyncio.sleep(0)  # the statement goes out
        sleeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeper
        assert pool.open_connections == 0
        assert await _pid(pool) != first
    finally:
        await pool.close()


async def test_a_connection_idle_past_its_lifetime_is_replaced(dsn: str) -> None:
    clock = [100.0]
    pool = _pool(dsn, 1, clock)
    try:
        first = await _pid(pool)
        clock[0] += IDLE_LIFETIME_S - 1
        assert await _pid(pool) == first
        clock[0] += IDLE_LIFETIME_S
        assert await _pid(pool) != first
        assert pool.open_connections == 1
    finally:
        await pool.close()


async def test_never_more_connections_than_its_size(dsn: str) -> None:
    pool = _pool(dsn, 3)
    seen: set[int] = set()
    most = 0

    async def call() -> None:
        nonlocal most
        seen.add(
            await pool.run(lambda c: c.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.01)"))
        )
        most = max(most, pool.open_connections)

    try:
        await asyncio.gather(*(call() for _ in range(40)))
        assert len(seen) == 3
        assert most == 3
    finally:
        await pool.close()


async def test_a_closed_pool_refuses_work_and_closes_its_connections(dsn: str) -> None:
    pool = _pool(dsn, 2)
    await _pid(pool)
    await pool.close()
    assert pool.open_connections == 0
    with pytest.raises(DatabaseUnavailable):
        await _pid(pool)


async def test_connections_idle_past_their_lifetime_are_closed_as_others_are_released(
    dsn: str,
) -> None:
    """A pool grown for a peak shrinks back: each release closes the longest-idle connection once it has idled
    past its lifetime, even though checkouts always take the most recently used one."""
    clock = [100.0]
    pool = _pool(dsn, 3, clock)
    try:
        await asyncio.gather(
            *(pool.run(lambda c: c.execute("SELECT pg_sleep(0.05)")) for _ in range(3))
        )
        assert pool.open_connections == 3
        clock[0] += IDLE_LIFETIME_S - 1  # none idled out yet
        busy = await _pid(pool)
        assert pool.open_connections == 3
        clock[0] += 2  # the two it did not use have now
        assert await _pid(pool) == busy  # and its release closes the longest-idle of them
        assert pool.open_connections == 2
        assert await _pid(pool) == busy
        assert pool.open_connections == 1
    finally:
        await pool.close()
