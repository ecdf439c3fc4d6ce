"""Password hashing: argon2id for new hashes; bcrypt (``$2a$``/``$2b$``/``$2y$``, as Strapi wrote them) verified and
upgraded to argon2id on the next successful login."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from passlib.context import CryptContext

# bcrypt, and so bcryptjs and Strapi, look at the first 72 bytes only; a longer input is accepted at login
# and means its 72-byte prefix, so an imported hash keeps working for the same typed password.
BCRYPT_MAX_BYTES = 72


@dataclass(frozen=True)
class Argon2Params:
    memory_cost: int = 19456  # KiB (19 MiB): OWASP's minimum for argon2id
    time_cost: int = 2
    parallelism: int = 1


def build_context(params: Argon2Params) -> CryptContext:
    return CryptContext(
        schemes=["argon2", "bcrypt"],
        default="argon2",
        deprecated=["bcrypt"],
        argon2__type="ID",
        argon2__memory_cost=params.memory_cost,
        argon2__time_cost=params.time_cost,
        argon2__parallelism=params.parallelism,
    )


def login_secret(password: str) -> bytes:
    """What a login compares: the UTF-8 bytes, cut to 72 as bcryptjs does."""
    return password.encode("utf-8")[:BCRYPT_MAX_BYTES]


def hash_password(context: CryptContext, password: str) -> str:
    return str(context.hash(password.encode("utf-8")))


def verify_password(
    context: CryptContext, password: str, stored_hash: str | None, dummy_hash: str
) -> tuple[bool, str | None]:
    """Check ``password``; return (ok, replacement hash when the stored one is outdated).

    With no stored hash (unknown user, or a social-login account), a dummy hash is verified instead, so the
    answer takes as long as a wrong password does.
    """
    secret = login_secret(password)
    if stored_hash is None:
        context.verify(secret, dummy_hash)
        return False, None
    try:
        ok, new_hash = context.verify_and_update(secret, stored_hash)
    except ValueError:  # not a hash any of our schemes know: treat as a mismatch, never as a 500
        context.verify(secret, dummy_hash)
        return False, None
    return bool(ok), (str(new_hash) if ok and new_hash else None)


def make_dummy_hash(context: CryptContext) -> str:
    return str(context.hash(secrets.token_bytes(16)))
