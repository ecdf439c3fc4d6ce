"""Access and refresh tokens: what a token is and how it is checked, apart from how it travels.

Refresh tokens are HMAC-signed; access tokens are HMAC-signed too, or ES256/RS256-signed by the first key of a key
set (``app.security.keys``), with its ``kid``. Algorithms are pinned and the keys distinct. Each token carries
``type`` so that one kind can never pass for the other even if an operator reused a key. Verification takes ``now``
as an argument: python-jose's key objects check the signature, and every claim, times included, is checked here,
against the injected time.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeGuard

from jose import jwt
from jose.backends.base import Key
from jose.backends.native import HMACKey

from app.security.keys import HMAC_ALGORITHMS, SigningKey

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


# Access tokens verified once are remembered by their exact text until evicted: a client presents the same token
# for its whole lifetime, and an ES256 signature check costs more than the rest of a /users/me
# (bench/results/2026-12-03-asymmetric-keys.md). Only a signature that verified is remembered, every claim is
# checked again at each use, and the memory belongs to one key set: a reload starts empty, so a token of a
# retired key is refused the moment its key is gone.
VERIFIED_CACHE_SIZE = 4096


@lru_cache(maxsize=16)
def _hmac_key(secret: str, algorithm: str) -> Key:
    """The library's key object for a secret, built once: given a plain string, python-jose would first try to
    parse it as a JSON key set and then build the key again, on every call, most of a decode's time
    (bench/results/2026-11-28-hot-path.md). The library's hashlib HMAC key, not its cryptography one: the same
    HMAC (``hmac.compare_digest`` to verify) without a backend object built for every signature."""
    return HMACKey(secret, algorithm)


@dataclass(frozen=True, eq=False)
class SigningKeys:
    """What signs and verifies one kind of token: an HMAC secret, or a key set whose first key signs (each
    token then names its key with ``kid``). Built once; a changed key set is a new ``SigningKeys``."""

    algorithm: str
    signer: Key = field(repr=False)
    kid: str | None
    verifiers: Mapping[str, Key] = field(repr=False)  # by kid; empty for an HMAC secret
    cache_size: int = 0
    _verified: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @classmethod
    def hmac(cls, secret: str, algorithm: str, *, cache_size: int = 0) -> SigningKeys:
        if algorithm not in HMAC_ALGORITHMS:
            raise ValueError(f"{algorithm} is not an HMAC algorithm")
        return cls(algorithm, _hmac_key(secret, algorithm), None, {}, cache_size)

    @classmethod
    def key_set(cls, keys: Sequence[SigningKey], *, cache_size: int = 0) -> SigningKeys:
        if not keys:
            raise ValueError("a key set needs at least one key")
        first = keys[0]
        return cls(
            first.algorithm,
            first.private,
            first.kid,
            {key.kid: key.public for key in keys},
            cache_size,
        )

    def sign(self, claims: dict[str, Any]) -> str:
        headers = None if self.kid is None else {"kid": self.kid}
        return str(jwt.encode(claims, self.signer, algorithm=self.algorithm, headers=headers))

    def verified_claims(self, token: str) -> dict[str, Any]:
        """The claims of a token whose signature one of these keys made; ``TokenError`` otherwise. No claim is
        checked here."""
        claims = self._verified.get(token)
        if claims is not None:
            return claims
        claims = self._verify(token)
        if self.cache_size:
            if len(self._verified) >= self.cache_size:
                del self._verified[next(iter(self._verified))]  # the oldest
            self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> dict[str, Any]:
        # Shape first: nothing oversized or oddly nested is parsed.
        if len(token) > MAX_TOKEN_LENGTH or not _SHAPE.fullmatch(token):
            raise TokenError(TokenProblem.MALFORMED)
        encoded_header, encoded_claims, encoded_signature = token.split(".")
        if len(encoded_header) > MAX_HEADER_LENGTH:
            raise TokenError(TokenProblem.MALFORMED)
        try:
            header = json.loads(_b64decode(encoded_header))
            signature = _b64decode(encoded_signature)
        except (ValueError, TypeError, RecursionError):
            raise TokenError(TokenProblem.MALFORMED) from None
        # The algorithm is pinned, not read from the token: "none", or HS256 keyed with a published public key,
        # never reaches a key. The key comes only from this set, by kid: a jku, x5u, x5c or jwk header is never
        # looked at, let alone fetched. A critical extension we do not implement must be refused (RFC 7515 4.1.11).
        if not isinstance(header, dict) or header.get("alg") != self.algorithm or "crit" in header:
            raise TokenError(TokenProblem.MALFORMED)
        # One spelling per signature: base64url's spare bits would give a valid token more texts, each verified
        # afresh and each taking a place among the remembered ones.
        if base64.urlsafe_b64encode(signature).rstrip(b"=").decode() != encoded_signature:
            raise TokenError(TokenProblem.MALFORMED)
        if self.kid is None:
            key = self.signer
        else:
            kid = header.get("kid")
            found = self.verifiers.get(kid) if isinstance(kid, str) else None
            if found is None:
                raise TokenError(TokenProblem.MALFORMED)
            key = found
        # The library's key objects compare an HMAC in constant time and check a signature with cryptography.
        if not key.verify(f"{encoded_header}.{encoded_claims}".encode(), signature):
            raise TokenError(TokenProblem.MALFORMED)
        try:
            claims = json.loads(_b64decode(encoded_claims))
        except (ValueError, TypeError, RecursionError):
            raise TokenError(TokenProblem.MALFORMED) from None
        if not isinstance(claims, dict):
            raise TokenError(TokenProblem.MALFORMED)
        return claims


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _timestamp(value: datetime) -> int:
    return int(value.timestamp())


def encode_access_token(
    *,
    user_id: int,
    session_id: str,
    issued_at: datetime,
    expires_at: datetime,
    keys: SigningKeys,
) -> str:
    claims = {
        "id": user_id,  # Strapi's claim: frontends read it
        "sub": str(user_id),
        "sid": session_id,
        "type": ACCESS,
        "iat": _timestamp(issued_at),
        "exp": _timestamp(expires_at),
    }
    return keys.sign(claims)


def encode_refresh_token(
    *,
    user_id: int,
    session_id: str,
    generation: int,
    issued_at: datetime,
    expires_at: datetime,
    keys: SigningKeys,
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
    return keys.sign(claims)


def _decode(token: str, *, keys: SigningKeys, kind: str, now: datetime) -> dict[str, Any]:
    # Every claim, times included, is checked here against the injected clock, at every use.
    claims = keys.verified_claims(token)
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


def decode_access_token(token: str, *, keys: SigningKeys, now: datetime) -> AccessClaims:
    claims = _decode(token, keys=keys, kind=ACCESS, now=now)
    user_id = _user_id(claims)
    if claims.get("id") != user_id or not _is_int(claims.get("id")):
        raise TokenError(TokenProblem.MALFORMED)
    return AccessClaims(user_id, _session_id(claims), claims["iat"], claims["exp"])


def decode_refresh_token(token: str, *, keys: SigningKeys, now: datetime) -> RefreshClaims:
    claims = _decode(token, keys=keys, kind=REFRESH, now=now)
    generation = claims.get("gen")
    if not _is_int(generation) or generation < 1:
        raise TokenError(TokenProblem.MALFORMED)
    return RefreshClaims(
        _user_id(claims), _session_id(claims), generation, claims["iat"], claims["exp"]
    )
