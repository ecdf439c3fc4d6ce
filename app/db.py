"""The models' foundation: their declarative base with a naming convention, and timestamps that are UTC on every
database. Alembic builds the tables from these; the store (``app.store``) runs every statement on them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops the zone: re-attach it).

    On SQLite the value is stored as SQLAlchemy's SQLite dialect stores a DATETIME, ``2026-11-28 04:05:06.007000``
    (so that comparisons between stored text hold), produced and read with ``isoformat``/``fromisoformat`` in one
    step: a refresh binds a dozen of them, and the generic chain (this decorator, then the dialect's formatter)
    cost more than the statement itself (bench/results/ab.md, "One store")."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            stored = self.process_bind_param(value, dialect)
            return None if stored is None else stored.isoformat(" ", "microseconds")

        return process

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[Any], datetime | None] | None:
        if dialect.driver == "asyncpg":
            return None  # asyncpg reads a timestamptz as an aware datetime in UTC already
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def process(value: str | None) -> datetime | None:
            return (
                None
                if value is None
                else self.process_result_value(datetime.fromisoformat(value), dialect)
            )

        return process

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_ms(value: datetime) -> datetime:
    """Truncate to milliseconds, the precision clients see (``2026-11-27T23:38:04.597Z``)."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)
