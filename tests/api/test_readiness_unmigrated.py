"""An unmigrated database is named as such by /readyz (and the command line: tests/system/test_operator_errors.py),
never reported as unreachable."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.services.schema import NOT_MIGRATED
from tests.conftest import Harness
from tests.support import make_settings, recreate_postgres_database


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_readyz_says_the_schema_is_not_migrated(
    harness: Harness, tmp_path: Path, backend: str
) -> None:
    if backend == "sqlite":
        url = (
            f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"  # created empty by the first connection
        )
    else:
        url = await asyncio.to_thread(recreate_postgres_database, "unmigrated_readyz")
    client = await harness.client(make_settings(url))
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "ok",
        "migrations": "schema not migrated: run `refreshd migrate`",
    }
    assert response.json()["migrations"] == NOT_MIGRATED
