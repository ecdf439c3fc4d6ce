"""Access and refresh tokens: what a token is and how it is checked, apart from how it travels.

Both are HMAC-signed JWTs with pinned algorithms and distinct keys. Each carries ``type`` so that one kind can never
pass for the other even if an operator reused a key. Verification takes ``now`` as an argument: the library checks
the signature and its algorithm, and every claim, times included, is checked here, against the injected time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeGuard

from jose import jws, jwt
from jose.backends.base import Key
from jose.backends.native import HMACKey
from jose.exceptions import JOSEError

ACCESS = "access"
REFRESH = "refresh"
# A token issued by a clock slightly ahead of ours is fine; one from the future is not ours.
MAX_CLOCK_SKEW_SECONDS = 30

MAX_TOKEN_LENGTH = 4096
MAX_HEADER_LENGTH = 256
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class TokenProblem(StrEnum):
    MALFORMED = "TOKEN_MALFORMED"  # not a JWT, bad signature, wrong algorithm or key
    WRONG_TYPE = "TOKEN_WRONG_TYPE"
    EXPIRED = "TOKEN_EXPIRED"
    NOT_YET_VALID = "TOKEN_NOT_YET_VALID"


class TokenError(Exception):
    def __init__(self, problem: TokenProblem) -> None:
        self.problem = problem
        super().__init__(problem.value)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    session_id: str
    issued_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class RefreshClaims:
    user_id: int
    session_id: str
    generation: int
    issued_at: int
    expires_at: int


@lru_cache(maxsize=16)
def _signing_key(secret: str, algorithm: str) -> Key:
    """The library's key object for a secret, built once: given a plain string, python-jose would first try to
    parse it as a JSON key set and then build the key again, on every call, most of a decode's time
    (bench/results/2026-11-28-hot-path.md). The library's hashlib HMAC key, not its cryptography one: the same
    HMAC (``hmac.compare_digest`` to verify) without a backend object built for every signature."""
    return HMACKey(secret, algorithm)


def _timestamp(value: datetime) -> int:
    return int(value.timestamp())


def encode_access_token(
    *,
    user_id: int,
    session_id: str,
    issued_at: datetime,
    expires_at: datetime,
    key: str,
    algorithm: str,
) -> str:
    claims = {
        "id": user_id,  # Strapi's claim: frontends read it
        "sub": str(user_id),
        "sid": session_id,
        "type": ACCESS,
        "iat": _timestamp(issued_at),
        "exp": _timestamp(expires_at),
    }
    return str(jwt.encode(claims, _signing_key(key, algorithm), algorithm=algorithm))


def encode_refresh_token(
    *,
    user_id: int,
    session_id: str,
    generation: int,
    issued_at: datetime,
    expires_at: datetime,
    key: str,
    algorithm: str,
) -> str:
    """Deterministic for its inputs: re-encoding the stored generation yields the very same token."""
    claims = {
        "sub": str(user_id),
        "sid": session_id,
        "gen": generation,
        "type": REFRESH,
        "iat": _timestamp(issued_at),
        "exp": _timestamp(expires_at),
    }
    return str(jwt.encode(claims, _signing_key(key, algorithm), algorithm=algorithm))


def _decode(token: str, *, key: str, algorithm: str, kind: str, now: datetime) -> dict[str, Any]:
    # Shape first: the library parses the (unsigned) header before it checks the signature, so nothing
    # oversized or oddly nested may reach it.
    if len(token) > MAX_TOKEN_LENGTH or not _SHAPE.fullmatch(token):
        raise TokenError(TokenProblem.MALFORMED)
    if len(token.split(".", 1)[0]) > MAX_HEADER_LENGTH:
        raise TokenError(TokenProblem.MALFORMED)
    # The library's JWS verification (the header's algorithm pinned, the signature compared in constant time),
    # not its jwt.decode: every claim check there would be switched off (they are done below, against the
    # injected clock), and it parses the token a second time for the header (bench/results/2026-11-28-hot-path.md).
    try:
        claims = json.loads(jws.verify(token, _signing_key(key, algorithm), [algorithm]).decode())
    except (JOSEError, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise TokenError(TokenProblem.MALFORMED) from exc
    if not isinstance(claims, dict):
        raise TokenError(TokenProblem.MALFORMED)
    if claims.get("type") != kind:
        raise TokenError(TokenProblem.WRONG_TYPE)
    iat, exp = claims.get("iat"), claims.get("exp")
    if not _is_int(iat) or not _is_int(exp):
        raise TokenError(TokenProblem.MALFORMED)
    current = _timestamp(now)
    if current >= exp:
        raise TokenError(TokenProblem.EXPIRED)
    if iat > current + MAX_CLOCK_SKEW_SECONDS:
        raise TokenError(TokenProblem.NOT_YET_VALID)
    return claims


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _user_id(claims: dict[str, Any]) -> int:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.isdecimal() or len(sub) > 18:
        raise TokenError(TokenProblem.MALFORMED)
    return int(sub)


def _session_id(claims: dict[str, Any]) -> str:
    sid = claims.get("sid")
    if not isinstance(sid, str) or not 0 < len(sid) <= 64:
        raise TokenError(TokenProblem.MALFORMED)
    return sid


def decode_access_token(token: str, *, key: str, algorithm: str, now: datetime) -> AccessClaims:
    claims = _decode(token, key=key, algorithm=algorithm, kind=ACCESS, now=now)
    user_id = _user_id(claims)
    if claims.get("id") != user_id or not _is_int(claims.get("id")):
        raise TokenError(TokenProblem.MALFORMED)
    return AccessClaims(user_id, _session_id(claims), claims["iat"], claims["exp"])


def decode_refresh_token(token: str, *, key: str, algorithm: str, now: datetime) -> RefreshClaims:
    claims = _decode(token, key=key, algorithm=algorithm, kind=REFRESH, now=now)
    generation = claims.get("gen")
    if not _is_int(generation) or generation < 1:
        raise TokenError(TokenProblem.MALFORMED)
    return RefreshClaims(
        _user_id(claims), _session_id(claims), generation, claims["iat"], claims["exp"]
    )
