"""Carry users over from a Strapi 5 database (its ``up_users`` table, SQLite or PostgreSQL) into refreshd.

What is imported, and why:
- Only ``provider = 'local'`` users with a bcrypt password hash (``$2a$``/``$2b$``/``$2y$``) can log in here, so
  only they are imported. Users of any other provider (social logins, no password; also a null provider, which
  Strapi's own login never matches) are skipped and counted in ``skipped_other_provider``: refreshd has no social
  login, and importing them would only hold usernames and emails that local users may need.
- The id, documentId, username and email (both in Unicode NFKC form, the email lower-cased, as refreshd stores
  and compares them: two spellings of one name are one account, so they conflict), hash (copied, never
  recomputed), confirmed, blocked and the three timestamps are kept, so tokens, clients and foreign references
  that use ``id`` or ``documentId`` keep working. Strapi's plaintext ``reset_password_token`` and ``confirmation_token`` are never read.
- A row that cannot be imported as it is (a malformed hash, a missing email, an id, username, email or documentId
  that already belongs to another user here, or an email, username or documentId repeated in the source, where the
  lowest id keeps it) is reported in ``conflicts`` and skipped; the import goes on.

Re-running is safe: a row whose id is already here with the same documentId is updated in place, or left alone when
nothing changed. refreshd's own later changes win: a row updated here after the source's ``updated_at`` (a password
change, a block) is kept as it is (``kept_newer``), and a bcrypt hash that refreshd re-hashed to argon2id at a login
is not put back. When a re-import blocks a user or replaces their password, their live sessions are revoked, as
refreshd does for its own blocks and password changes.

Each batch is one write transaction, so an interrupted import leaves whole batches, never a half-written user.
"""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Row,
    Table,
    bindparam,
    column,
    func,
    insert,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine

from app.db import Database, utc_ms
from app.models import Session, User
from app.services.sessions import Revocation
from app.services.users import normalize_email, normalize_username

LOCAL = "local"
# bcrypt as bcryptjs writes it: version, two-digit cost 04-31, 22 salt + 31 hash characters.
BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
# Values per IN list: well under SQLite's and asyncpg's bound-parameter limits whatever the batch size.
_LOOKUP_CHUNK = 1000

USERS = cast(Table, User.__table__)
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
_LIMITS = {"document_id": 24, "username": 255, "email": 255}
# As registration stores them, before the limits (NFKC may lengthen a name) and every comparison.
_NORMALIZE: dict[str, Callable[[str], str]] = {
    "username": normalize_username,
    "email": normalize_email,
}

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


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do). Every row read lands in exactly one count."""

    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # Already here and changed by refreshd after the source's updated_at: left as refreshd has it.
    kept_newer: int = 0
    skipped_other_provider: int = 0
    # (source id, reason) for every row skipped because it conflicts or cannot be imported as it is.
    conflicts: list[tuple[int, str]] = field(default_factory=list)
    dry_run: bool = False

    def summary(self, max_conflicts: int = 20) -> str:
        title = "Strapi import (dry run: nothing written)" if self.dry_run else "Strapi import"
        counts = [
            ("read", self.read),
            ("created", self.created),
            ("updated", self.updated),
            ("unchanged", self.unchanged),
            ("kept (changed here since)", self.kept_newer),
            ("skipped (not local)", self.skipped_other_provider),
            ("conflicts (skipped)", len(self.conflicts)),
        ]
        lines = [title] + [f"  {name:<27}{value:>9}" for name, value in counts]
        lines += [
            f"    id {user_id}: {reason}" for user_id, reason in self.conflicts[:max_conflicts]
        ]
        if len(self.conflicts) > max_conflicts:
            lines.append(f"    ... and {len(self.conflicts) - max_conflicts} more")
        return "\n".join(lines)


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
    async with _source(source_url) as conn:
        return int(await _scalar(conn, select(func.count()).select_from(UP_USERS)))


async def import_strapi(
    source_url: str,
    db: Database,
    *,
    dry_run: bool = False,
    batch_size: int = 2000,
    progress: Callable[[int], object] | None = None,
    now: datetime,
) -> ImportReport:
    """Import Strapi's ``up_users`` from ``source_url`` into ``db`` (see the module docstring for the rules).

    The source is read in keyset-paginated batches of ``batch_size`` ids; each batch is checked against the target
    with one lookup and written in one transaction with bulk statements. ``dry_run`` makes every check and count but
    writes nothing. ``progress`` is called after each batch with the number of source rows it covered (tqdm's
    ``update``). ``now`` stamps revoked sessions and stands in for a missing ``created_at``.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = ImportReport(dry_run=dry_run)
    claims = _SourceClaims()
    async with _source(source_url) as conn:
        async for rows in _source_batches(conn, batch_size):
            candidates: list[dict[str, Any]] = []
            for row in rows:
                report.read += 1
                if row.provider != LOCAL:
                    report.skipped_other_provider += 1
                    continue
                mapped = _map_row(row, now)
                if isinstance(mapped, str):
                    report.conflicts.append((int(row.id), mapped))
                    continue
                if reason := claims.claim(mapped):
                    report.conflicts.append((mapped["id"], reason))
                    continue
                candidates.append(mapped)
            if candidates:
                await _apply_batch(db, candidates, report, dry_run=dry_run, now=now)
            if progress is not None:
                progress(len(rows))
    if report.created and not dry_run and not db.is_sqlite:
        # Fresh statistics for the app's own queries on a table that may just have grown from nothing.
        async with db.write() as session:
            await session.execute(text("ANALYZE users"))
    return report


