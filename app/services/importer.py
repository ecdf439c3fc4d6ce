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

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

from app.db import utc_ms
from app.services.sessions import Revocation
from app.services.users import normalize_email, normalize_username
from app.store import Store
from app.store.importing import FIELDS, ImportTarget
from app.store.strapi import (
    StrapiSourceError,
    count_strapi_users,
    open_source,
    source_batches,
    source_engine_url,
)

__all__ = [
    "ImportReport",
    "StrapiSourceError",
    "count_strapi_users",
    "import_strapi",
    "source_engine_url",
]

LOCAL = "local"
# bcrypt as bcryptjs writes it: version, two-digit cost 04-31, 22 salt + 31 hash characters.
BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_LIMITS = {"document_id": 24, "username": 255, "email": 255}
# As registration stores them, before the limits (NFKC may lengthen a name) and every comparison.
_NORMALIZE: dict[str, Callable[[str], str]] = {
    "username": normalize_username,
    "email": normalize_email,
}


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


async def import_strapi(
    source_url: str,
    store: Store,
    *,
    dry_run: bool = False,
    batch_size: int = 2000,
    progress: Callable[[int], object] | None = None,
    now: datetime,
) -> ImportReport:
    """Import Strapi's ``up_users`` from ``source_url`` into ``store`` (see the module docstring for the rules).

    The source is read in keyset-paginated batches of ``batch_size`` ids; each batch is checked against the target
    with one lookup and written in one transaction with bulk statements. ``dry_run`` makes every check and count but
    writes nothing. ``progress`` is called after each batch with the number of source rows it covered (tqdm's
    ``update``). ``now`` stamps revoked sessions and stands in for a missing ``created_at``.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = ImportReport(dry_run=dry_run)
    claims = _SourceClaims()
    async with open_source(source_url) as conn:
        async for rows in source_batches(conn, batch_size):
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
                await _apply_batch(store, candidates, report, dry_run=dry_run, now=now)
            if progress is not None:
                progress(len(rows))
    if report.created and not dry_run:
        await ImportTarget(store.database, postgres=not store.database.is_sqlite).analyze()
    return report


# --- the source -------------------------------------------------------------------------------------------------


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


async def _apply_batch(
    store: Store,
    candidates: Sequence[dict[str, Any]],
    report: ImportReport,
    *,
    dry_run: bool,
    now: datetime,
) -> None:
    """One batch, checked and written in one transaction; a dry run only reads (no write lock taken)."""
    postgres = not store.database.is_sqlite
    if dry_run:
        target = ImportTarget(store.database, postgres=postgres)
        _plan(candidates, await target.related(candidates), report)
        return
    async with store.transaction() as tx:
        target = ImportTarget(tx.runner, postgres=postgres)
        await target.begin_batch()
        plan = _plan(candidates, await target.related(candidates), report)
        await target.insert(plan.inserts)
        await target.update(plan.updates)
        for reason, user_ids in plan.revoke.items():
            await target.revoke_sessions(user_ids, reason.value, now=now)
