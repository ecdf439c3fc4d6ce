"""The target side of a Strapi import: which users here a batch touches, and its bulk writes, in the caller's
transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, or_, select, text, update

from app.store.database import Runner
from app.store.tables import SESSIONS, USERS

# Values per IN list and rows per INSERT: well under SQLite's and asyncpg's bound-parameter limits.
CHUNK = 1000
FIELDS = (
    "document_id",
    "username",
    "email",
    "provider",
    "password_hash",
    "confirmed",
    "blocked",
    "created_at",
    "updated_at",
    "published_at",
)
_UPDATE_BY_ID = (
    update(USERS)
    .where(USERS.c.id == bindparam("match_id"))
    .values({name: bindparam(f"new_{name}", type_=USERS.c[name].type) for name in FIELDS})
)
# The lookup is planned for its values each time. A generic plan made while the table was small (a sequential scan)
# would stay cached as the import fills the table, until an ANALYZE (bench/results/2026-11-28-import-plan-cache.md).
_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")
# The checks and the writes must see the same table: hold off other writers (registrations, blocks) for the batch.
# Reads, logins' row locks included, go on. SQLite's writes are serialized already (BEGIN IMMEDIATE).
_LOCK_USERS = text("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
# Explicit ids bypass the sequence: move it past them (never backwards) so registrations do not collide.
_SEQUENCE_PAST_IDS = text(
    "SELECT setval(pg_get_serial_sequence('users', 'id'),"
    " GREATEST((SELECT MAX(id) FROM users), nextval(pg_get_serial_sequence('users', 'id')) - 1))"
)
_ANALYZE = text("ANALYZE users")


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ImportTarget:
    def __init__(self, runner: Runner, *, postgres: bool) -> None:
        self._runner = runner
        self._postgres = postgres

    async def begin_batch(self) -> None:
        """At the start of a batch's transaction."""
        if self._postgres:
            await self._runner.run(_CUSTOM_PLANS)
            await self._runner.run(_LOCK_USERS)

    async def related(self, candidates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every user here that shares an id, username, email or documentId with a candidate."""
        found: dict[int, dict[str, Any]] = {}
        for chunk in _chunks(candidates):
            query = select(USERS).where(
                or_(
                    USERS.c.id.in_([v["id"] for v in chunk]),
                    USERS.c.username.in_([v["username"] for v in chunk]),
                    USERS.c.email.in_([v["email"] for v in chunk]),
                    USERS.c.document_id.in_([v["document_id"] for v in chunk]),
                )
            )
            for row in await self._runner.all(query):
                found[row["id"]] = row
        return list(found.values())

    async def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        for chunk in _chunks(rows, CHUNK // len(FIELDS)):
            await self._runner.run(insert(USERS).values(list(chunk)))
        if self._postgres and rows:
            await self._runner.run(_SEQUENCE_PAST_IDS)

    async def update(self, rows: Sequence[dict[str, Any]]) -> None:
        for values in rows:
            new = {f"new_{name}": values[name] for name in FIELDS}
            await self._runner.run(_UPDATE_BY_ID, {"match_id": values["id"], **new})

    async def revoke_sessions(self, user_ids: Sequence[int], reason: str, *, now: datetime) -> None:
        for chunk in _chunks(user_ids):
            await self._runner.run(
                update(SESSIONS)
                .where(SESSIONS.c.user_id.in_(list(chunk)), SESSIONS.c.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason=reason)
            )

    async def analyze(self) -> None:
        """Fresh statistics for the app's own queries on a table that may just have grown from nothing."""
        if self._postgres:
            await self._runner.run(_ANALYZE)
