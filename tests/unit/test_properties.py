"""Property tests for the token and duration codecs: whatever an attacker does to a token, it is refused."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jose import jwt as jose_jwt

from app.durations import MAX_SECONDS, format_duration, parse_duration
from app.security.tokens import (
    SigningKeys,
    TokenError,
    decode_access_token,
    decode_refresh_token,
    encode_access_token,
    encode_refresh_token,
)

KEY = "access-key-" + "k" * 40
OTHER_KEY = "refresh-key-" + "r" * 40
NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)

user_ids = st.integers(min_value=1, max_value=2**53)
session_ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
generations = st.integers(min_value=1, max_value=2**31)
lifetimes = st.integers(min_value=1, max_value=90 * 86400)
fast = settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _access(user_id: int, sid: str, ttl: int) -> str:
    return encode_access_token(
        user_id=user_id,
        session_id=sid,
        issued_at=NOW,
        expires_at=NOW + timedelta(seconds=ttl),
        keys=SigningKeys.hmac(KEY, "HS256"),
    )


@fast
@given(user_ids, session_ids, lifetimes)
def test_access_tokens_round_trip(user_id: int, sid: str, ttl: int) -> None:
    claims = decode_access_token(
        _access(user_id, sid, ttl), keys=SigningKeys.hmac(KEY, "HS256"), now=NOW
    )
    assert (claims.user_id, claims.session_id) == (user_id, sid)
    assert claims.expires_at - claims.issued_at == ttl


@fast
@given(user_ids, session_ids, generations, lifetimes)
def test_refresh_tokens_round_trip_and_are_deterministic(
    user_id: int, sid: str, generation: int, ttl: int
) -> None:
    def encode() -> str:
        return encode_refresh_token(
            user_id=user_id,
            session_id=sid,
            generation=generation,
            issued_at=NOW,
            expires_at=NOW + timedelta(seconds=ttl),
            keys=SigningKeys.hmac(OTHER_KEY, "HS256"),
        )

    token = encode()
    assert encode() == token
    claims = decode_refresh_token(token, keys=SigningKeys.hmac(OTHER_KEY, "HS256"), now=NOW)
    assert (claims.user_id, claims.session_id, claims.generation) == (user_id, sid, generation)


@fast
@given(user_ids, session_ids, st.data())
def test_any_tampered_byte_is_refused(user_id: int, sid: str, data: st.DataObject) -> None:
    token = _access(user_id, sid, 900)
    index = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(
        st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    )
    tampered = token[:index] + replacement + token[index + 1 :]
    if tampered == token:
        return
    try:
        claims = decode_access_token(tampered, keys=SigningKeys.hmac(KEY, "HS256"), now=NOW)
    except TokenError:
        return
    # Base64url's last character carries padding bits: a flip there can decode to the same bytes.
    assert (claims.user_id, claims.session_id) == (user_id, sid)
    assert _unb64(tampered.split(".")[2]) == _unb64(token.split(".")[2])


@fast
@given(user_ids, session_ids, st.integers(min_value=0, max_value=200))
def test_truncated_tokens_are_refused(user_id: int, sid: str, cut: int) -> None:
    token = _access(user_id, sid, 900)
    truncated = token[: max(0, len(token) - 1 - cut)]
    with pytest.raises(TokenError):
        decode_access_token(truncated, keys=SigningKeys.hmac(KEY, "HS256"), now=NOW)


@fast
@given(user_ids, session_ids, st.sampled_from(["HS384", "HS512"]))
def test_resigned_with_another_algorithm_is_refused(user_id: int, sid: str, alg: str) -> None:
    claims = jose_jwt.get_unverified_claims(_access(user_id, sid, 900))
    with pytest.raises(TokenError):
        decode_access_token(
            jose_jwt.encode(claims, KEY, algorithm=alg),
            keys=SigningKeys.hmac(KEY, "HS256"),
            now=NOW,
        )


@fast
@given(
    user_ids,
    session_ids,
    st.sampled_from(["none", "None", "NONE", "RS256", "ES256", "PS256", "EdDSA", "HS256 "]),
)
def test_algorithm_swaps_are_refused(user_id: int, sid: str, alg: str) -> None:
    token = _access(user_id, sid, 900)
    _, payload, _ = token.split(".")
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    signing_input = f"{header}.{payload}"
    for signature in (
        "",
        _b64(hmac.new(KEY.encode(), signing_input.encode(), hashlib.sha256).digest()),
    ):
        with pytest.raises(TokenError):
            decode_access_token(
                f"{signing_input}.{signature}", keys=SigningKeys.hmac(KEY, "HS256"), now=NOW
            )


@fast
@given(
    user_ids, session_ids, generations, st.sampled_from(["access", "refresh", "id", "", None, 1])
)
def test_retyped_tokens_are_refused(user_id: int, sid: str, generation: int, kind: object) -> None:
    claims = {
        "id": user_id,
        "sub": str(user_id),
        "sid": sid,
        "gen": generation,
        "type": kind,
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 900,
    }
    token = jose_jwt.encode(claims, KEY, algorithm="HS256")
    if kind != "access":
        with pytest.raises(TokenError):
            decode_access_token(token, keys=SigningKeys.hmac(KEY, "HS256"), now=NOW)
    if kind != "refresh":
        with pytest.raises(TokenError):
            decode_refresh_token(token, keys=SigningKeys.hmac(KEY, "HS256"), now=NOW)


@fast
@given(user_ids, session_ids, st.integers(min_value=0, max_value=10**6))
def test_expired_tokens_are_refused(user_id: int, sid: str, late: int) -> None:
    token = _access(user_id, sid, 900)
    with pytest.raises(TokenError):
        decode_access_token(
            token, keys=SigningKeys.hmac(KEY, "HS256"), now=NOW + timedelta(seconds=900 + late)
        )


@fast
@given(st.text(max_size=300))
def test_arbitrary_strings_never_crash_the_decoder(text: str) -> None:
    for decode in (decode_access_token, decode_refresh_token):
        with contextlib.suppress(TokenError):
            decode(text, keys=SigningKeys.hmac(KEY, "HS256"), now=NOW)


@fast
@given(st.integers(min_value=1, max_value=MAX_SECONDS))
def test_durations_round_trip(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value
    assert parse_duration(seconds) == value
    assert parse_duration(str(seconds)) == value


@fast
@given(st.text(max_size=40))
def test_duration_parser_only_raises_value_error(text: str) -> None:
    try:
        parsed = parse_duration(text)
    except ValueError:
        return
    assert timedelta(0) < parsed <= timedelta(seconds=MAX_SECONDS)
