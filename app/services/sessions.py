"""Sessions and refresh tokens.

A session is one login. Its refresh tokens are not stored: a refresh token names its session and generation and is
signed with the refresh key; the row keeps the current generation and its times. Every state change is one
conditional UPDATE on that row (expected generation, not revoked, not expired), so concurrent refreshes of one
token produce exactly one successor, on one process or many, and a refresh racing a logout cannot resurrect it.

When that UPDATE misses, the verdict is taken with the row locked (``FOR UPDATE`` on PostgreSQL; SQLite's write
transactions are serialized), from when the presented generation was replaced, which the row keeps for its last
three generations (``replaced_within_grace``). So it does not depend on how far the session moved on between the
miss and the verdict: a tab that won a race and used its new token at once cannot turn the losers into "reuse".
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, Table, and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
from app.errors import INVALID_CREDENTIALS, UnauthorizedError
from app.models import Session, User
from app.models.user import UserRecord
from app.security import tokens
from app.security.tokens import TokenError
from app.services import audit
from app.services.client import Client
from app.services.devices import device_name
from app.services.hotpath import (
    NEXT_GENERATION,
    NOW,
    ROTATION_RESULT,
    HotPath,
    NewSession,
    RefreshQuery,
)
from app.services.tokens import TokenKeys

INVALID_REFRESH_TOKEN = "Invalid refresh token"  # noqa: S105 - a message


@dataclass(frozen=True)
class Lifetimes:
    access: timedelta
    refresh_idle: timedelta
    session_max: timedelta
    reuse_grace: timedelta


@dataclass(frozen=True)
class RefreshToken:
    value: str
    expires_at: datetime


@dataclass(frozen=True)
class Started:
    session_id: str
    refresh: RefreshToken | None


class Rejection(StrEnum):
    """Why a refresh token was refused; sent to clients as ``details.code``."""

    INVALID = "REFRESH_TOKEN_INVALID"
    EXPIRED = "REFRESH_TOKEN_EXPIRED"
    REVOKED = "REFRESH_TOKEN_REVOKED"
    REUSED = "REFRESH_TOKEN_REUSED"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    USER_BLOCKED = "USER_BLOCKED"


@dataclass(frozen=True)
class Refreshed:
    user_id: int
    session_id: str
    refresh: RefreshToken | None  # None when rotation is off: the presented token stays valid
    reissued: bool = False  # the current successor handed out again within the grace window


@dataclass(frozen=True)
class Refused:
    reason: Rejection
    user_id: int | None = None
    session_id: str | None = None  # set when the verdict touched a session (reuse: it was revoked)

    def error(self) -> UnauthorizedError:
        return UnauthorizedError(INVALID_REFRESH_TOKEN, code=self.reason.value)


class Revocation(StrEnum):
    LOGOUT = "logout"
    LOGOUT_OTHERS = "logout_others"
    LOGOUT_ALL = "logout_all"
    USER_REVOKED = "revoked_by_user"
    REUSE = "reuse_detected"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - a reason
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a reason
    BLOCKED = "user_blocked"
    ADMIN = "admin"


def new_session_id() -> str:
    return secrets.token_hex(16)


def _refresh_token(
    keys: TokenKeys,
    user_id: int,
    row_id: str,
    generation: int,
    issued_at: datetime,
    expires_at: datetime,
) -> RefreshToken:
    value = tokens.encode_refresh_token(
        user_id=user_id,
        session_id=row_id,
        generation=generation,
        issued_at=issued_at,
        expires_at=expires_at,
        key=keys.refresh_key,
        algorithm=keys.algorithm,
    )
    return RefreshToken(value, expires_at)


@dataclass(frozen=True)
class _Terms:
    """A new session's generation and expiries: with a refresh token it lives until SESSION_MAX_AGE (its token
    until the idle expiry); without one, as long as its access token."""

    generation: int
    expires_at: datetime
    refresh_expires_at: datetime | None

    @classmethod
    def of(cls, now: datetime, lifetimes: Lifetimes, *, with_refresh: bool) -> _Terms:
        if with_refresh:
            expires_at = now + lifetimes.session_max
            return cls(1, expires_at, min(now + lifetimes.refresh_idle, expires_at))
        return cls(0, now + lifetimes.access, None)


async def start_session(
    session: AsyncSession,
    keys: TokenKeys,
    user_id: int,
    client: Client,
    *,
    now: datetime,
    lifetimes: Lifetimes,
    with_refresh: bool,
) -> Started:
    """Open a session inside the caller's transaction (registration)."""
    session_id = new_session_id()
    terms = _Terms.of(now, lifetimes, with_refresh=with_refresh)
    user_agent = client.short_user_agent
    session.add(
        Session(
            id=session_id,
            user_id=user_id,
            generation=terms.generation,
            rotated_at=now if with_refresh else None,
            refresh_expires_at=terms.refresh_expires_at,
            expires_at=terms.expires_at,
            created_at=now,
            last_active_at=now,
            ip=client.ip,
            user_agent=user_agent,
            device_name=device_name(user_agent),
        )
    )
    await session.flush()
    return _started(keys, user_id, session_id, terms, now)


