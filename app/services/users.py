"""Accounts: registration, lookup for login, credential checks."""

from __future__ import annotations

import secrets
import string
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utc_ms
from app.errors import (
    BLOCKED,
    CURRENT_PASSWORD_INVALID,
    INVALID_LOGIN,
    NOT_CONFIRMED,
    SAME_PASSWORD,
    TAKEN,
    ApplicationError,
    ValidationError,
)
from app.models import User
from app.models.user import UserRecord
from app.services.hashing import PasswordHasher

LOCAL = "local"
_DOC_ID_FIRST = string.ascii_lowercase
_DOC_ID_REST = string.ascii_lowercase + string.digits


def new_document_id() -> str:
    """A 24-character lowercase alphanumeric id starting with a letter, like Strapi's cuid2 ids."""
    return secrets.choice(_DOC_ID_FIRST) + "".join(secrets.choice(_DOC_ID_REST) for _ in range(23))


def normalize_username(value: str) -> str:
    """Usernames are stored and compared in Unicode NFKC form: "José" typed with one code point or with "e" and a
    combining accent, or a full-width "ｊｏｓé", is one name (Django normalizes usernames the same way)."""
    return unicodedata.normalize("NFKC", value)


def normalize_email(value: str) -> str:
    """Emails: NFKC, then lower-cased, as they are stored (the login look-up lower-cases an NFKC identifier)."""
    return unicodedata.normalize("NFKC", value).lower()


@dataclass(frozen=True)
class Registration:
    username: str
    email: str
    password: str


FieldErrors = list[tuple[list[str | int], str]]


def _password_policy(password: str, min_length: int, max_bytes: int = 72) -> FieldErrors:
    """Length bounds only (NIST SP 800-63B: no composition rules)."""
    if len(password) < min_length:
        return [(["password"], f"password must be at least {min_length} characters")]
    if len(password.encode("utf-8")) > max_bytes:
        return [(["password"], f"Password must be less than {max_bytes + 1} bytes")]
    return []


def check_password_policy(password: str, *, min_length: int, max_bytes: int = 72) -> None:
    if errors := _password_policy(password, min_length, max_bytes):
        raise ValidationError.from_field_errors(errors)


def check_registration(
    reg: Registration, *, password_min_length: int, password_max_bytes: int = 72
) -> None:
    """The content-type rules Strapi applies after its request schema (its messages, all at once)."""
    errors: FieldErrors = []
    if len(reg.username) < 3:
        errors.append((["username"], "username must be at least 3 characters"))
    if len(reg.email) < 6:
        errors.append((["email"], "email must be at least 6 characters"))
    errors += _password_policy(reg.password, password_min_length, password_max_bytes)
    if errors:
        raise ValidationError.from_field_errors(errors)


async def _taken(session: AsyncSession, username: str, email: str) -> bool:
    # Strapi's conflict rule, which also stops a username that is someone's email and vice versa.
    query = (
        select(User.id)
        .where(
            or_(
                User.email == email,
                User.username == email,
                User.username == username,
                User.email == username.lower(),
            )
        )
        .limit(1)
    )
    return (await session.scalar(query)) is not None


async def ensure_available(session: AsyncSession, username: str, email: str) -> None:
    """Refuse a taken username or email before the caller pays for a password hash; ``create_user`` checks again
    (and the unique indexes decide a race)."""
    if await _taken(session, normalize_username(username), normalize_email(email)):
        raise ApplicationError(TAKEN)


async def create_user(
    session: AsyncSession,
    reg: Registration,
    password_hash: str,
    *,
    confirmed: bool,
    now: datetime,
) -> User:
    username, email = normalize_username(reg.username), normalize_email(reg.email)
    if await _taken(session, username, email):
        raise ApplicationError(TAKEN)
    stamp = utc_ms(now)
    user = User(
        document_id=new_document_id(),
        username=username,
        email=email,
        provider=LOCAL,
        password_hash=password_hash,
        confirmed=confirmed,
        blocked=False,
        created_at=stamp,
        updated_at=stamp,
        published_at=stamp,
    )
    session.add(user)
    try:
        # Two racing registrations both pass the check above; the unique indexes pick one winner,
        # and the loser's transaction is rolled back whole by its caller.
        await session.flush()
    except IntegrityError:
        raise ApplicationError(TAKEN) from None
    return user


async def check_credentials(
    hasher: PasswordHasher,
    user: UserRecord | None,
    password: str,
    *,
    email_confirmation: bool,
) -> tuple[UserRecord, str | None]:
    """Strapi's order: password, then confirmation, then blocked (a wrong password never reveals either)."""
    ok, upgraded_hash = await hasher.verify(password, user.password_hash if user else None)
    if user is None or not ok:
        raise ValidationError(INVALID_LOGIN)
    if email_confirmation and not user.confirmed:
        raise ApplicationError(NOT_CONFIRMED)
    if user.blocked:
        raise ApplicationError(BLOCKED)
    return user, upgraded_hash


async def upgrade_password_hash(
    session: AsyncSession, user_id: int, old_hash: str, new_hash: str
) -> None:
    """Replace an outdated hash, unless the password changed meanwhile (conditional update)."""
    await session.execute(
        update(User)
        .where(User.id == user_id, User.password_hash == old_hash)
        .values(password_hash=new_hash)
    )


async def prepare_password_change(
    hasher: PasswordHasher,
    user: User | UserRecord,
    current_password: str,
    new_password: str,
    *,
    password_min_length: int,
    password_max_bytes: int = 72,
) -> str:
    """Strapi's checks, in its order; returns the new hash (computed off the event loop)."""
    ok, _ = await hasher.verify(current_password, user.password_hash)
    if not ok:
        raise ValidationError(CURRENT_PASSWORD_INVALID)
    if new_password == current_password:
        raise ValidationError(SAME_PASSWORD)
    check_password_policy(
        new_password, min_length=password_min_length, max_bytes=password_max_bytes
    )
    return await hasher.hash(new_password)


async def set_password(
    session: AsyncSession, user: User | UserRecord, new_hash: str, *, now: datetime
) -> User:
    """Replace the hash the caller verified; a concurrent change in between makes this one fail."""
    stamp = utc_ms(now)
    statement = (
        update(User)
        .where(User.id == user.id, User.password_hash == user.password_hash)
        .values(password_hash=new_hash, updated_at=stamp)
        .returning(User)
        .execution_options(synchronize_session=False)
    )
    updated = (await session.scalars(statement)).first()
    if updated is None:
        raise ValidationError(CURRENT_PASSWORD_INVALID)
    return updated
