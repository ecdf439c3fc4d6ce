"""Housekeeping: dead sessions are deleted in batches; live ones are untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from jose import jwt as jose_jwt
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.models import Session
from app.services.purge import Writer, purge_sessions
from app.settings import Settings
from app.store import Store
from app.store.housekeeping import batch_ids
from app.store.predicates import dead
from app.store.tables import SESSIONS
from tests.api.helpers import bearer, login, register
from tests.conftest import Harness
from tests.support import FakeClock


async def _count(db: AsyncEngine) -> int:
    async with db.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(Session)) or 0)


@pytest.fixture(params=["job", "server"])
async def write(
    request: pytest.FixtureRequest, harness: Harness, client: httpx.AsyncClient, settings: Settings
) -> AsyncIterator[Writer]:
    """How a purge commits its batches: on a store of its own (``refreshd purge``), or on the running server's
    hot path (its periodic purge), next to the requests."""
    if request.param == "server":
        yield harness.apps[-1].state.runtime.store.write_alone
        return
    store = Store.open(settings)
    try:
        yield store.write_alone
    finally:
        await store.close()


async def test_purge_deletes_only_dead_sessions(
    client: httpx.AsyncClient, settings: Settings, clock: FakeClock, write: Writer
) -> None:
    await register(client)  # an access-only session: dead once its 15 minutes are over
    live = (await login(client, requestRefresh=True)).json()
    revoked = (await login(client, requestRefresh=True)).json()
    await client.post("/api/auth/logout", headers=bearer(revoked["jwt"]))
    idle = (await login(client, requestRefresh=True)).json()
    db = create_async_engine(settings.database_url)
    try:
        idle_sid = jose_jwt.get_unverified_claims(idle["jwt"])["sid"]
        async with db.begin() as connection:
            # This one's absolute lifetime ends in ten minutes.
            await connection.execute(
                update(Session)
                .where(Session.id == idle_sid)
                .values(expires_at=clock.now + timedelta(minutes=10))
            )
        assert await _count(db) == 4
        clock.advance(timedelta(minutes=20))
        refreshed = await client.post(
            "/api/auth/refresh", json={"refreshToken": live["refreshToken"]}
        )
        assert refreshed.status_code == 200
        deleted = await purge_sessions(
            write, now=clock.now, access_ttl=timedelta(minutes=15), batch_size=1
        )
        assert deleted == 3  # access-only and over, revoked, past its absolute end
        assert await _count(db) == 1
        # Idle for 30 days plus an access token's life: the refresh token can never be used again.
        ttl = timedelta(minutes=15)
        clock.advance(timedelta(days=30, minutes=14))
        assert await purge_sessions(write, now=clock.now, access_ttl=ttl, batch_size=9) == 0
        clock.advance(timedelta(minutes=2))
        assert await purge_sessions(write, now=clock.now, access_ttl=ttl, batch_size=9) == 1
        assert await _count(db) == 0
    finally:
        await db.dispose()


async def test_purge_stops_after_max_batches(
    client: httpx.AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    await register(client)
    for _ in range(5):
        await login(client)
    clock.advance(timedelta(hours=1))
    db = Store.open(settings)
    engine = create_async_engine(settings.database_url)
    try:
        deleted = await purge_sessions(
            db.write_alone,
            now=clock.now,
            access_ttl=timedelta(minutes=15),
            batch_size=2,
            max_batches=2,
        )
        assert deleted == 4
        assert await _count(engine) == 2
    finally:
        await db.close()
        await engine.dispose()


async def test_each_purge_pass_finds_its_rows_through_an_index(
    settings: Settings, clock: FakeClock
) -> None:
    """A batch that scanned the table would hold SQLite's write lock for a pass over every live session."""
    db = create_async_engine(settings.database_url)
    is_sqlite = settings.is_sqlite
    try:
        async with db.connect() as connection:
            if not is_sqlite:
                # The test table is tiny: without this, PostgreSQL rightly prefers a scan whatever the indexes.
                await connection.exec_driver_sql("SET enable_seqscan = off")
            values = {"now_": clock.now, "access_cutoff": clock.now - timedelta(minutes=15)}
            for condition in dead():
                batch = batch_ids(SESSIONS, condition).params(batch=250, **values)
                compiled = batch.compile(
                    connection.sync_connection, compile_kwargs={"literal_binds": True}
                )
                prefix = "EXPLAIN QUERY PLAN " if is_sqlite else "EXPLAIN "
                plan = " ".join(
                    str(row[-1]) for row in await connection.exec_driver_sql(prefix + str(compiled))
                )
                assert "INDEX" in plan.upper(), (str(condition), plan)
                assert "SCAN sessions" not in plan, plan
                assert "Seq Scan" not in plan, plan
    finally:
        await db.dispose()