async def start_login_session(
    hot: HotPath,
    keys: TokenKeys,
    user_id: int,
    verified_hash: str,
    client: Client,
    *,
    now: datetime,
    lifetimes: Lifetimes,
    with_refresh: bool,
) -> Started | None:
    """Open a login's session, audited, on the hot path; None if the account changed (password, block) since
    ``verified_hash`` was checked."""
    session_id = new_session_id()
    terms = _Terms.of(now, lifetimes, with_refresh=with_refresh)
    user_agent = client.short_user_agent
    new = NewSession(
        session_id=session_id,
        user_id=user_id,
        verified_hash=verified_hash,
        generation=terms.generation,
        now=now,
        expires_at=terms.expires_at,
        refresh_expires_at=terms.refresh_expires_at,
        ip=client.ip,
        user_agent=user_agent,
        device_name=device_name(user_agent),
    )
    if not await hot.start_session(new):
        return None
    return _started(keys, user_id, session_id, terms, now)


def _started(
    keys: TokenKeys, user_id: int, session_id: str, terms: _Terms, now: datetime
) -> Started:
    refresh = None
    if terms.refresh_expires_at is not None:
        refresh = _refresh_token(
            keys, user_id, session_id, terms.generation, now, terms.refresh_expires_at
        )
    return Started(session_id, refresh)


_SESSIONS: Table = Session.__table__  # type: ignore[assignment]  # declared models map to Tables
# After a password change: the session that asked gets fresh refresh-token material, if it has any, and its
# earlier tokens get no reuse grace (whoever else holds one is what the change is meant to cut off).
_ROTATE_CURRENT = (
    update(_SESSIONS)
    .where(
        _SESSIONS.c.id == bindparam("sid"),
        _SESSIONS.c.user_id == bindparam("uid"),
        _SESSIONS.c.generation > 0,
        _SESSIONS.c.revoked_at.is_(None),
        _SESSIONS.c.expires_at > NOW,
    )
    .values(**NEXT_GENERATION, grace_floor=_SESSIONS.c.generation + 1)
    .returning(*ROTATION_RESULT)
)


async def refresh(
    db: Database,
    hot: HotPath,
    keys: TokenKeys,
    token: str,
    client: Client,
    *,
    now: datetime,
    lifetimes: Lifetimes,
    rotate: bool,
) -> Refreshed | Refused:
    """Exchange a refresh token: rotate it, re-issue the successor within the grace window, or refuse it.

    The common case is one conditional UPDATE with its audit row on the hot path. When it misses, a write
    transaction finds out why; a replay of a replaced token outside the grace window revokes the whole session
    there, audited, before the refusal goes out.
    """
    try:
        claims = tokens.decode_refresh_token(
            token, key=keys.refresh_key, algorithm=keys.algorithm, now=now
        )
    except TokenError as exc:
        expired = exc.problem is tokens.TokenProblem.EXPIRED
        return Refused(Rejection.EXPIRED if expired else Rejection.INVALID)

    query = RefreshQuery(
        session_id=claims.session_id,
        user_id=claims.user_id,
        generation=claims.generation,
        now=now,
        candidate_expiry=now + lifetimes.refresh_idle,
        grace_start=now - lifetimes.reuse_grace,
        ip=client.ip,
        user_agent=client.short_user_agent,
    )
    if rotate:
        rotated = await hot.rotate(query)
        if rotated is not None:
            generation, expires_at = rotated
            successor = _refresh_token(
                keys, claims.user_id, claims.session_id, generation, now, expires_at
            )
            return Refreshed(claims.user_id, claims.session_id, successor)
    elif await hot.touch(query):
        return Refreshed(claims.user_id, claims.session_id, None)
    async with db.write() as session:
        outcome = await _explain_refusal(session, keys, claims, now=now, lifetimes=lifetimes)
        if isinstance(outcome, Refreshed):
            event: audit.Event | None = audit.Event.REFRESHED
        elif outcome.reason is Rejection.REUSED:
            event = audit.Event.REUSE_DETECTED
        else:
            event = None
        if event is not None:
            await audit.record(
                session,
                event,
                now=now,
                user_id=claims.user_id,
                session_id=claims.session_id,
                client=client,
                **({"rotated": True} if event is audit.Event.REFRESHED else {}),
            )
    return outcome


