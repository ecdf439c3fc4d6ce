"""Housekeeping: dead sessions are deleted in batches; live ones are untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from jose import jwt as jose_jwt
from sqlalchemy import func, select, update

from app.db import Database
from app.models import Session
from app.services.purge import Writer, batch_ids, dead_sessions, purge_sessions
from app.settings import Settings
from tests.api.helpers import bearer, login, register
from tests.conftest import Harness
from tests.support import FakeClock


async def _count(db: Database) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Session)) or 0)


@pytest.fixture(params=["job", "server"])
async def write(
    request: pytest.FixtureRequest, harness: Harness, client: httpx.AsyncClient, settings: Settings
) -> AsyncIterator[Writer]:
    """How a purge commits its batches: on a Database of its own (``refreshd purge``), or on the running server's
    hot path (its periodic purge), next to the requests."""
    if request.param == "server":
        yield harness.apps[-1].state.runtime.hot.write_alone
        return
    db = Database(settings)
    try:
        yield db.write_alone
    finally:
        await db.dispose()


async def test_purge_deletes_only_dead_sessions(
    client: httpx.AsyncClient, settings: Settings, clock: FakeClock, write: Writer
) -> None:
    await register(client)  # an access-only session: dead once its 15 minutes are over
    live = (await login(client, requestRefresh=True)).json()
    revoked = (await login(client, requestRefresh=True)).json()
    await client.post("/api/auth/logout", headers=bearer(revoked["jwt"]))
    idle = (await login(client, requestRefresh=True)).json()
    db = Database(settings)
    try:
        idle_sid = jose_jwt.get_unverified_claims(idle["jwt"])["sid"]
        async with db.write() as session:
            # This one's absolute lifetime ends in ten minutes.
            await session.execute(
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
    db = Database(settings)
    try:
        deleted = await purge_sessions(
            db.write_alone,
            now=clock.now,
            access_ttl=timedelta(minutes=15),
            batch_size=2,
            max_batches=2,
        )
        assert deleted == 4
        assert await _count(db) == 2
    finally:
        await db.dispose()


async def test_each_purge_pass_finds_its_rows_through_an_index(
    settings: Settings, clock: FakeClock
) -> None:
    """A batch that scanned the table would hold SQLite's write lock for a pass over every live session."""
    db = Database(settings)
    try:
        async with db.autocommit_engine.connect() as connection:
            if not db.is_sqlite:
                # The test table is tiny: without this, PostgreSQL rightly prefers a scan whatever the indexes.
                await connection.exec_driver_sql("SET enable_seqscan = off")
            for condition in dead_sessions(clock.now, timedelta(minutes=15)):
                compiled = batch_ids(Session, condition, 250).compile(
                    connection.sync_connection, compile_kwargs={"literal_binds": True}
                )
                prefix = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN "
                plan = " ".join(
                    str(row[-1]) for row in await connection.exec_driver_sql(prefix + str(compiled))
                )
                assert "INDEX" in plan.upper(), (str(condition), plan)
                assert "SCAN sessions" not in plan, plan
                assert "Seq Scan" not in plan, plan
    finally:
        await db.dispose()
