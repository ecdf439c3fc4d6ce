"""Asymmetric signing keys for access tokens: a JWK Set of private keys, read, checked and published.

A key set file (``JWT_SIGNING_KEYS_FILE``) is a JWK Set (RFC 7517) of private keys of one algorithm, each with a
``kid``. The first key signs; the others only verify, so a key is replaced without logging anyone out. Each key may
carry refreshd's own member ``refreshd`` with the times it was created, began signing and stopped signing, which
``refreshd keys`` reads to tell an operator when the next step of a rotation is safe; other tools' key sets, without
it, load all the same. Every key object is built here once, with python-jose's cryptography backend.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose.backends.base import Key
from jose.backends.cryptography_backend import CryptographyECKey, CryptographyRSAKey

ASYMMETRIC_ALGORITHMS = ("ES256", "RS256")
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
MIN_RSA_BITS = 2048
# 2048 bits, as Auth0, Okta and Keycloak generate (NIST: fine through 2030): a 3072-bit key signs 3.4x slower,
# on every login and refresh (bench/results/2026-12-03-asymmetric-keys.md).
GENERATED_RSA_BITS = 2048
MAX_KEYS = 32
MAX_FILE_BYTES = 1024 * 1024
KID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# The public members each key type publishes: never d, p, q, dp, dq, qi, oth, nor refreshd's own notes.
_PUBLIC_MEMBERS = {"EC": ("kty", "crv", "x", "y"), "RSA": ("kty", "n", "e")}
_KEY_TYPE = {"ES256": "EC", "RS256": "RSA"}
_NOTES = "refreshd"


class KeySetError(ValueError):
    """A key set unfit to sign with; the message names the key and what is wrong with it."""


@dataclass(frozen=True, slots=True)
class KeyNotes:
    """When a key was created, began signing and stopped signing (None: not recorded, or not yet)."""

    created: datetime | None = None
    promoted: datetime | None = None
    demoted: datetime | None = None

    def to_json(self) -> dict[str, str]:
        return {
            name: _stamp(value)
            for name, value in (
                ("created", self.created),
                ("promoted", self.promoted),
                ("demoted", self.demoted),
            )
            if value is not None
        }


@dataclass(frozen=True, slots=True, eq=False)
class SigningKey:
    kid: str
    algorithm: str
    private: Key
    public: Key
    public_jwk: Mapping[str, str]
    notes: KeyNotes
    # The key's members as read (the private part included), written back unchanged by ``refreshd keys``.
    source: Mapping[str, Any]

    def __repr__(self) -> str:  # never a private part in a log or a traceback
        return f"SigningKey(kid={self.kid!r}, algorithm={self.algorithm!r})"


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_stamp(kid: str, name: str, value: object) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            # Far enough from the ends of datetime's range that a rotation's arithmetic cannot overflow.
            if parsed.tzinfo is not None and 2000 <= parsed.year <= 9000:
                return parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            pass
    raise KeySetError(f"key {kid!r}: refreshd.{name} is not a UTC time like 2026-12-03T15:00:00Z")


def _notes(kid: str, value: object) -> KeyNotes:
    if value is None:
        return KeyNotes()
    if not isinstance(value, dict):
        raise KeySetError(f"key {kid!r}: member {_NOTES!r} must be an object")
    stamps = {
        name: _parse_stamp(kid, name, value[name])
        for name in ("created", "promoted", "demoted")
        if value.get(name) is not None
    }
    return KeyNotes(**stamps)


def _construct(kid: str, algorithm: str, jwk: dict[str, Any]) -> tuple[Key, Key]:
    """The private and public key objects, built once; the library checks the private part matches the public."""
    key_type = _KEY_TYPE[algorithm]
    if jwk.get("kty") != key_type:
        raise KeySetError(
            f"key {kid!r} is of type {jwk.get('kty')!r}; {algorithm} needs {key_type!r} keys"
        )
    if "d" not in jwk:
        raise KeySetError(f"key {kid!r} has no private part (d): this file must hold private keys")
    try:
        private: Key
        if algorithm == "ES256":
            if jwk.get("crv") != "P-256":
                raise KeySetError(f"key {kid!r} is on curve {jwk.get('crv')!r}; ES256 needs P-256")
            private = CryptographyECKey(jwk, algorithm)
        else:
            private = CryptographyRSAKey(jwk, algorithm)
    except KeySetError:
        raise
    except (
        Exception
    ) as exc:  # the library's and cryptography's errors for numbers that are not a key pair
        raise KeySetError(f"key {kid!r} is not a valid {key_type} private key ({exc})") from None
    prepared = private.prepared_key
    if algorithm == "RS256" and (
        not isinstance(prepared, rsa.RSAPrivateKey) or prepared.key_size < MIN_RSA_BITS
    ):
        raise KeySetError(f"key {kid!r} is shorter than {MIN_RSA_BITS} bits")
    if (
        isinstance(prepared, rsa.RSAPrivateKey)
        and prepared.public_key().public_numbers().e != 65537
    ):
        # A small exponent exposes careless verifiers to signature forgeries (Bleichenbacher 2006).
        raise KeySetError(f"key {kid!r} has a public exponent other than 65537")
    if algorithm == "ES256" and not isinstance(prepared, ec.EllipticCurvePrivateKey):
        raise KeySetError(f"key {kid!r} is not an EC private key")
    # The stubs leave the backend's methods untyped; both return the library's own key objects.
    return private, private.public_key()  # type: ignore[no-untyped-call]


def _key(entry: object, position: int, algorithm: str) -> SigningKey:
    if not isinstance(entry, dict):
        raise KeySetError(f"keys[{position}] is not a JSON object")
    kid = entry.get("kid")
    if not isinstance(kid, str) or not KID.fullmatch(kid):
        raise KeySetError(
            f"keys[{position}] needs a kid of 1 to 64 letters, digits, '.', '_' or '-'"
        )
    declared = entry.get("alg")
    if declared is not None and declared != algorithm:
        raise KeySetError(f"key {kid!r} is a {declared} key; JWT_ALGORITHM is {algorithm}")
    if entry.get("use", "sig") != "sig":
        raise KeySetError(f"key {kid!r} has use {entry.get('use')!r}; signing keys need 'sig'")
    private, public = _construct(kid, algorithm, entry)
    published = {name: entry[name] for name in _PUBLIC_MEMBERS[_KEY_TYPE[algorithm]]}
    published.update(kid=kid, alg=algorithm, use="sig")
    return SigningKey(
        kid=kid,
        algorithm=algorithm,
        private=private,
        public=public,
        public_jwk=published,
        notes=_notes(kid, entry.get(_NOTES)),
        source=entry,
    )


def parse_key_set(content: bytes, algorithm: str) -> tuple[SigningKey, ...]:
    """Every key of a JWK Set of private keys for ``algorithm``, the signing key first; ``KeySetError`` names
    the first problem (a bad document, a missing or repeated kid, another algorithm, a public key only)."""
    if algorithm not in ASYMMETRIC_ALGORITHMS:
        raise KeySetError(f"{algorithm} is not signed with a key set")
    if len(content) > MAX_FILE_BYTES:
        raise KeySetError(f"the key set is larger than {MAX_FILE_BYTES} bytes")
    try:
        document = json.loads(content)
    except (ValueError, RecursionError):
        raise KeySetError("the key set is not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise KeySetError('the key set is not a JWK Set: {"keys": [...]}')
    if not entries:
        raise KeySetError("the key set holds no key")
    if len(entries) > MAX_KEYS:
        raise KeySetError(f"the key set holds more than {MAX_KEYS} keys")
    keys = tuple(_key(entry, position, algorithm) for position, entry in enumerate(entries))
    seen: set[str] = set()
    for key in keys:
        if key.kid in seen:
            raise KeySetError(f"two keys have the kid {key.kid!r}")
        seen.add(key.kid)
    return keys


def dump_key_set(keys: Sequence[SigningKey]) -> bytes:
    """The file for ``keys``, in order (the first signs), each with its notes."""
    entries = []
    for key in keys:
        entry = {name: value for name, value in key.source.items() if name != _NOTES}
        entry.update(kid=key.kid, alg=key.algorithm, use="sig")
        if notes := key.notes.to_json():
            entry[_NOTES] = notes
        entries.append(entry)
    return (json.dumps({"keys": entries}, indent=2) + "\n").encode()


def generate_key(algorithm: str, now: datetime, kid: str | None = None) -> SigningKey:
    """A new private key, not yet signing; its kid is ``kid`` or made by ``new_kid``."""
    generated: Key
    if algorithm == "ES256":
        generated = CryptographyECKey(ec.generate_private_key(ec.SECP256R1()), algorithm)
    elif algorithm == "RS256":
        prepared = rsa.generate_private_key(public_exponent=65537, key_size=GENERATED_RSA_BITS)
        generated = CryptographyRSAKey(prepared, algorithm)
    else:
        raise KeySetError(f"{algorithm} is not signed with a key set")
    jwk = {
        name: value.decode() if isinstance(value, bytes) else value
        for name, value in generated.to_dict().items()  # type: ignore[no-untyped-call]
    }
    jwk.update(kid=kid or new_kid(algorithm, now, jwk), use="sig")
    key = _key(jwk, 0, algorithm)
    return replace(key, notes=KeyNotes(created=now))


def with_notes(key: SigningKey, **changes: datetime | None) -> SigningKey:
    """``key`` with some of its notes (``created``, ``promoted``, ``demoted``) changed."""
    return replace(key, notes=replace(key.notes, **changes))


def new_kid(algorithm: str, now: datetime, public_jwk: Mapping[str, str]) -> str:
    """A kid that says when and what, and cannot repeat: ``es256-20261203-1a2b3c4d`` (the last part from the
    RFC 7638 thumbprint of the public key)."""
    required = {name: public_jwk[name] for name in _PUBLIC_MEMBERS[_KEY_TYPE[algorithm]]}
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":")).encode()
    thumbprint = hashlib.sha256(canonical).hexdigest()[:8]
    return f"{algorithm.lower()}-{now.astimezone(UTC):%Y%m%d}-{thumbprint}"


def jwks_document(keys: Sequence[SigningKey]) -> bytes:
    """The public JWK Set a resource server fetches: the signing key first, public members only."""
    return json.dumps(
        {"keys": [dict(key.public_jwk) for key in keys]}, separators=(",", ":")
    ).encode()
