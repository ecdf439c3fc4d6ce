"""Access tokens signed by a key set (ES256, RS256): the kid, the keys that verify, and every forgery refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from jose import jwk as jose_jwk
from jose import jws

from app.security.keys import SigningKey, generate_key
from app.security.tokens import (
    AccessClaims,
    SigningKeys,
    TokenError,
    TokenProblem,
    decode_access_token,
    encode_access_token,
)

NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
TS = int(NOW.timestamp())
TTL = timedelta(minutes=15)


@pytest.fixture(scope="module", params=["ES256", "RS256"])
def algorithm(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def old_key(algorithm: str) -> SigningKey:
    return generate_key(algorithm, NOW, "old")


@pytest.fixture(scope="module")
def new_key(algorithm: str) -> SigningKey:
    return generate_key(algorithm, NOW, "new")


def issue(keys: SigningKeys, issued_at: datetime = NOW) -> str:
    return encode_access_token(
        user_id=7, session_id="s-1", issued_at=issued_at, expires_at=issued_at + TTL, keys=keys
    )


def problem(token: str, keys: SigningKeys, now: datetime = NOW) -> TokenProblem:
    with pytest.raises(TokenError) as caught:
        decode_access_token(token, keys=keys, now=now)
    return caught.value.problem


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_json(value: object) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def header_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


CLAIMS = {"id": 7, "sub": "7", "sid": "s-1", "type": "access", "iat": TS, "exp": TS + 900}


def signed_by(key: SigningKey, header: dict[str, Any], claims: dict[str, Any] = CLAIMS) -> str:
    signing_input = f"{b64_json(header)}.{b64_json(claims)}"
    return f"{signing_input}.{b64(key.private.sign(signing_input.encode()))}"


def test_the_first_key_signs_and_names_itself(old_key: SigningKey, new_key: SigningKey) -> None:
    keys = SigningKeys.key_set((new_key, old_key))
    token = issue(keys)
    assert header_of(token) == {"alg": new_key.algorithm, "kid": "new", "typ": "JWT"}
    assert decode_access_token(token, keys=keys, now=NOW) == AccessClaims(7, "s-1", TS, TS + 900)


def test_a_token_verifies_with_the_published_jwk_alone(new_key: SigningKey) -> None:
    """What a resource server does: the public JWK, the pinned algorithm, nothing of ours."""
    token = issue(SigningKeys.key_set((new_key,)))
    public = jose_jwk.construct(dict(new_key.public_jwk), new_key.algorithm)
    assert json.loads(jws.verify(token, public, [new_key.algorithm]))["sub"] == "7"


def test_a_key_that_no_longer_signs_still_verifies(
    old_key: SigningKey, new_key: SigningKey
) -> None:
    before = issue(SigningKeys.key_set((old_key, new_key)))
    after_promotion = SigningKeys.key_set((new_key, old_key))
    assert decode_access_token(before, keys=after_promotion, now=NOW).user_id == 7


def test_a_retired_key_is_refused_even_after_a_verified_use(
    old_key: SigningKey, new_key: SigningKey
) -> None:
    """Verified tokens are remembered per key set: the set without the key has never seen the token."""
    before = SigningKeys.key_set((new_key, old_key), cache_size=16)
    token = issue(SigningKeys.key_set((old_key,)))
    assert decode_access_token(token, keys=before, now=NOW).user_id == 7
    retired = SigningKeys.key_set((new_key,), cache_size=16)
    assert problem(token, retired) is TokenProblem.MALFORMED


def test_unknown_or_missing_kid(old_key: SigningKey, new_key: SigningKey) -> None:
    keys = SigningKeys.key_set((new_key,))
    alg = new_key.algorithm
    assert problem(signed_by(old_key, {"alg": alg, "kid": "old"}), keys) is TokenProblem.MALFORMED
    assert problem(signed_by(new_key, {"alg": alg}), keys) is TokenProblem.MALFORMED
    for kid in (None, 1, ["new"], {"kid": "new"}):
        token = signed_by(new_key, {"alg": alg, "kid": kid})
        assert problem(token, keys) is TokenProblem.MALFORMED
    assert decode_access_token(signed_by(new_key, {"alg": alg, "kid": "new"}), keys=keys, now=NOW)


def test_a_kid_naming_our_key_with_another_key_s_signature(
    old_key: SigningKey, new_key: SigningKey
) -> None:
    keys = SigningKeys.key_set((new_key,))
    forged = signed_by(old_key, {"alg": new_key.algorithm, "kid": "new"})
    assert problem(forged, keys) is TokenProblem.MALFORMED


def _public_forms(key: SigningKey) -> list[bytes]:
    prepared: Any = getattr(key.public, "prepared_key")  # noqa: B009 - the backend's attribute, untyped
    pem = prepared.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return [pem, json.dumps(dict(key.public_jwk)).encode(), pem.strip()]


@pytest.mark.parametrize("hmac_alg", ["HS256", "HS384", "HS512"])
def test_algorithm_confusion_hmac_keyed_with_the_public_key(
    new_key: SigningKey, hmac_alg: str
) -> None:
    """The classic: the published public key used as an HMAC secret. The algorithm is pinned, so the token
    never reaches a key, whatever form the public key takes."""
    keys = SigningKeys.key_set((new_key,))
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[hmac_alg]
    for secret in _public_forms(new_key):
        signing_input = f"{b64_json({'alg': hmac_alg, 'kid': 'new'})}.{b64_json(CLAIMS)}"
        mac = hmac.new(secret, signing_input.encode(), digest).digest()
        assert problem(f"{signing_input}.{b64(mac)}", keys) is TokenProblem.MALFORMED


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none(new_key: SigningKey, alg: str) -> None:
    keys = SigningKeys.key_set((new_key,))
    unsigned = f"{b64_json({'alg': alg, 'kid': 'new'})}.{b64_json(CLAIMS)}."
    assert problem(unsigned, keys) is TokenProblem.MALFORMED
    assert problem(unsigned + "AAAA", keys) is TokenProblem.MALFORMED


def test_the_other_asymmetric_algorithm_is_refused(new_key: SigningKey) -> None:
    keys = SigningKeys.key_set((new_key,))
    other = "RS256" if new_key.algorithm == "ES256" else "ES256"
    other_key = generate_key(other, NOW, "new")
    assert problem(issue(SigningKeys.key_set((other_key,))), keys) is TokenProblem.MALFORMED


def test_a_critical_extension_is_refused(new_key: SigningKey) -> None:
    keys = SigningKeys.key_set((new_key,))
    header = {"alg": new_key.algorithm, "kid": "new", "crit": ["exp"], "exp": 1}
    assert problem(signed_by(new_key, header), keys) is TokenProblem.MALFORMED


class _Counting(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"keys": []}')

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def lure() -> Iterator[tuple[str, type[_Counting]]]:
    """A key server an attacker would point a token at; it counts every request it gets."""

    class Handler(_Counting):
        hits = 0

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", Handler
    finally:
        server.shutdown()
        server.server_close()


def test_jku_x5u_and_embedded_jwk_are_ignored_and_never_fetched(
    old_key: SigningKey, new_key: SigningKey, lure: tuple[str, type[_Counting]]
) -> None:
    """A token signed by the attacker's own key, carrying that key (``jwk``) or where to get it (``jku``,
    ``x5u``): refused, and nothing is fetched. A short such header on a token our key signed changes nothing (an
    embedded key makes any header too long to be read at all)."""
    url, handler = lure
    keys = SigningKeys.key_set((new_key,))
    alg = new_key.algorithm
    attacker = dict(old_key.public_jwk) | {"kid": "new"}
    for extra in ({"jwk": attacker}, {"jku": url}, {"x5u": url}, {"x5c": ["AAAA"]}):
        forged = signed_by(old_key, {"alg": alg, "kid": "new", **extra})
        assert problem(forged, keys) is TokenProblem.MALFORMED
    for extra in ({"jku": url}, {"x5u": url}, {"x5c": ["AAAA"]}):
        ours = signed_by(new_key, {"alg": alg, "kid": "new", **extra})
        assert decode_access_token(ours, keys=keys, now=NOW).user_id == 7
    assert handler.hits == 0


def test_a_tampered_claim_breaks_the_signature(new_key: SigningKey) -> None:
    keys = SigningKeys.key_set((new_key,))
    header, _, signature = issue(keys).split(".")
    forged = b64_json(CLAIMS | {"id": 1, "sub": "1"})
    assert problem(f"{header}.{forged}.{signature}", keys) is TokenProblem.MALFORMED


def test_expiry_is_checked_at_every_use_of_a_remembered_token(new_key: SigningKey) -> None:
    keys = SigningKeys.key_set((new_key,), cache_size=16)
    token = issue(keys)
    assert decode_access_token(token, keys=keys, now=NOW).user_id == 7
    assert problem(token, keys, now=NOW + TTL) is TokenProblem.EXPIRED
    assert problem(token, keys, now=NOW - timedelta(hours=1)) is TokenProblem.NOT_YET_VALID


def test_only_verified_tokens_are_remembered_and_memory_is_bounded(new_key: SigningKey) -> None:
    keys = SigningKeys.key_set((new_key,), cache_size=3)
    forged = signed_by(generate_key(new_key.algorithm, NOW, "new"), {"alg": new_key.algorithm})
    for _ in range(2):
        assert problem(forged, keys) is TokenProblem.MALFORMED
    assert keys._verified == {}
    tokens = [issue(keys, NOW + timedelta(seconds=i)) for i in range(5)]
    for token in tokens:
        decode_access_token(token, keys=keys, now=NOW + timedelta(seconds=10))
    assert list(keys._verified) == tokens[2:]


def test_hmac_keys_ignore_a_kid() -> None:
    """HS256 tokens (the Strapi drop-in) carry no kid; one in the header changes nothing but the signature."""
    keys = SigningKeys.hmac("k" * 48, "HS256")
    token = issue(keys)
    assert "kid" not in header_of(token)
    assert decode_access_token(token, keys=keys, now=NOW).user_id == 7


def test_a_signature_has_one_spelling(new_key: SigningKey) -> None:
    """base64url's spare bits: another text for the same signature is refused, not verified and remembered."""
    keys = SigningKeys.key_set((new_key,), cache_size=16)
    token = issue(keys)
    head, last = token[:-1], token[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare = [c for c in alphabet if c != last and _same_bits(c, last, len(token.split(".")[2]))]
    # ES256's 64-byte and a 2048-bit RSA key's 256-byte signatures both end in a character with 4 spare bits.
    assert len(spare) == 15
    for other in spare:
        assert problem(head + other, keys) is TokenProblem.MALFORMED
    assert decode_access_token(token, keys=keys, now=NOW).user_id == 7
    assert list(keys._verified) == [token]


def _same_bits(a: str, b: str, length: int) -> bool:
    """Whether two last characters of a base64url text of ``length`` decode to the same bytes."""
    used = {2: 2, 3: 4, 0: 6}[length % 4]  # bits of the last character that carry data
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return alphabet.index(a) >> (6 - used) == alphabet.index(b) >> (6 - used)