# --- the source -------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _source(source_url: str) -> AsyncIterator[AsyncConnection]:
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


async def _source_batches(
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


def _timestamp(value: object) -> datetime | None:
    """SQLite: epoch milliseconds (or an ISO string); PostgreSQL: a timestamp, naive meaning UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        stamp = datetime.fromtimestamp(value / 1000, tz=UTC)
    elif isinstance(value, str) and value.strip().lstrip("-").isdecimal():
        stamp = datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    elif isinstance(value, str):
        stamp = datetime.fromisoformat(value.strip())
    else:
        raise ValueError(value)
    stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
    return utc_ms(stamp)


def _flag(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "t", "true", "y", "yes"}
    return bool(value)


def _map_row(row: Row[Any], now: datetime) -> dict[str, Any] | str:
    """The target row for a local source row, or why it cannot be imported."""
    values: dict[str, Any] = {"id": int(row.id), "provider": LOCAL}
    for name, source_name in (
        ("document_id", "document_id"),
        ("username", "username"),
        ("email", "email"),
    ):
        value = getattr(row, source_name)
        if not isinstance(value, str) or not value.strip():
            return f"missing {name}"
        value = _NORMALIZE.get(name, str)(value)
        if len(value) > _LIMITS[name]:
            return f"{name} longer than {_LIMITS[name]} characters"
        values[name] = value
    password = row.password
    if not password:
        return "local user without a password hash"
    if not isinstance(password, str) or not BCRYPT_HASH.fullmatch(password):
        return "malformed password hash (not $2a$/$2b$/$2y$ bcrypt)"
    values["password_hash"] = password
    values["confirmed"] = _flag(row.confirmed)
    values["blocked"] = _flag(row.blocked)
    stamps: dict[str, datetime | None] = {}
    for name in ("created_at", "updated_at", "published_at"):
        try:
            stamps[name] = _timestamp(getattr(row, name))
        except (ValueError, OverflowError, OSError):
            return f"unreadable {name}: {getattr(row, name)!r}"
    created = stamps["created_at"] or utc_ms(now)
    values["created_at"] = created
    values["updated_at"] = stamps["updated_at"] or created
    values["published_at"] = stamps["published_at"] or created
    return values


class _SourceClaims:
    """Usernames, emails and documentIds already taken by an earlier (lower id) row of the source."""

    def __init__(self) -> None:
        self._owners: dict[str, dict[str, int]] = {"username": {}, "email": {}, "document_id": {}}

    def claim(self, values: dict[str, Any]) -> str | None:
        for name, owners in self._owners.items():
            owner = owners.get(values[name])
            if owner is not None:
                return f"duplicate {name} {values[name]!r} in the source (user {owner} keeps it)"
        for name, owners in self._owners.items():
            owners[values[name]] = values["id"]
        return None


# --- the target -------------------------------------------------------------------------------------------------


def _chunks(items: Sequence[dict[str, Any]], size: int) -> Iterable[Sequence[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _existing_rows(
    session: AsyncSession, candidates: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every user here that shares an id, username, email or documentId with a candidate."""
    found: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(candidates, _LOOKUP_CHUNK):
        query = select(USERS).where(
            or_(
                USERS.c.id.in_([v["id"] for v in chunk]),
                USERS.c.username.in_([v["username"] for v in chunk]),
                USERS.c.email.in_([v["email"] for v in chunk]),
                USERS.c.document_id.in_([v["document_id"] for v in chunk]),
            )
        )
        for row in (await session.execute(query)).mappings():
            found[row["id"]] = dict(row)
    return list(found.values())


def _target_conflict(values: dict[str, Any], existing: list[dict[str, Any]]) -> str | None:
    for row in existing:
        if row["id"] == values["id"]:
            if row["document_id"] != values["document_id"]:
                return f"id {values['id']} belongs to a different user here (documentId {row['document_id']})"
            continue
        for name in ("document_id", "username", "email"):
            if row[name] == values[name]:
                return f"{name} {values[name]!r} belongs to user {row['id']} here"
    return None


def _is_bcrypt(password_hash: str | None) -> bool:
    return password_hash is not None and password_hash.startswith(("$2a$", "$2b$", "$2y$"))


@dataclass
class _Plan:
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    revoke: dict[Revocation, list[int]] = field(default_factory=dict)


def _plan(
    candidates: Sequence[dict[str, Any]], existing: list[dict[str, Any]], report: ImportReport
) -> _Plan:
    plan = _Plan()
    # Index the lookup once: each candidate checks only the rows sharing one of its keys.
    index: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for row in existing:
        for name in ("id", "document_id", "username", "email"):
            index.setdefault((name, row[name]), []).append(row)
    for values in candidates:
        related = [
            row
            for name in ("id", "document_id", "username", "email")
            for row in index.get((name, values[name]), [])
        ]
        if reason := _target_conflict(values, related):
            report.conflicts.append((values["id"], reason))
            continue
        current = next((row for row in related if row["id"] == values["id"]), None)
        if current is None:
            plan.inserts.append(values)
            report.created += 1
            continue
        if current["updated_at"] > values["updated_at"]:
            report.kept_newer += 1
            continue
        if values["updated_at"] == current["updated_at"] and not _is_bcrypt(
            current["password_hash"]
        ):
            # refreshd re-hashed this password at a login (which leaves updated_at alone): same password.
            values["password_hash"] = current["password_hash"]
        if all(current[name] == values[name] for name in FIELDS):
            report.unchanged += 1
            continue
        plan.updates.append(values)
        report.updated += 1
        if values["blocked"] and not current["blocked"]:
            plan.revoke.setdefault(Revocation.BLOCKED, []).append(values["id"])
        elif values["password_hash"] != current["password_hash"]:
            plan.revoke.setdefault(Revocation.PASSWORD_CHANGED, []).append(values["id"])
    return plan


_UPDATE_BY_ID = (
    update(USERS)
    .where(USERS.c.id == bindparam("match_id"))
    .values({name: bindparam(f"new_{name}", type_=USERS.c[name].type) for name in FIELDS})
)


async def _write(session: AsyncSession, plan: _Plan, *, postgres: bool, now: datetime) -> None:
    if plan.inserts:
        await session.execute(insert(USERS), plan.inserts)
    if plan.updates:
        await session.execute(
            _UPDATE_BY_ID,
            [
                {"match_id": v["id"], **{f"new_{name}": v[name] for name in FIELDS}}
                for v in plan.updates
            ],
        )
    for reason, user_ids in plan.revoke.items():
        for start in range(0, len(user_ids), _LOOKUP_CHUNK):
            await session.execute(
                update(Session)
                .where(
                    Session.user_id.in_(user_ids[start : start + _LOOKUP_CHUNK]),
                    Session.revoked_at.is_(None),
                )
                .values(revoked_at=now, revoked_reason=reason.value)
                .execution_options(synchronize_session=False)
            )
    if postgres and plan.inserts:
        # Explicit ids bypass the sequence: move it past them (never backwards) so registrations do not collide.
        await session.execute(
            text(
                "SELECT setval(pg_get_serial_sequence('users', 'id'),"
                " GREATEST((SELECT MAX(id) FROM users), nextval(pg_get_serial_sequence('users', 'id')) - 1))"
            )
        )


# The lookup is one prepared statement reused for every batch. A generic plan made while the table was small (a
# sequential scan) would stay cached as the import fills the table, until an ANALYZE: with 100 000 users that made a
# re-import 30 times slower. Planning each lookup for its values (a few milliseconds) always uses the indexes.
_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")


async def _apply_batch(
    db: Database,
    candidates: Sequence[dict[str, Any]],
    report: ImportReport,
    *,
    dry_run: bool,
    now: datetime,
) -> None:
    postgres = not db.is_sqlite
    if dry_run:
        async with db.read() as session:
            if postgres:
                await session.execute(_CUSTOM_PLANS)
            _plan(candidates, await _existing_rows(session, candidates), report)
        return
    async with db.write() as session:
        if postgres:
            await session.execute(_CUSTOM_PLANS)
            # The checks and the writes must see the same table: hold off other writers (registrations, blocks)
            # for the batch. Reads, logins' row locks included, go on. SQLite's writes are serialized already
            # (BEGIN IMMEDIATE).
            await session.execute(text("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"))
        plan = _plan(candidates, await _existing_rows(session, candidates), report)
        await _write(session, plan, postgres=postgres, now=now)
