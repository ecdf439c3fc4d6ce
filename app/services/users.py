"""Accounts as values: how names are normalized, what a registration and a password must satisfy, and how a
login's credentials are checked. No storage here: the use cases (``app.services.accounts``) do that."""

from __future__ import annotations

import secrets
import string
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.db import utc_ms
from app.errors import (
    BLOCKED,
    CURRENT_PASSWORD_INVALID,
    INVALID_LOGIN,
    NOT_CONFIRMED,
    SAME_PASSWORD,
    ApplicationError,
    ValidationError,
)
from app.security.passwords import BCRYPT_MAX_BYTES
from app.services.hashing import PasswordHasher
from app.store import UserRecord

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


@dataclass(frozen=True)
class PasswordRules:
    min_length: int
    max_bytes: int = BCRYPT_MAX_BYTES


FieldErrors = list[tuple[list[str | int], str]]


def _password_policy(password: str, rules: PasswordRules) -> FieldErrors:
    """Length bounds only (NIST SP 800-63B: no composition rules)."""
    if len(password) < rules.min_length:
        return [(["password"], f"password must be at least {rules.min_length} characters")]
    if len(password.encode("utf-8")) > rules.max_bytes:
        return [(["password"], f"Password must be less than {rules.max_bytes + 1} bytes")]
    return []


def check_password_policy(password: str, rules: PasswordRules) -> None:
    if errors := _password_policy(password, rules):
        raise ValidationError.from_field_errors(errors)


def check_registration(reg: Registration, rules: PasswordRules) -> None:
    """The content-type rules Strapi applies after its request schema (its messages, all at once)."""
    errors: FieldErrors = []
    if len(reg.username) < 3:
        errors.append((["username"], "username must be at least 3 characters"))
    if len(reg.email) < 6:
        errors.append((["email"], "email must be at least 6 characters"))
    errors += _password_policy(reg.password, rules)
    if errors:
        raise ValidationError.from_field_errors(errors)


def new_user_values(
    reg: Registration, password_hash: str, *, confirmed: bool, now: datetime
) -> dict[str, Any]:
    """The row of a new local account, its names normalized."""
    stamp = utc_ms(now)
    return {
        "document_id": new_document_id(),
        "username": normalize_username(reg.username),
        "email": normalize_email(reg.email),
        "provider": LOCAL,
        "password_hash": password_hash,
        "confirmed": confirmed,
        "blocked": False,
        "created_at": stamp,
        "updated_at": stamp,
        "published_at": stamp,
    }


async def check_credentials(
    hasher: PasswordHasher, user: UserRecord | None, password: str, *, email_confirmation: bool
) -> tuple[UserRecord, str | None]:
    """Strapi's order: password, then confirmation, then blocked (a wrong password never reveals either). An
    unknown user still costs one verify."""
    ok, upgraded_hash = await hasher.verify(password, user.password_hash if user else None)
    if user is None or not ok:
        raise ValidationError(INVALID_LOGIN)
    if email_confirmation and not user.confirmed:
        raise ApplicationError(NOT_CONFIRMED)
    if user.blocked:
        raise ApplicationError(BLOCKED)
    return user, upgraded_hash


async def prepare_password_change(
    hasher: PasswordHasher,
    user: UserRecord,
    current_password: str,
    new_password: str,
    rules: PasswordRules,
) -> str:
    """Strapi's checks, in its order; returns the new hash (computed off the event loop)."""
    ok, _ = await hasher.verify(current_password, user.password_hash)
    if not ok:
        raise ValidationError(CURRENT_PASSWORD_INVALID)
    if new_password == current_password:
        raise ValidationError(SAME_PASSWORD)
    check_password_policy(new_password, rules)
    return await hasher.hash(new_password)
