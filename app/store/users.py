"""Accounts: look-ups by login identifier, by session, by address; creation and every change of state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Integer,
    String,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from app.db import UTCDateTime, utc_ms
from app.store.database import Runner
from app.store.predicates import SESSION_LIVE
from app.store.records import UserRecord
from app.store.tables import SESSIONS, USERS

U = USERS.c
UID = bindparam("uid", type_=Integer())
STAMP = bindparam("stamp", type_=UTCDateTime())  # updated_at, at the millisecond clients see

# The account an identifier names (email, stored lower-cased, or username), the lowest id first as Strapi does.
_LOGIN_CANDIDATE = (
    select(USERS)
    .where(
        U.provider == bindparam("provider"),
        or_(U.email == bindparam("email"), U.username == bindparam("username")),
    )
    .order_by(U.id)
    .limit(1)
)
# The user behind an access token: its session live, joined by primary key.
_SIGNED_IN = (
    select(USERS)
    .join(SESSIONS, SESSIONS.c.user_id == U.id)
    .where(SESSIONS.c.id == bindparam("sid"), SESSIONS.c.user_id == UID, SESSION_LIVE)
)
# Strapi's conflict rule, which also stops a username that is someone's email and vice versa.
_TAKEN = (
    select(U.id)
    .where(
        or_(
            U.email == bindparam("email"),
            U.username == bindparam("email"),
            U.username == bindparam("username"),
            U.email == bindparam("username_lower"),
        )
    )
    .limit(1)
)
_CREATE = (
    insert(USERS)
    .values({c.key: bindparam(c.key, type_=c.type) for c in USERS.c if c.key != "id"})
    .returning(*USERS.c)
)
_BY_ID = select(USERS).where(U.id == UID)
_BY_EMAIL = select(USERS).where(U.email == bindparam("email"))
_BY_USERNAME = select(USERS).where(U.username == bindparam("username"))
_LOCAL_BY_EMAIL = select(USERS).where(U.provider == "local", U.email == bindparam("email")).limit(1)
_NAMES = select(U.id, U.username, U.email).order_by(U.id)
# A page of accounts by id, after a given id (keyset paging: stable while accounts come and go). The filters are
# always applied, so the statement is one constant: a LIKE pattern of "%" matches every name, and each state is a
# pair of accepted values ((false, true) for any, (true, true) for blocked only).
_PAGE = (
    select(USERS)
    .where(
        U.id > bindparam("after", type_=Integer()),
        or_(
            func.lower(U.username).like(bindparam("pattern", type_=String()), escape="\\"),
            U.email.like(bindparam("pattern", type_=String()), escape="\\"),
        ),
        U.blocked.in_(
            [bindparam("blocked_a", type_=Boolean()), bindparam("blocked_b", type_=Boolean())]
        ),
        U.confirmed.in_(
            [bindparam("confirmed_a", type_=Boolean()), bindparam("confirmed_b", type_=Boolean())]
        ),
    )
    .order_by(U.id)
    .limit(bindparam("limit", type_=Integer()))
)
# Its sessions and account codes go with it (ON DELETE CASCADE); its audit rows stay (they hold no foreign key).
_DELETE = delete(USERS).where(U.id == UID)
# Conditional on the hash the caller verified: a concurrent change in between makes this one miss.
_UPGRADE_HASH = (
    update(USERS)
    .where(U.id == UID, U.password_hash == bindparam("expected"))
    .values(password_hash=bindparam("new_hash", type_=String()))
)
_SET_PASSWORD = (
    update(USERS)
    .where(U.id == UID, U.password_hash == bindparam("expected"))
    .values(password_hash=bindparam("new_hash", type_=String()), updated_at=STAMP)
    .returning(*USERS.c)
)
_REPLACE_PASSWORD = (
    update(USERS)
    .where(U.id == UID)
    .values(password_hash=bindparam("new_hash", type_=String()), updated_at=STAMP)
    .returning(*USERS.c)
)
_CONFIRM = (
    update(USERS).where(U.id == UID).values(confirmed=True, updated_at=STAMP).returning(*USERS.c)
)
_SET_BLOCKED = (
    update(USERS)
    .where(U.id == UID)
    .values(blocked=bindparam("blocked", type_=Boolean()), updated_at=STAMP)
)


def _escape_like(text: str) -> str:
    """``text`` matched literally inside a LIKE pattern escaped with a backslash."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _user(row: dict[str, Any] | None) -> UserRecord | None:
    return None if row is None else UserRecord(**row)


