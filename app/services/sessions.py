"""Sessions: one per login, checked on every authenticated request."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import INVALID_CREDENTIALS, UnauthorizedError
from app.models import Session, User

USER_AGENT_MAX = 512


@dataclass(frozen=True)
class Client:
    """What the transport knows about the caller."""

    ip: str | None
    user_agent: str | None


def new_session_id() -> str:
    return secrets.token_hex(16)


async def start_session(
    session: AsyncSession,
    user_id: int,
    client: Client,
    *,
    now: datetime,
    max_age: timedelta,
) -> Session:
    row = Session(
        id=new_session_id(),
        user_id=user_id,
        generation=0,
        expires_at=now + max_age,
        created_at=now,
        last_active_at=now,
        ip=client.ip,
        user_agent=(client.user_agent or None) and client.user_agent[:USER_AGENT_MAX],
    )
    session.add(row)
    await session.flush()
    return row


async def authenticated_user(
    session: AsyncSession,
    user_id: int,
    session_id: str,
    *,
    now: datetime,
    email_confirmation: bool,
) -> User:
    """The user behind a valid access token, if its session is alive and the account usable.

    One indexed query (session by primary key joined to its user), so revocation takes effect at once
    without a cache that could lag behind.
    """
    query = (
        select(User)
        .join(Session, Session.user_id == User.id)
        .where(
            Session.id == session_id,
            Session.user_id == user_id,
            Session.revoked_at.is_(None),
            Session.expires_at > now,
        )
    )
    user = (await session.scalars(query)).first()
    if user is None or user.blocked or (email_confirmation and not user.confirmed):
        raise UnauthorizedError(INVALID_CREDENTIALS)
    return user
