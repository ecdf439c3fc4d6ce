"""How fast the Strapi importer carries users over, into SQLite and into PostgreSQL.

Builds a synthetic Strapi 5 SQLite database (``up_users`` as Strapi makes it, epoch-millisecond timestamps, real
bcryptjs-format hashes), then, for each target, migrates an empty refreshd database and times:
a first import (every user created), a re-import with nothing changed, a re-import after every user changed in
Strapi (every user updated) and a dry run.

    uv run --frozen python bench/import_bench.py [--users 100000] [--batch-size 2000] [--output FILE]

PostgreSQL: the server of ``TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``); the bench
drops and creates the database ``refreshd_bench_import`` there. Results go to ``bench/results/import.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import sqlite3
import string
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import bcrypt
import sqlalchemy
from alembic import command
from alembic.config import Config
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.services.importer import ImportReport, import_strapi  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.store import Store  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BENCH_DATABASE = "refreshd_bench_import"
RESULTS = ROOT / "bench" / "results" / "import.md"
COMMAND = "uv run --frozen python bench/import_bench.py"

# up_users exactly as Strapi 5.54.0 creates it on SQLite (the admin_users foreign keys left out: no such table here).
STRAPI_UP_USERS = """
CREATE TABLE `up_users` (`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL, `document_id` varchar(255) NULL,
`username` varchar(255) NULL, `email` varchar(255) NULL, `provider` varchar(255) NULL, `password` varchar(255) NULL,
`reset_password_token` varchar(255) NULL, `confirmation_token` varchar(255) NULL, `confirmed` boolean NULL,
`blocked` boolean NULL, `created_at` datetime NULL, `updated_at` datetime NULL, `published_at` datetime NULL,
`created_by_id` integer NULL, `updated_by_id` integer NULL, `locale` varchar(255) NULL);
CREATE INDEX `up_users_documents_idx` on `up_users` (`document_id`, `locale`, `published_at`);
"""


def _document_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return secrets.choice(string.ascii_lowercase) + "".join(
        secrets.choice(alphabet) for _ in range(23)
    )


def make_strapi_sqlite(path: Path, users: int) -> None:
    """``users`` local Strapi users; one real bcrypt hash shared by all (the importer copies, never hashes)."""
    password_hash = bcrypt.hashpw(b"Bench-pass-123", bcrypt.gensalt(10, prefix=b"2a")).decode()
    start_ms = 1_767_225_600_000  # 2026-01-01

    def rows() -> Iterator[tuple[object, ...]]:
        for i in range(1, users + 1):
            stamp = start_ms + i * 1000
            yield (
                i,
                _document_id(),
                f"user{i}",
                f"user{i}@example.com",
                "local",
                password_hash,
                None,
                None,
                1,
                1 if i % 100 == 0 else 0,
                stamp,
                stamp,
                stamp,
            )

    db = sqlite3.connect(path)
    try:
        db.executescript(STRAPI_UP_USERS)
        db.executemany(
            "INSERT INTO up_users (id, document_id, username, email, provider, password,"
            " reset_password_token, confirmation_token, confirmed, blocked, created_at, updated_at,"
            " published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows(),
        )
        db.commit()
    finally:
        db.close()


def touch_every_user(path: Path) -> None:
    """An edit of every user in Strapi (a later updated_at, confirmed flipped): the next import updates them all."""
    db = sqlite3.connect(path)
    try:
        db.execute("UPDATE up_users SET updated_at = updated_at + 1000, confirmed = 1 - confirmed")
        db.commit()
    finally:
        db.close()


def migrate(database_url: str) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


async def recreate_postgres(name: str) -> str:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)


def bench_settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        environment="test",
        database_url=database_url,
        jwt_secret="bench-access-secret-" + "a" * 40,
        refresh_jwt_secret="bench-refresh-secret-" + "b" * 40,
        log_level="WARNING",
    )


@dataclass
class Run:
    target: str
    run: str
    report: ImportReport
    seconds: float

    @property
    def rate(self) -> float:
        return self.report.read / self.seconds


async def timed_import(
    target: str,
    run: str,
    source: Path,
    db: Store,
    *,
    batch_size: int,
    users: int,
    dry_run: bool = False,
    show_progress: bool,
) -> Run:
    bar = tqdm(total=users, desc=f"{target}: {run}", unit="user", disable=not show_progress)
    started = time.perf_counter()
    report = await import_strapi(
        str(source),
        db,
        dry_run=dry_run,
        batch_size=batch_size,
        progress=bar.update,
        now=datetime.now(UTC),
    )
    seconds = time.perf_counter() - started
    bar.close()
    return Run(target, run, report, seconds)


async def bench_target(
    target: str, database_url: str, source: Path, users: int, batch_size: int, show_progress: bool
) -> list[Run]:
    await asyncio.to_thread(migrate, database_url)
    db = Store.open(bench_settings(database_url))
    runs: list[Run] = []
    try:
        for run, dry_run in (
            ("first import", False),
            ("re-import, nothing changed", False),
            ("re-import, every user changed", False),
            ("dry run", True),
        ):
            if run == "re-import, every user changed":
                touch_every_user(source)
            runs.append(
                await timed_import(
                    target,
                    run,
                    source,
                    db,
                    batch_size=batch_size,
                    users=users,
                    dry_run=dry_run,
                    show_progress=show_progress,
                )
            )
        stored = len(await db.users.names())
    finally:
        await db.close()
    first, again, changed, dry = (run.report for run in runs)
    assert (first.created, first.conflicts) == (users, []), first.summary()
    assert (again.unchanged, again.updated, again.created) == (users, 0, 0), again.summary()
    assert (changed.updated, changed.unchanged) == (users, 0), changed.summary()
    assert dry.unchanged == users, dry.summary()
    assert stored == users, stored
    return runs


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, {platform.system()} {platform.release()}"


async def postgres_version() -> str:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def render(
    runs: list[Run],
    *,
    users: int,
    batch_size: int,
    build_seconds: float,
    pg: str,
    load: tuple[float, float, float],
) -> str:
    lines = [
        "# Strapi import benchmark",
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine()}",
        f"- Load average at start (1/5/15 min): {' / '.join(f'{x:.2f}' for x in load)}"
        " (other work on the machine makes the numbers vary)",
        f"- Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
        f"aiosqlite/SQLite {sqlite3.sqlite_version}, asyncpg {asyncpg.__version__}, PostgreSQL {pg}",
        f"- Source: synthetic Strapi 5 SQLite, {users:,} local users (1 % blocked), "
        f"built in {build_seconds:.1f} s; batch size {batch_size}",
        f"- Rerun: `{COMMAND}`",
        "",
        "| target | run | users | seconds | users/s |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {run.target} | {run.run} | {run.report.read:,} | {run.seconds:.2f} | {run.rate:,.0f} |"
        for run in runs
    ]
    return "\n".join(lines) + "\n"


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    show = not args.no_progress
    load = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="refreshd-import-bench-") as tmp:
        source = Path(tmp) / "strapi.sqlite"
        started = time.perf_counter()
        make_strapi_sqlite(source, args.users)
        build_seconds = time.perf_counter() - started
        runs = await bench_target(
            "SQLite",
            f"sqlite+aiosqlite:///{Path(tmp) / 'refreshd.db'}",
            source,
            args.users,
            args.batch_size,
            show,
        )
        pg_url = await recreate_postgres(BENCH_DATABASE)
        runs += await bench_target("PostgreSQL", pg_url, source, args.users, args.batch_size, show)

    text = render(
        runs,
        users=args.users,
        batch_size=args.batch_size,
        build_seconds=build_seconds,
        pg=await postgres_version(),
        load=load,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
