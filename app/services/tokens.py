"""Issuing and reading tokens with the service's keys and lifetimes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.errors import MISSING_OR_INVALID_CREDENTIALS, UnauthorizedError
from app.security import tokens
from app.security.tokens import AccessClaims, TokenError


@dataclass(frozen=True)
class TokenKeys:
    access_key: str = field(repr=False)
    refresh_key: str = field(repr=False)
    algorithm: str
    access_ttl: timedelta


def issue_access_token(keys: TokenKeys, *, user_id: int, session_id: str, now: datetime) -> str:
    return tokens.encode_access_token(
        user_id=user_id,
        session_id=session_id,
        issued_at=now,
        expires_at=now + keys.access_ttl,
        key=keys.access_key,
        algorithm=keys.algorithm,
    )


def read_access_token(keys: TokenKeys, token: str, *, now: datetime) -> AccessClaims:
    try:
        return tokens.decode_access_token(
            token, key=keys.access_key, algorithm=keys.algorithm, now=now
        )
    except TokenError as exc:
        raise UnauthorizedError(MISSING_OR_INVALID_CREDENTIALS, code=exc.problem.value) from None
