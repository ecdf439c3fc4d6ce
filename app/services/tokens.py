"""Issuing and reading tokens with the service's keys and lifetimes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.errors import MISSING_OR_INVALID_CREDENTIALS, UnauthorizedError
from app.security import tokens
from app.security.keys import SigningKey, jwks_document
from app.security.tokens import VERIFIED_CACHE_SIZE, AccessClaims, SigningKeys, TokenError


@dataclass(frozen=True, eq=False)
class PublishedKeys:
    """The access-token keys in use and their public JWK Set, replaced together when the key file changes."""

    access: SigningKeys
    jwks: bytes  # the body of /.well-known/jwks.json
    etag: str

    @classmethod
    def _of(cls, access: SigningKeys, jwks: bytes) -> PublishedKeys:
        return cls(access, jwks, f'"{hashlib.sha256(jwks).hexdigest()[:32]}"')

    @classmethod
    def of_secret(cls, secret: str, algorithm: str) -> PublishedKeys:
        keys = SigningKeys.hmac(secret, algorithm, cache_size=VERIFIED_CACHE_SIZE)
        return cls._of(keys, jwks_document(()))

    @classmethod
    def of_key_set(cls, keys: tuple[SigningKey, ...]) -> PublishedKeys:
        return cls._of(
            SigningKeys.key_set(keys, cache_size=VERIFIED_CACHE_SIZE), jwks_document(keys)
        )


@dataclass(eq=False)
class TokenKeys:
    """The keys every part of one process signs and verifies with. ``published`` is swapped whole, in one
    assignment, when the key file changes (``app.services.key_file``): a request sees the old set or the new one,
    never half of each."""

    published: PublishedKeys
    refresh: SigningKeys = field(repr=False)
    access_ttl: timedelta

    @property
    def access(self) -> SigningKeys:
        return self.published.access


def issue_access_token(keys: TokenKeys, *, user_id: int, session_id: str, now: datetime) -> str:
    return tokens.encode_access_token(
        user_id=user_id,
        session_id=session_id,
        issued_at=now,
        expires_at=now + keys.access_ttl,
        keys=keys.access,
    )


def read_access_token(keys: TokenKeys, token: str, *, now: datetime) -> AccessClaims:
    try:
        return tokens.decode_access_token(token, keys=keys.access, now=now)
    except TokenError as exc:
        raise UnauthorizedError(MISSING_OR_INVALID_CREDENTIALS, code=exc.problem.value) from None