def replaced_within_grace(
    row: Session, generation: int, *, now: datetime, grace: timedelta
) -> bool:
    """Whether the refresh token of ``generation``, older than the row's current one, was replaced less than
    ``grace`` before ``now``.

    Generation g was replaced when g + 1 was issued. The row knows when its last three generations were issued
    (``rotated_at``, ``previous_rotated_at``, ``earlier_rotated_at``), so up to three generations behind the
    answer is exact. Further behind, g was replaced before the oldest of those three was issued: if that one is
    outside the window, so is g's replacement. If it is inside, the row also knows where the current burst began
    (``burst_generation``: the first of a run of rotations each less than the window after the one before). A
    generation replaced before the burst began was replaced at least a window before it: outside. One replaced
    within the burst (three or more rotations in quick succession, the last inside the window) cannot be placed
    exactly, and is taken as within the grace rather than risk revoking a racing client. A time not known (rows
    from before these columns) is taken as outside the window, and so are the generations a password change
    retired (below ``grace_floor``).
    """
    behind = row.generation - generation
    if behind < 1 or generation < row.grace_floor:
        return False
    times = (row.rotated_at, row.previous_rotated_at, row.earlier_rotated_at)
    replaced_at = times[min(behind, len(times)) - 1]
    if replaced_at is None or now - replaced_at >= grace:
        return False
    return behind <= len(times) or generation + 1 >= row.burst_generation


@dataclass(frozen=True)
class Identity:
    """Who asks to log out: a session named by an access token, or by a refresh token of some generation."""

    user_id: int
    session_id: str
    generation: int | None  # None: named by an access token


def identify(keys: TokenKeys, token: str, *, now: datetime) -> Identity | None:
    """The session a validly signed, unexpired refresh token names, whatever its generation."""
    try:
        claims = tokens.decode_refresh_token(
            token, key=keys.refresh_key, algorithm=keys.algorithm, now=now
        )
    except TokenError:
        return None
    return Identity(claims.user_id, claims.session_id, claims.generation)


async def logout(
    session: AsyncSession, who: Identity, scope: str, *, now: datetime, lifetimes: Lifetimes
) -> int:
    """End the session, or the user's others, or all. Only a live credential may end *other* sessions: a token of
    a revoked session, or a refresh token rotated away, ends at most its own session."""
    row = (
        await session.scalars(
            select(Session).where(Session.id == who.session_id, Session.user_id == who.user_id)
        )
    ).first()
    live = (
        row is not None
        and row.revoked_at is None
        and row.expires_at > now
        and (
            who.generation is None
            or who.generation == row.generation
            or replaced_within_grace(row, who.generation, now=now, grace=lifetimes.reuse_grace)
        )
    )
    if scope == "local" or not live:
        revoked = await revoke_session(
            session, who.session_id, reason=Revocation.LOGOUT, now=now, user_id=who.user_id
        )
        return int(revoked)
    return await revoke_user_sessions(
        session,
        who.user_id,
        reason=Revocation.LOGOUT_ALL if scope == "all" else Revocation.LOGOUT_OTHERS,
        now=now,
        keep=who.session_id if scope == "others" else None,
    )


async def _explain_refusal(
    session: AsyncSession,
    keys: TokenKeys,
    claims: tokens.RefreshClaims,
    *,
    now: datetime,
    lifetimes: Lifetimes,
) -> Refreshed | Refused:
    """The conditional update missed: find out why, with the row locked until the verdict is committed (this read
    sees what the winner committed, and no rotation or revocation lands in between)."""
    query = (
        select(Session, User.blocked)
        .join(User, User.id == Session.user_id)
        .where(Session.id == claims.session_id, Session.user_id == claims.user_id)
        .with_for_update(of=Session)
    )
    found = (await session.execute(query)).first()
    if found is None:
        return Refused(Rejection.INVALID)
    row, blocked = found
    if row.revoked_at is not None:
        return Refused(Rejection.REVOKED)
    if blocked:
        return Refused(Rejection.USER_BLOCKED)
    if row.expires_at <= now:
        return Refused(Rejection.SESSION_EXPIRED)
    if (
        claims.generation > row.generation
        or row.rotated_at is None
        or row.refresh_expires_at is None
    ):
        return Refused(Rejection.INVALID)  # never issued by us
    if claims.generation == row.generation:
        return Refused(Rejection.EXPIRED)
    if claims.generation < row.grace_floor:
        # Retired by a password change: refused, but the session lives on. Revoking it would gain nothing (the
        # rotation already cut this token off) and would let whoever holds it end the owner's new session.
        return Refused(Rejection.REVOKED)
    if replaced_within_grace(row, claims.generation, now=now, grace=lifetimes.reuse_grace):
        if row.refresh_expires_at <= now:
            return Refused(Rejection.EXPIRED)
        # Tabs racing, a lost response, a late duplicate: hand out the session's current token again (the very
        # one its rotation issued), never a second branch.
        successor = _refresh_token(
            keys, claims.user_id, row.id, row.generation, row.rotated_at, row.refresh_expires_at
        )
        return Refreshed(claims.user_id, row.id, successor, reissued=True)
    await revoke_session(session, row.id, reason=Revocation.REUSE, now=now)
    return Refused(Rejection.REUSED, claims.user_id, row.id)


