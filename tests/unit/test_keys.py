"""Key set files: what loads, what is refused and why, and what is published (never a private part)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import backends
from jose.backends.cryptography_backend import CryptographyECKey, CryptographyRSAKey

from app.security.keys import (
    KeyNotes,
    KeySetError,
    SigningKey,
    dump_key_set,
    generate_key,
    jwks_document,
    new_kid,
    parse_key_set,
    with_notes,
)
from tests.support import ROOT

NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k", "refreshd"}


def jwk_of(key: SigningKey) -> dict[str, Any]:
    return dict(json.loads(dump_key_set((key,)))["keys"][0])


def document(*entries: object) -> bytes:
    return json.dumps({"keys": list(entries)}).encode()


@pytest.fixture(scope="module")
def es256() -> SigningKey:
    return generate_key("ES256", NOW, "es-1")


@pytest.fixture(scope="module")
def rs256() -> SigningKey:
    return generate_key("RS256", NOW, "rs-1")


def test_python_jose_uses_the_cryptography_backend() -> None:
    """Never the pure-Python ecdsa or rsa packages, which python-jose falls back to without cryptography."""
    assert backends.ECKey is CryptographyECKey
    assert backends.RSAKey is CryptographyRSAKey


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_a_generated_key_round_trips_through_its_file(algorithm: str) -> None:
    key = generate_key(algorithm, NOW)
    (loaded,) = parse_key_set(dump_key_set((key,)), algorithm)
    assert loaded.kid == key.kid
    assert loaded.kid.startswith(f"{algorithm.lower()}-20261203-")
    assert loaded.notes == KeyNotes(created=NOW)
    message = b"header.payload"
    assert loaded.public.verify(message, key.private.sign(message))
    assert key.public.verify(message, loaded.private.sign(message))


def test_generated_rsa_keys_are_2048_bits(rs256: SigningKey) -> None:
    prepared = cast(CryptographyRSAKey, rs256.private).prepared_key
    assert isinstance(prepared, rsa.RSAPrivateKey)
    assert prepared.key_size == 2048


def test_the_kid_is_derived_from_the_public_key(es256: SigningKey) -> None:
    assert new_kid("ES256", NOW, es256.public_jwk) == new_kid("ES256", NOW, es256.public_jwk)
    other = generate_key("ES256", NOW)
    assert new_kid("ES256", NOW, other.public_jwk) != new_kid("ES256", NOW, es256.public_jwk)


@pytest.mark.parametrize("name", ["es256", "rs256"])
def test_the_published_set_has_no_private_part(name: str, request: pytest.FixtureRequest) -> None:
    key: SigningKey = request.getfixturevalue(name)
    published = json.loads(jwks_document((key,)))
    (entry,) = published["keys"]
    assert not PRIVATE_MEMBERS & set(entry)
    assert entry["kid"] == key.kid
    assert entry["alg"] == key.algorithm
    assert entry["use"] == "sig"
    expected = {"EC": {"kty", "crv", "x", "y"}, "RSA": {"kty", "n", "e"}}[entry["kty"]]
    assert set(entry) == expected | {"kid", "alg", "use"}
    assert "d" in jwk_of(key)  # the file does hold it


def test_the_published_order_is_the_file_order(es256: SigningKey) -> None:
    second = generate_key("ES256", NOW, "es-2")
    kids = [k["kid"] for k in json.loads(jwks_document((second, es256)))["keys"]]
    assert kids == ["es-2", "es-1"]
    assert json.loads(jwks_document(())) == {"keys": []}


def test_notes_survive_the_file(es256: SigningKey) -> None:
    noted = with_notes(es256, promoted=NOW + timedelta(hours=1), demoted=NOW + timedelta(days=2))
    (loaded,) = parse_key_set(dump_key_set((noted,)), "ES256")
    assert loaded.notes == KeyNotes(NOW, NOW + timedelta(hours=1), NOW + timedelta(days=2))


def test_a_key_set_from_another_tool_loads_without_notes(es256: SigningKey) -> None:
    entry = {k: v for k, v in jwk_of(es256).items() if k not in ("refreshd", "use", "alg")}
    (loaded,) = parse_key_set(document(entry), "ES256")
    assert loaded.notes == KeyNotes()
    assert loaded.public_jwk["alg"] == "ES256"


def test_the_repr_never_shows_a_private_part(es256: SigningKey) -> None:
    assert jwk_of(es256)["d"] not in repr(es256)
    assert repr(es256) == "SigningKey(kid='es-1', algorithm='ES256')"


def _refusal(content: bytes, algorithm: str = "ES256") -> str:
    with pytest.raises(KeySetError) as caught:
        parse_key_set(content, algorithm)
    return str(caught.value)


def test_refuses_what_is_not_a_key_set() -> None:
    assert _refusal(b"not json") == "the key set is not JSON"
    assert "not a JWK Set" in _refusal(b'{"kty": "EC"}')
    assert "not a JWK Set" in _refusal(b"[]")
    assert _refusal(b'{"keys": []}') == "the key set holds no key"
    assert _refusal(b'{"keys": [42]}') == "keys[0] is not a JSON object"
    assert "larger than" in _refusal(b" " * (1024 * 1024 + 1))


def test_refuses_two_keys_with_one_kid(es256: SigningKey) -> None:
    entry = jwk_of(es256)
    other = jwk_of(generate_key("ES256", NOW, "es-1"))
    assert _refusal(document(entry, other)) == "two keys have the kid 'es-1'"


@pytest.mark.parametrize("kid", [None, "", 7, "a b", "k" * 65, "../etc"])
def test_refuses_a_missing_or_odd_kid(es256: SigningKey, kid: object) -> None:
    entry = jwk_of(es256) | {"kid": kid}
    if kid is None:
        del entry["kid"]
    assert "needs a kid" in _refusal(document(entry))


def test_refuses_a_key_of_another_algorithm(es256: SigningKey, rs256: SigningKey) -> None:
    assert _refusal(document(jwk_of(rs256))) == "key 'rs-1' is a RS256 key; JWT_ALGORITHM is ES256"
    assert (
        _refusal(document(jwk_of(es256)), "RS256")
        == "key 'es-1' is a ES256 key; JWT_ALGORITHM is RS256"
    )
    no_alg = {k: v for k, v in jwk_of(rs256).items() if k != "alg"}
    assert "is of type 'RSA'; ES256 needs 'EC' keys" in _refusal(document(no_alg))


def test_refuses_a_public_key(es256: SigningKey) -> None:
    public = {k: v for k, v in jwk_of(es256).items() if k != "d"}
    assert "has no private part" in _refusal(document(public))


def test_refuses_a_private_part_that_does_not_match_the_public_one(es256: SigningKey) -> None:
    stranger = jwk_of(generate_key("ES256", NOW, "es-9"))
    forged = jwk_of(es256) | {"d": stranger["d"]}
    assert "is not a valid EC private key" in _refusal(document(forged))


def test_refuses_another_curve() -> None:
    p384 = CryptographyECKey(ec.generate_private_key(ec.SECP384R1()), "ES384").to_dict()  # type: ignore[no-untyped-call]
    entry = {k: v.decode() if isinstance(v, bytes) else v for k, v in p384.items()}
    entry.update(kid="p384", alg="ES256")
    assert "is on curve 'P-384'; ES256 needs P-256" in _refusal(document(entry))


def test_refuses_a_short_rsa_key() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point
    jwk = CryptographyRSAKey(small, "RS256").to_dict()  # type: ignore[no-untyped-call]
    entry = {k: v.decode() if isinstance(v, bytes) else v for k, v in jwk.items()}
    entry["kid"] = "small"
    assert _refusal(document(entry), "RS256") == "key 'small' is shorter than 2048 bits"


def test_refuses_an_encryption_key(es256: SigningKey) -> None:
    assert "signing keys need 'sig'" in _refusal(document(jwk_of(es256) | {"use": "enc"}))


def test_refuses_a_garbled_number(es256: SigningKey) -> None:
    assert "is not a valid EC private key" in _refusal(document(jwk_of(es256) | {"x": "!!"}))


def test_refuses_bad_notes(es256: SigningKey) -> None:
    assert "must be an object" in _refusal(document(jwk_of(es256) | {"refreshd": 1}))
    stamped = jwk_of(es256) | {"refreshd": {"created": "yesterday"}}
    assert "refreshd.created is not a UTC time" in _refusal(document(stamped))


def test_an_hmac_algorithm_has_no_key_set(es256: SigningKey) -> None:
    assert "is not signed with a key set" in _refusal(document(jwk_of(es256)), "HS256")


def test_the_ecdsa_package_is_never_imported() -> None:
    """python-jose depends on the pure-Python ecdsa package (with a known timing side channel) whether or not it
    uses it: a fresh process that signs and verifies ES256 and RS256 tokens must never load it."""
    script = (
        "import sys\n"
        "from datetime import UTC, datetime, timedelta\n"
        "from app.main import create_app\n"
        "from app.security.keys import generate_key\n"
        "from app.security.tokens import SigningKeys, decode_access_token, encode_access_token\n"
        "now = datetime.now(UTC)\n"
        "for alg in ('ES256', 'RS256'):\n"
        "    keys = SigningKeys.key_set((generate_key(alg, now, 'k'),))\n"
        "    token = encode_access_token(user_id=1, session_id='s', issued_at=now,\n"
        "                                expires_at=now + timedelta(minutes=1), keys=keys)\n"
        "    assert decode_access_token(token, keys=keys, now=now).user_id == 1\n"
        "print(sorted(m for m in sys.modules if m == 'ecdsa' or m.startswith(('ecdsa.', 'rsa.'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z", "1999-12-31T23:59:59Z"]
)
def test_refuses_times_at_the_ends_of_the_calendar(es256: SigningKey, stamp: str) -> None:
    stamped = jwk_of(es256) | {"refreshd": {"demoted": stamp}}
    assert "refreshd.demoted is not a UTC time" in _refusal(document(stamped))


def test_refuses_an_rsa_key_with_a_small_exponent() -> None:
    small_e = rsa.generate_private_key(public_exponent=3, key_size=2048)
    jwk = CryptographyRSAKey(small_e, "RS256").to_dict()  # type: ignore[no-untyped-call]
    entry = {k: v.decode() if isinstance(v, bytes) else v for k, v in jwk.items()}
    entry["kid"] = "e3"
    assert _refusal(document(entry), "RS256") == "key 'e3' has a public exponent other than 65537"