class Users:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def login_candidate(self, provider: str, identifier: str) -> UserRecord | None:
        """The account a login identifier names: its email (compared lower-cased) or its username (as typed)."""
        values = {"provider": provider, "email": identifier.lower(), "username": identifier}
        return _user(await self._runner.one(_LOGIN_CANDIDATE, values))

    async def signed_in(self, session_id: str, user_id: int, now: datetime) -> UserRecord | None:
        """The user whose live session this is."""
        values = {"sid": session_id, "uid": user_id, "now_": now}
        return _user(await self._runner.one(_SIGNED_IN, values))

    async def taken(self, username: str, email: str) -> bool:
        values = {"username": username, "email": email, "username_lower": username.lower()}
        return await self._runner.one(_TAKEN, values) is not None

    async def create(self, values: dict[str, Any]) -> UserRecord:
        """Insert an account; ``Conflict`` if a unique index refuses it."""
        row = await self._runner.one(_CREATE, values)
        assert row is not None
        return UserRecord(**row)

    async def get(self, user_id: int) -> UserRecord | None:
        return _user(await self._runner.one(_BY_ID, {"uid": user_id}))

    async def by_email(self, email: str) -> UserRecord | None:
        return _user(await self._runner.one(_BY_EMAIL, {"email": email}))

    async def by_username(self, username: str) -> UserRecord | None:
        return _user(await self._runner.one(_BY_USERNAME, {"username": username}))

    async def local_by_email(self, email: str) -> UserRecord | None:
        return _user(await self._runner.one(_LOCAL_BY_EMAIL, {"email": email}))

    async def names(self) -> list[tuple[int, str, str]]:
        """Every account's id, username and email, by id."""
        rows = await self._runner.all(_NAMES)
        return [(row["id"], row["username"], row["email"]) for row in rows]

    async def page(
        self,
        *,
        after: int,
        limit: int,
        search: str | None = None,
        blocked: bool | None = None,
        confirmed: bool | None = None,
    ) -> list[UserRecord]:
        """Up to ``limit`` accounts with ids above ``after``, by id: those whose username or email contains
        ``search`` (any case), in the given states (None: either)."""
        values = {
            "after": after,
            "limit": limit,
            "pattern": f"%{_escape_like(search.lower())}%" if search else "%",
            "blocked_a": False if blocked is None else blocked,
            "blocked_b": True if blocked is None else blocked,
            "confirmed_a": False if confirmed is None else confirmed,
            "confirmed_b": True if confirmed is None else confirmed,
        }
        return [UserRecord(**row) for row in await self._runner.all(_PAGE, values)]

    async def delete(self, user_id: int) -> bool:
        """Delete the account, its sessions and codes with it; whether there was one."""
        return bool(await self._runner.run(_DELETE, {"uid": user_id}))

    async def upgrade_hash(self, user_id: int, old_hash: str, new_hash: str) -> None:
        """Replace an outdated hash, unless the password changed meanwhile."""
        values = {"uid": user_id, "expected": old_hash, "new_hash": new_hash}
        await self._runner.run(_UPGRADE_HASH, values)

    async def set_password(
        self, user_id: int, expected_hash: str | None, new_hash: str, *, now: datetime
    ) -> UserRecord | None:
        """Replace the hash the caller verified; None if it changed in between."""
        values = {
            "uid": user_id,
            "expected": expected_hash,
            "new_hash": new_hash,
            "stamp": utc_ms(now),
        }
        return _user(await self._runner.one(_SET_PASSWORD, values))

    async def replace_password(
        self, user_id: int, new_hash: str, *, now: datetime
    ) -> UserRecord | None:
        values = {"uid": user_id, "new_hash": new_hash, "stamp": utc_ms(now)}
        return _user(await self._runner.one(_REPLACE_PASSWORD, values))

    async def confirm(self, user_id: int, *, now: datetime) -> UserRecord | None:
        return _user(await self._runner.one(_CONFIRM, {"uid": user_id, "stamp": utc_ms(now)}))

    async def set_blocked(self, user_id: int, blocked: bool, *, now: datetime) -> bool:
        values = {"uid": user_id, "blocked": blocked, "stamp": utc_ms(now)}
        return bool(await self._runner.run(_SET_BLOCKED, values))
