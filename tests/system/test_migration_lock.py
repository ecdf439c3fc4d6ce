"""Two instances starting at once on one PostgreSQL take turns on the migration.

The test holds the migrations' advisory lock itself, starts two ``alembic upgrade head`` processes (what
``docker/entrypoint.sh`` runs), waits until PostgreSQL shows both of them queued on that lock with nothing
migrated yet, then lets go: both must succeed, one creating the schema and the other finding it at head.
Without the lock in ``migrations/env.py`` neither would queue, and the test fails at the first wait.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from app.migrations_info import SCHEMA_HEAD
from tests.support import asyncpg_dsn, recreate_postgres_database

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# The key migrations/env.py locks: the bytes of "refreshd" as one 64-bit number.
MIGRATION_LOCK_KEY = int.from_bytes(b"refreshd", "big")
WAIT_TIMEOUT = 60.0
MIGRATE_TIMEOUT = 120.0

# A bigint advisory key shows in pg_locks as classid (high 32 bits) and objid (low 32 bits).
WAITERS = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = $1)
  AND classid = $2 AND objid = $3 AND objsubid = 1
"""


def test_two_migrations_started_at_once_take_turns(tmp_path: Path) -> None:
    url = recreate_postgres_database("migration_lock")
    database = url.rsplit("/", 1)[1]
    env = {**os.environ, "DATABASE_URL": url}
    env.pop("ENVIRONMENT", None)

    async def scenario() -> tuple[list[int], list[str], str | None, set[str]]:
        holder = await asyncpg.connect(asyncpg_dsn(url))
        logs = [tmp_path / f"migrate-{n}.log" for n in (1, 2)]
        processes: list[asyncio.subprocess.Process] = []
        try:
            await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
            for log in logs:
                with log.open("wb") as sink:
                    processes.append(
                        await asyncio.create_subprocess_exec(
                            sys.executable,
                            "-m",
                            "alembic",
                            "upgrade",
                            "head",
                            cwd=ROOT,
                            env=env,
                            stdin=asyncio.subprocess.DEVNULL,
                            stdout=sink,
                            stderr=asyncio.subprocess.STDOUT,
                        )
                    )

            deadline = time.monotonic() + WAIT_TIMEOUT
            high, low = MIGRATION_LOCK_KEY >> 32, MIGRATION_LOCK_KEY & 0xFFFFFFFF
            while await holder.fetchval(WAITERS, database, high, low) < 2:
                for process, log in zip(processes, logs, strict=True):
                    assert process.returncode is None, (
                        f"a migration ran without waiting for the lock:\n{log.read_text()}"
                    )
                assert time.monotonic() < deadline, "the migrations never both queued on the lock"
                await asyncio.sleep(0.05)
            # Both are queued and neither has touched the schema.
            assert await holder.fetchval("SELECT to_regclass('alembic_version')") is None

            await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
            codes = [
                await asyncio.wait_for(process.wait(), MIGRATE_TIMEOUT) for process in processes
            ]
            head = await holder.fetchval("SELECT version_num FROM alembic_version")
            tables = {
                row["tablename"]
                for row in await holder.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            }
            return codes, [log.read_text() for log in logs], head, tables
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            await holder.close()

    codes, outputs, head, tables = asyncio.run(scenario())
    assert codes == [0, 0], "\n".join(outputs)
    assert not any("Traceback" in output for output in outputs), "\n".join(outputs)
    assert head == SCHEMA_HEAD
    assert {"users", "sessions", "account_tokens", "audit_events", "alembic_version"} <= tables
    # One of the two created the schema; the other found it at head and ran no migration.
    fewer, more = sorted(output.count("Running upgrade") for output in outputs)
    assert fewer == 0, "\n".join(outputs)
    assert more > 0, "\n".join(outputs)