async def _revoke(
    session: AsyncSession, condition: ColumnElement[bool], *, reason: Revocation, now: datetime
) -> int:
    """Revoke the live sessions matching ``condition``: one conditional UPDATE; returns how many."""
    result = await session.execute(
        update(Session)
        .where(condition, Session.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason.value)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))


async def revoke_session(
    session: AsyncSession,
    session_id: str,
    *,
    reason: Revocation,
    now: datetime,
    user_id: int | None = None,
) -> bool:
    condition = Session.id == session_id
    if user_id is not None:
        condition = and_(condition, Session.user_id == user_id)
    return bool(await _revoke(session, condition, reason=reason, now=now))


async def revoke_user_sessions(
    session: AsyncSession,
    user_id: int,
    *,
    reason: Revocation,
    now: datetime,
    keep: str | None = None,
) -> int:
    """Revoke every live session of a user, except ``keep``; returns how many."""
    condition = Session.user_id == user_id
    if keep is not None:
        condition = and_(condition, Session.id != keep)
    return await _revoke(session, condition, reason=reason, now=now)


async def authenticated_user(
    hot: HotPath,
    user_id: int,
    session_id: str,
    *,
    now: datetime,
    email_confirmation: bool,
) -> UserRecord:
    """The user behind a valid access token, if its session is alive and the account usable.

    One indexed query on the hot path (session by primary key joined to its user), so revocation takes effect at
    once without a cache that could lag behind.
    """
    user = await hot.signed_in_user(session_id, user_id, now)
    if user is None or user.blocked or (email_confirmation and not user.confirmed):
        raise UnauthorizedError(INVALID_CREDENTIALS)
    return user


@dataclass(frozen=True)
class SessionView:
    id: str
    device_name: str | None
    ip: str | None
    current: bool
    login_at: datetime
    last_active_at: datetime


def session_is_live(now: datetime, *, access_ttl: timedelta) -> ColumnElement[bool]:
    """What "live" means wherever sessions are listed or counted (the API and the command line): not revoked,
    not past its absolute end, and, if its refresh token expired from idleness, not past its last access token."""
    return and_(
        Session.revoked_at.is_(None),
        Session.expires_at > now,
        or_(
            Session.refresh_expires_at.is_(None),
            Session.refresh_expires_at > now - access_ttl,
        ),
    )


async def list_sessions(
    session: AsyncSession, user_id: int, *, current: str, now: datetime, lifetimes: Lifetimes
) -> list[SessionView]:
    """Live sessions, the caller's first, then the most recently active."""
    query = select(Session).where(
        Session.user_id == user_id, session_is_live(now, access_ttl=lifetimes.access)
    )
    rows = (await session.scalars(query)).all()
    views = [
        SessionView(r.id, r.device_name, r.ip, r.id == current, r.created_at, r.last_active_at)
        for r in rows
    ]
    views.sort(key=lambda v: (not v.current, -v.last_active_at.timestamp(), v.id))
    return views


async def rotate_current(
    session: AsyncSession,
    keys: TokenKeys,
    user_id: int,
    session_id: str,
    *,
    now: datetime,
    lifetimes: Lifetimes,
) -> RefreshToken | None:
    """After a password change: fresh refresh-token material for the session that asked, if it has any."""
    params = {
        "sid": session_id,
        "uid": user_id,
        "now_": now,
        "candidate": now + lifetimes.refresh_idle,
        "grace_start": now - lifetimes.reuse_grace,
    }
    row = (await session.execute(_ROTATE_CURRENT, params)).first()
    if row is None:
        return None
    generation, expires_at = row
    return _refresh_token(keys, user_id, session_id, generation, now, expires_at)


async def extend_access_only_session(
    session: AsyncSession, session_id: str, *, now: datetime, lifetimes: Lifetimes
) -> None:
    """A session without refresh tokens lives as long as its newest access token."""
    await session.execute(
        update(Session)
        .where(
            Session.id == session_id,
            Session.generation == 0,
            Session.expires_at < now + lifetimes.access,
        )
        .values(expires_at=now + lifetimes.access, last_active_at=now)
        .execution_options(synchronize_session=False)
    )
