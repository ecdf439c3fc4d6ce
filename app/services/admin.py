"""The operator's use cases, for the command line: create, list, block, re-password and delete accounts, look at
and end sessions, read the audit trail. Audited as done ``by: cli``."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.errors import NotFoundError
from app.models.audit import Event
from app.services import users
from app.services.accounts import create_account
from app.services.sessions import Revocation
from app.store import AuditRecord, Store, UserRecord
from app.store.sessions import SessionState

MAX_USER_ID = 2**31 - 1  # users.id is a 32-bit integer


@dataclass(frozen=True)
class UserRef:
    """An account named by exactly one of id, email or username: never a guess between them (a username "42" and
    the user with id 42 are different accounts)."""

    id: int | None = None
    email: str | None = None
    username: str | None = None

    def __str__(self) -> str:
        if self.id is not None:
            return f"with id {self.id}"
        if self.email is not None:
            return f"with email {self.email!r}"
        return f"with username {self.username!r}"


@dataclass(frozen=True)
class Collision:
    kind: str  # "username" or "email"
    name: str  # the NFKC form they share
    members: list[tuple[int, str, str]]


class AdminService:
    def __init__(self, store: Store, *, access_ttl: timedelta) -> None:
        self.store = store
        self.access_ttl = access_ttl

    async def find(self, ref: UserRef) -> UserRecord:
        """The account ``ref`` names; ``NotFoundError`` if none."""
        user = None
        if ref.id is not None:
            if 0 < ref.id <= MAX_USER_ID:  # else not an id the column can hold: no query
                user = await self.store.users.get(ref.id)
        elif ref.email is not None:
            user = await self.store.users.by_email(users.normalize_email(ref.email))
        elif ref.username is not None:
            user = await self.store.users.by_username(users.normalize_username(ref.username))
        if user is None:
            raise NotFoundError(f"no user {ref}")
        return user

    async def create_user(
        self, reg: users.Registration, password_hash: str, *, confirmed: bool, now: datetime
    ) -> UserRecord:
        async with self.store.transaction() as tx:
            user = await create_account(tx, reg, password_hash, confirmed=confirmed, now=now)
            await tx.audit.record(Event.USER_CREATED, now=now, user_id=user.id, by="cli")
        return user

    async def list_users(
        self,
        *,
        after: int = 0,
        limit: int = 50,
        search: str | None = None,
        blocked: bool | None = None,
        confirmed: bool | None = None,
    ) -> list[UserRecord]:
        """A page of accounts by id: those after ``after``, matching ``search`` (a part of the username or email,
        any case) and the given states (None: either)."""
        return await self.store.users.page(
            after=after, limit=limit, search=search, blocked=blocked, confirmed=confirmed
        )

    async def delete_user(self, user_id: int, *, now: datetime) -> int:
        """Delete an account: every session is revoked (audited, with how many were live), then the account, its
        sessions and its codes are deleted. Its earlier audit rows stay. How many sessions were live."""
        async with self.store.transaction() as tx:
            revoked = await tx.sessions.revoke_all(user_id, reason=Revocation.ADMIN.value, now=now)
            if not await tx.users.delete(user_id):
                raise NotFoundError(f"no user with id {user_id}")
            await tx.audit.record(
                Event.USER_DELETED, now=now, user_id=user_id, by="cli", sessions_revoked=revoked
            )
        return revoked

    async def set_blocked(self, user_id: int, blocked: bool, *, now: datetime) -> int:
        """Block (every session revoked at once) or unblock; how many sessions were revoked."""
        async with self.store.transaction() as tx:
            await tx.users.set_blocked(user_id, blocked, now=now)
            revoked = 0
            if blocked:
                revoked = await tx.sessions.revoke_all(
                    user_id, reason=Revocation.BLOCKED.value, now=now
                )
            event = Event.USER_BLOCKED if blocked else Event.USER_UNBLOCKED
            await tx.audit.record(event, now=now, user_id=user_id, by="cli")
        return revoked

    async def set_password(self, user_id: int, password_hash: str, *, now: datetime) -> int:
        """A new password; every session of the account is revoked (how many)."""
        async with self.store.transaction() as tx:
            await tx.users.replace_password(user_id, password_hash, now=now)
            revoked = await tx.sessions.revoke_all(user_id, reason=Revocation.ADMIN.value, now=now)
            await tx.audit.record(
                Event.PASSWORD_SET, now=now, user_id=user_id, by="cli", sessions_revoked=revoked
            )
        return revoked

    async def live_sessions(self, user_id: int, *, now: datetime) -> int:
        """How many sessions the API lists for this user (the same rule: ``SESSION_LISTED``)."""
        cutoff = now - self.access_ttl
        return await self.store.sessions.count_listed(user_id, now=now, access_cutoff=cutoff)

    async def sessions(
        self, user_id: int, *, now: datetime, include_ended: bool
    ) -> list[SessionState]:
        """A user's sessions, most recently active first: the live ones (as the API lists them), or all."""
        return await self.store.sessions.of_user(
            user_id, now=now, access_cutoff=now - self.access_ttl, only_listed=not include_ended
        )

    async def revoke_sessions(self, user_id: int, session_id: str | None, *, now: datetime) -> int:
        """End one session of the user (``NotFoundError`` if it names none not yet ended: nothing is audited
        then), or all (``session_id`` None); how many."""
        reason = Revocation.ADMIN.value
        async with self.store.transaction() as tx:
            if session_id is None:
                count = await tx.sessions.revoke_all(user_id, reason=reason, now=now)
            else:
                revoked = await tx.sessions.revoke(
                    session_id, reason=reason, now=now, user_id=user_id
                )
                if not revoked:
                    raise NotFoundError(f"no live session {session_id!r} of user {user_id}")
                count = 1
            await tx.audit.record(
                Event.SESSION_REVOKED,
                now=now,
                user_id=user_id,
                session_id=session_id,
                by="cli",
                count=count,
            )
        return count

    async def collisions(self) -> list[Collision]:
        """Accounts whose usernames or emails are one name in NFKC form (migration 0006 leaves them as they
        were)."""
        owners: dict[tuple[str, str], list[tuple[int, str, str]]] = defaultdict(list)
        for user_id, username, email in await self.store.users.names():
            member = (user_id, username, email)
            owners[("username", users.normalize_username(username))].append(member)
            owners[("email", users.normalize_email(email))].append(member)
        return [
            Collision(kind, name, members)
            for (kind, name), members in owners.items()
            if len(members) > 1
        ]

    async def audit(self, *, user_id: int | None, limit: int) -> list[AuditRecord]:
        return await self.store.audit.recent(user_id=user_id, limit=limit)
