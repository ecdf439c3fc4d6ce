from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from tests.support import (
    FakeClock,
    asyncpg_dsn,
    make_settings,
    migrate,
    recreate_postgres_database,
)

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> str:
    """A database of the suite's own, migrated once; each test starts from empty tables."""
    url = recreate_postgres_database("test")
    migrate(url)
    return url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def migrated(backend: str, request: pytest.FixtureRequest) -> str:
    """The migrated source for this backend: the SQLite template file, or the PostgreSQL URL."""
    name = "sqlite_template" if backend == "sqlite" else "postgres_database"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def database_url(backend: str, migrated: str, tmp_path: Path) -> str:
    """A migrated, empty database for one test."""
    if backend == "sqlite":
        path = tmp_path / "refreshd.db"
        shutil.copyfile(migrated, path)
        return f"sqlite+aiosqlite:///{path}"
    conn = await asyncpg.connect(asyncpg_dsn(migrated))
    try:
        await conn.execute(
            "TRUNCATE users, sessions, account_tokens, audit_events RESTART IDENTITY CASCADE"
        )
    finally:
        await conn.close()
    return migrated


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings_factory(database_url: str) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        return make_settings(database_url, **overrides)

    return build


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


class Harness:
    """Starts apps (with their lifespans) and gives HTTP clients bound to them."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.apps: list[FastAPI] = []
        self._stack: list[Any] = []

    async def client(
        self, settings: Settings, peer: tuple[str, int] = ("203.0.113.7", 51000)
    ) -> httpx.AsyncClient:
        app: FastAPI = create_app(settings, clock=self.clock)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        self._stack.append(lifespan)
        self.apps.append(app)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=peer),
            base_url="http://testserver",
        )
        self._stack.append(client)
        return client

    async def close(self) -> None:
        while self._stack:
            await self._stack.pop().__aexit__(None, None, None)


@pytest.fixture
async def harness(clock: FakeClock) -> AsyncIterator[Harness]:
    h = Harness(clock)
    try:
        yield h
    finally:
        await h.close()


@pytest.fixture
async def client(harness: Harness, settings: Settings) -> httpx.AsyncClient:
    return await harness.client(settings)
