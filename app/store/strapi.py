"""A Strapi 5 database, read for an import: its ``up_users`` table, on SQLite (opened read-only) or PostgreSQL
(one read-only snapshot). The only SQL refreshd runs on a database that is not its own."""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, Row, column, func, select, table
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

# The source, untyped where drivers disagree: SQLite returns 0/1 and epoch milliseconds, PostgreSQL booleans and
# timestamps; the row mapping below accepts both. The plaintext token columns are deliberately not listed.
UP_USERS = table(
    "up_users",
    column("id", Integer),
    column("document_id"),
    column("username"),
    column("email"),
    column("provider"),
    column("password"),
    column("confirmed"),
    column("blocked"),
    column("created_at"),
    column("updated_at"),
    column("published_at"),
)


class StrapiSourceError(Exception):
    """The source cannot be read as a Strapi database (missing file, no ``up_users`` table, bad URL)."""


def source_engine_url(source_url: str) -> URL:
    """The async URL to read the source with: a file path or ``sqlite:///...`` (opened read-only), or PostgreSQL."""
    if source_url.startswith(("postgres://", "postgresql://", "postgresql+asyncpg://")):
        url = make_url(source_url)
        return url.set(drivername="postgresql+asyncpg")
    if "://" in source_url:
        url = make_url(source_url)
        if url.get_backend_name() != "sqlite" or not url.database:
            raise StrapiSourceError(
                f"unsupported source {url.drivername!r}: give a SQLite file or PostgreSQL"
            )
        path = Path(url.database)
    else:
        path = Path(source_url)
    path = path.expanduser().resolve()
    if not path.is_file():
        raise StrapiSourceError(f"no Strapi database at {path}")
    # mode=ro: reading never creates, migrates or writes to Strapi's file.
    return URL.create(
        "sqlite+aiosqlite",
        database="file:" + urllib.parse.quote(str(path)),
        query={"mode": "ro", "uri": "true"},
    )


async def count_strapi_users(source_url: str) -> int:
    """How many rows ``up_users`` holds (all providers): the total for a progress bar."""
    async with open_source(source_url) as conn:
        return int(await _scalar(conn, select(func.count()).select_from(UP_USERS)))


@contextlib.asynccontextmanager
async def open_source(source_url: str) -> AsyncIterator[AsyncConnection]:
    url = source_engine_url(source_url)
    engine = create_async_engine(url)
    try:
        try:
            conn = await engine.connect()
        except (DBAPIError, OSError) as exc:
            raise StrapiSourceError(f"cannot open the Strapi database: {exc}") from exc
        try:
            if url.get_backend_name() == "postgresql":
                # One read-only snapshot for the whole import: batches agree with each other even if Strapi
                # still runs, and nothing can be written to Strapi's database by mistake.
                await conn.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            yield conn
        finally:
            await conn.close()
    finally:
        await engine.dispose()


async def _scalar(conn: AsyncConnection, statement: Any) -> Any:
    try:
        return await conn.scalar(statement)
    except DBAPIError as exc:
        raise StrapiSourceError(f"cannot read up_users: {exc.orig}") from exc


async def source_batches(
    conn: AsyncConnection, batch_size: int
) -> AsyncIterator[Sequence[Row[Any]]]:
    """Rows ordered by id, ``batch_size`` at a time, each page starting after the last id of the one before."""
    last_id: int | None = None
    while True:
        query = select(UP_USERS).order_by(UP_USERS.c.id).limit(batch_size)
        if last_id is not None:
            query = query.where(UP_USERS.c.id > last_id)
        try:
            rows = (await conn.execute(query)).all()
        except DBAPIError as exc:
            raise StrapiSourceError(f"cannot read up_users: {exc.orig}") from exc
        if not rows:
            return
        yield rows
        last_id = int(rows[-1].id)
        if len(rows) < batch_size:
            return
