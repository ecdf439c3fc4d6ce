"""One-time codes mailed to users (password reset, email confirmation).

A code is 256 random bits; the database keeps only an HMAC of it, keyed by a key derived from the service's
secret, so neither a database dump nor a guess at the hash function yields a usable code.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

CODE_BYTES = 32
MAX_CODE_LENGTH = 128


def derive_key(secret: str, purpose: bytes = b"refreshd/account-codes/v1") -> bytes:
    return hmac.new(secret.encode(), purpose, hashlib.sha256).digest()


def new_code() -> str:
    return secrets.token_urlsafe(CODE_BYTES)


def hash_code(key: bytes, code: str) -> str:
    return hmac.new(key, code.encode(), hashlib.sha256).hexdigest()
