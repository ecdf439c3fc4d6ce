"""Alembic environment: async, reading the database URL from the service's own settings."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import app.models  # noqa: F401 - registers the tables on Base.metadata
from app.db import Base
from app.settings import DatabaseSettings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata

# Two instances started at once on one PostgreSQL would both find the schema behind and both create
# it: the second fails on tables that now exist. Each migration run takes this transaction-level
# advisory lock first, so the runs queue: the later one finds the schema at head and does nothing.
# The key is the bytes of "refreshd" read as a 64-bit number.
MIGRATION_LOCK_KEY = int.from_bytes(b"refreshd", "big")


def database_url() -> str:
    # Tests and tools pass a URL explicitly; otherwise the service's settings decide (env, .env).
    explicit = config.attributes.get("database_url")
    return str(explicit) if explicit else DatabaseSettings().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Held until this transaction (all migrations: PostgreSQL's DDL is transactional)
            # ends; taken before Alembic reads the current revision, so a run that waited reads
            # the winner's.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_async_engine(database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_async_migrations())
