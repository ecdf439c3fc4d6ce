"""Sessions and refresh tokens: the use cases of a signed-in client (refresh, log out, list, end one).

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
from typing import TypeGuard

from app.errors import INVALID_CREDENTIALS, UnauthorizedError
from app.models.audit import Event
from app.security import tokens
from app.security.tokens import TokenError
from app.services.client import Client
from app.services.devices import device_name
from app.services.reuse import Rejection, explain_miss
from app.services.tokens import TokenKeys
from app.store import Repositories, Store, UserRecord
from app.store.sessions import NewSession, RefreshQuery

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
    # A token of a session revoked earlier as a replay: refused as REVOKED (nothing more happens), but the client
    # is told why its session ended, REFRESH_TOKEN_REUSED, as the replay itself was.
    ended_by_reuse: bool = False

    def error(self) -> UnauthorizedError:
        code = Rejection.REUSED if self.ended_by_reuse else self.reason
        return UnauthorizedError(INVALID_REFRESH_TOKEN, code=code.value)


class Revocation(StrEnum):
    LOGOUT = "logout"
    LOGOUT_OTHERS = "logout_others"
    LOGOUT_ALL = "logout_all"
    LOGOUT_DEVICE = "logout_device"
    USER_REVOKED = "revoked_by_user"
    REUSE = "reuse_detected"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - a reason
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a reason
    BLOCKED = "user_blocked"
    ADMIN = "admin"


LOGOUT_REASONS = {"all": Revocation.LOGOUT_ALL, "others": Revocation.LOGOUT_OTHERS}


def logout_reason(scope: str, device_id: str | None) -> Revocation:
    """Why a logout revoked what it did: Strapi core's order, ``scope: "all"`` first, then a device, then the
    scope."""
    if device_id is not None and scope != "all":
        return Revocation.LOGOUT_DEVICE
    return LOGOUT_REASONS.get(scope, Revocation.LOGOUT)


def new_session_id() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Identity:
    """Who asks to log out: a session named by an access token, or by a refresh token of some generation."""

    user_id: int
    session_id: str
    generation: int | None  # None: named by an access token


@dataclass(frozen=True)
class ActiveToken:
    """An access token that would be accepted now (RFC 7662's ``active``), with what a resource server needs."""

    claims: tokens.AccessClaims
    username: str | None


@dataclass(frozen=True)
class SessionView:
    id: str
    device_name: str | None
    ip: str | None
    current: bool
    login_at: datetime
    last_active_at: datetime
    device_id: str | None = None


def _may_act(user: UserRecord | None, email_confirmation: bool) -> TypeGuard[UserRecord]:
    """Whether the user behind a live session may still act: not deleted, not blocked, confirmed if required."""
    return user is not None and not user.blocked and (user.confirmed or not email_confirmation)


class SessionService:
    """The session use cases, built once per process with the store and the token keys."""

    def __init__(
        self, store: Store, keys: TokenKeys, lifetimes: Lifetimes, *, rotate: bool
    ) -> None:
        self.store = store
        self.keys = keys
        self.lifetimes = lifetimes
        self.rotate = rotate

    def _refresh_token(
        self, user_id: int, session_id: str, generation: int, issued: datetime, expires: datetime
    ) -> RefreshToken:
        value = tokens.encode_refresh_token(
            user_id=user_id,
            session_id=session_id,
            generation=generation,
            issued_at=issued,
            expires_at=expires,
            keys=self.keys.refresh,
        )
        return RefreshToken(value, expires)

    async def start(
        self,
        repos: Repositories,
        user_id: int,
        verified_hash: str,
        client: Client,
        *,
        now: datetime,
        with_refresh: bool,
        audited: bool,
        device_id: str | None = None,
    ) -> Started | None:
        """Open a session, if the account still has ``verified_hash`` and is not blocked (None otherwise). With
        a refresh token it lives until SESSION_MAX_AGE (its token until the idle expiry); without one, as long
        as its access token. ``audited``: record it as a login (in the same statement). ``device_id``: the
        client's own name for its device, which a logout may name."""
        session_id = new_session_id()
        life = self.lifetimes
        expires_at = now + (life.session_max if with_refresh else life.access)
        refresh_expires_at = min(now + life.refresh_idle, expires_at) if with_refresh else None
        user_agent = client.short_user_agent
        new = NewSession(
            session_id=session_id,
            user_id=user_id,
            verified_hash=verified_hash,
            generation=1 if with_refresh else 0,
            now=now,
            expires_at=expires_at,
            refresh_expires_at=refresh_expires_at,
            ip=client.ip,
            user_agent=user_agent,
            device_name=device_name(user_agent),
            device_id=device_id,
        )
        if not await repos.sessions.start(new, audited=audited):
            return None
        refresh = None
        if refresh_expires_at is not None:
            refresh = self._refresh_token(user_id, session_id, 1, now, refresh_expires_at)
        return Started(session_id, refresh)

    async def refresh(self, token: str, client: Client, *, now: datetime) -> Refreshed | Refused:
        """Exchange a refresh token: rotate it, re-issue the successor within the grace window, or refuse it.

        The common case is one conditional UPDATE with its audit row. When it misses, a transaction finds out
        why with the row locked; a replay of a replaced token outside the grace window revokes the whole session
        there, audited, before the refusal goes out.
        """
        try:
            claims = tokens.decode_refresh_token(token, keys=self.keys.refresh, now=now)
        except TokenError as exc:
            expired = exc.problem is tokens.TokenProblem.EXPIRED
            return Refused(Rejection.EXPIRED if expired else Rejection.INVALID)
        query = RefreshQuery(
            session_id=claims.session_id,
            user_id=claims.user_id,
            generation=claims.generation,
            now=now,
            candidate_expiry=now + self.lifetimes.refresh_idle,
            grace_start=now - self.lifetimes.reuse_grace,
            ip=client.ip,
            user_agent=client.short_user_agent,
        )
        if self.rotate:
            rotated = await self.store.sessions.rotate(query)
            if rotated is not None:
                generation, expires_at = rotated
                successor = self._refresh_token(
                    claims.user_id, claims.session_id, generation, now, expires_at
                )
                return Refreshed(claims.user_id, claims.session_id, successor)
        elif await self.store.sessions.touch(query):
            return Refreshed(claims.user_id, claims.session_id, None)
        return await self._judge_miss(query, client)

    async def _judge_miss(self, query: RefreshQuery, client: Client) -> Refreshed | Refused:
        """The conditional update missed: find out why, with the row locked until the verdict is committed (this
        read sees what the winner committed, and no rotation or revocation lands in between)."""
        now, uid, sid = query.now, query.user_id, query.session_id
        async with self.store.transaction() as tx:
            verdict = await tx.sessions.for_verdict(
                sid, uid, query.generation, now=now, grace_start=query.grace_start
            )
            reason = explain_miss(verdict, query.generation, now)
            if reason is None:
                assert verdict is not None
                row = verdict.row
                assert row.rotated_at is not None
                assert row.refresh_expires_at is not None
                # Tabs racing, a lost response, a late duplicate: hand out the session's current token again (the
                # very one its rotation issued), never a second branch.
                successor = self._refresh_token(
                    uid, sid, row.generation, row.rotated_at, row.refresh_expires_at
                )
                await tx.audit.record(
                    Event.REFRESHED,
                    now=now,
                    user_id=uid,
                    session_id=sid,
                    ip=client.ip,
                    user_agent=client.short_user_agent,
                    rotated=True,
                )
                return Refreshed(uid, sid, successor, reissued=True)
            if reason is Rejection.REUSED:
                await tx.sessions.revoke(sid, reason=Revocation.REUSE.value, now=now)
                await tx.audit.record(
                    Event.REUSE_DETECTED,
                    now=now,
                    user_id=uid,
                    session_id=sid,
                    ip=client.ip,
                    user_agent=client.short_user_agent,
                )
                return Refused(reason, uid, sid)
        ended_by_reuse = (
            reason is Rejection.REVOKED
            and verdict is not None
            and verdict.row.revoked_reason == Revocation.REUSE.value
        )
        return Refused(reason, ended_by_reuse=ended_by_reuse)

    async def authenticated_user(
        self, user_id: int, session_id: str, *, now: datetime, email_confirmation: bool
    ) -> UserRecord:
        """The user behind a valid access token, if its session is live and the account usable.

        One indexed query (session by primary key joined to its user), so revocation takes effect at once without
        a cache that could lag behind.
        """
        user = await self.store.users.signed_in(session_id, user_id, now)
        if not _may_act(user, email_confirmation):
            raise UnauthorizedError(INVALID_CREDENTIALS)
        return user

    async def introspect(
        self, token: str, *, now: datetime, email_confirmation: bool
    ) -> ActiveToken | None:
        """What ``/api/users/me`` would accept, asked by another service: a validly signed, unexpired access token
        whose session is live and whose user may sign in. None for anything else, whatever the reason."""
        try:
            claims = tokens.decode_access_token(token, keys=self.keys.access, now=now)
        except TokenError:
            return None
        user = await self.store.users.signed_in(claims.session_id, claims.user_id, now)
        if not _may_act(user, email_confirmation):
            return None
        return ActiveToken(claims, user.username)

    def identify(self, token: str, *, now: datetime) -> Identity | None:
        """The session a validly signed, unexpired refresh token names, whatever its generation."""
        try:
            claims = tokens.decode_refresh_token(token, keys=self.keys.refresh, now=now)
        except TokenError:
            return None
        return Identity(claims.user_id, claims.session_id, claims.generation)

    async def logout(
        self,
        who: Identity,
        scope: str,
        client: Client,
        *,
        now: datetime,
        device_id: str | None = None,
    ) -> int:
        """End the session, or the user's others, or all, or every session of one device (``device_id``, as
        Strapi core: ``scope: "all"`` wins over it, it wins over the other scopes); how many sessions were
        revoked. Only a live credential may end *other* sessions: a token of a revoked session, or a refresh
        token rotated away, ends at most its own session."""
        grace_start = now - self.lifetimes.reuse_grace
        async with self.store.transaction() as tx:
            named = await tx.sessions.named(
                who.session_id, who.user_id, who.generation, now=now, grace_start=grace_start
            )
            live = (
                named is not None
                and named.live
                and (
                    who.generation is None
                    or who.generation == named.row.generation
                    or named.in_grace
                )
            )
            reason = logout_reason(scope, device_id)
            if not live or reason is Revocation.LOGOUT:
                reason = Revocation.LOGOUT
                revoked = int(
                    await tx.sessions.revoke(
                        who.session_id, reason=reason.value, now=now, user_id=who.user_id
                    )
                )
            elif reason is Revocation.LOGOUT_DEVICE:
                assert device_id is not None
                revoked = await tx.sessions.revoke_device(
                    who.user_id, device_id, reason=reason.value, now=now
                )
            else:
                keep = who.session_id if scope == "others" else None
                revoked = await tx.sessions.revoke_all(
                    who.user_id, reason=reason.value, now=now, keep=keep
                )
            await tx.audit.record(
                Event.LOGGED_OUT,
                now=now,
                user_id=who.user_id,
                session_id=who.session_id,
                ip=client.ip,
                user_agent=client.short_user_agent,
                scope=scope,
                revoked=revoked,
                **({"by_device": True} if reason is Revocation.LOGOUT_DEVICE else {}),
            )
        return revoked

    async def listed(self, user_id: int, *, current: str, now: datetime) -> list[SessionView]:
        """Listed sessions (``app.store.predicates.SESSION_LISTED``), the caller's first, then the most recently
        active."""
        rows = await self.store.sessions.listed(
            user_id, now=now, access_cutoff=now - self.lifetimes.access
        )
        views = [
            SessionView(
                r.id,
                r.device_name,
                r.ip,
                r.id == current,
                r.created_at,
                r.last_active_at,
                r.device_id,
            )
            for r in rows
        ]
        views.sort(key=lambda v: (not v.current, -v.last_active_at.timestamp(), v.id))
        return views

    async def end_one(
        self, user_id: int, session_id: str, *, by_session: str, client: Client, now: datetime
    ) -> bool:
        """A user ends one of their sessions; False if it names none not yet ended."""
        async with self.store.transaction() as tx:
            revoked = await tx.sessions.revoke(
                session_id, reason=Revocation.USER_REVOKED.value, now=now, user_id=user_id
            )
            if revoked:
                await tx.audit.record(
                    Event.SESSION_REVOKED,
                    now=now,
                    user_id=user_id,
                    session_id=session_id,
                    ip=client.ip,
                    user_agent=client.short_user_agent,
                    by_session=by_session,
                )
        return revoked

    async def renew_after_password_change(
        self, repos: Repositories, user_id: int, session_id: str, *, now: datetime
    ) -> RefreshToken | None:
        """The session that changed the password keeps going: fresh refresh-token material if it has any (its
        earlier tokens get no reuse grace), else its access-only life extended to the new access token's."""
        rotated = await repos.sessions.rotate_current(
            session_id,
            user_id,
            now=now,
            candidate_expiry=now + self.lifetimes.refresh_idle,
            grace_start=now - self.lifetimes.reuse_grace,
        )
        if rotated is None:
            await repos.sessions.extend_access_only(
                session_id, now=now, access_expiry=now + self.lifetimes.access
            )
            return None
        generation, expires_at = rotated
        return self._refresh_token(user_id, session_id, generation, now, expires_at)
