"""Account lifecycle: one-time codes for password reset and email confirmation, and blocking.

Codes are single use (consumed by one conditional UPDATE), expire, and a new code for the same purpose retires
the previous one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utc_ms
from app.models import AccountToken, User
from app.security import codes
from app.services.sessions import Revocation, revoke_user_sessions
from app.services.users import LOCAL


class Purpose(StrEnum):
    RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose, not a secret
    CONFIRM_EMAIL = "email_confirmation"


async def find_local_user_by_email(session: AsyncSession, email: str) -> User | None:
    query = select(User).where(User.provider == LOCAL, User.email == email.lower()).limit(1)
    return (await session.scalars(query)).first()


async def issue_code(
    session: AsyncSession,
    key: bytes,
    user_id: int,
    purpose: Purpose,
    *,
    now: datetime,
    ttl: timedelta,
) -> str:
    """A fresh code; any earlier unused code of the same purpose stops working."""
    await session.execute(
        delete(AccountToken)
        .where(
            AccountToken.user_id == user_id,
            AccountToken.purpose == purpose.value,
            AccountToken.used_at.is_(None),
        )
        .execution_options(synchronize_session=False)
    )
    code = codes.new_code()
    session.add(
        AccountToken(
            user_id=user_id,
            purpose=purpose.value,
            token_hash=codes.hash_code(key, code),
            created_at=now,
            expires_at=now + ttl,
        )
    )
    await session.flush()
    return code


async def code_is_valid(
    session: AsyncSession, key: bytes, code: str, purpose: Purpose, *, now: datetime
) -> bool:
    if not code or len(code) > codes.MAX_CODE_LENGTH:
        return False
    query = select(AccountToken.id).where(
        AccountToken.token_hash == codes.hash_code(key, code),
        AccountToken.purpose == purpose.value,
        AccountToken.used_at.is_(None),
        AccountToken.expires_at > now,
    )
    return (await session.scalar(query)) is not None


async def consume_code(
    session: AsyncSession, key: bytes, code: str, purpose: Purpose, *, now: datetime
) -> int | None:
    """The user a valid code belongs to, marking it used; None for an unknown, used or expired code."""
    if not code or len(code) > codes.MAX_CODE_LENGTH:
        return None
    statement = (
        update(AccountToken)
        .where(
            AccountToken.token_hash == codes.hash_code(key, code),
            AccountToken.purpose == purpose.value,
            AccountToken.used_at.is_(None),
            AccountToken.expires_at > now,
        )
        .values(used_at=now)
        .returning(AccountToken.user_id)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def confirm_email(session: AsyncSession, user_id: int, *, now: datetime) -> None:
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(confirmed=True, updated_at=utc_ms(now))
        .execution_options(synchronize_session=False)
    )


async def replace_password(
    session: AsyncSession, user_id: int, new_hash: str, *, now: datetime
) -> User | None:
    statement = (
        update(User)
        .where(User.id == user_id)
        .values(password_hash=new_hash, updated_at=utc_ms(now))
        .returning(User)
        .execution_options(synchronize_session=False)
    )
    return (await session.scalars(statement)).first()


async def set_blocked(session: AsyncSession, user_id: int, blocked: bool, *, now: datetime) -> bool:
    """Block or unblock; blocking also revokes every session of the user at once."""
    result = await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(blocked=blocked, updated_at=utc_ms(now))
        .execution_options(synchronize_session=False)
    )
    if blocked:
        await revoke_user_sessions(session, user_id, reason=Revocation.BLOCKED, now=now)
    return bool(getattr(result, "rowcount", 0))
