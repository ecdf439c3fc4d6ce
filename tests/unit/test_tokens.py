"""Access and refresh tokens: encoding, every way ``decode_*_token`` must refuse a token, and keys that never
show in a repr."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jose import jwt

from app.security.tokens import (
    MAX_CLOCK_SKEW_SECONDS,
    AccessClaims,
    RefreshClaims,
    SigningKeys,
    TokenError,
    TokenProblem,
    decode_access_token,
    decode_refresh_token,
    encode_access_token,
    encode_refresh_token,
)
from app.services.tokens import PublishedKeys, TokenKeys

ACCESS_KEY = "unit-access-key-" + "a" * 40
REFRESH_KEY = "unit-refresh-key-" + "b" * 40
ALG = "HS256"
NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
TS = int(NOW.timestamp())
ACCESS_TTL = timedelta(minutes=15)
REFRESH_TTL = timedelta(days=30)
USER_ID = 7
SID = "session-0123456789abcdef"

# Leaves a claim out of a payload built by ``access_payload`` / ``refresh_payload``.
MISSING: Any = object()
DIGESTS: dict[str, Callable[[], Any]] = {
    "HS256": hashlib.sha256,
    "HS384": hashlib.sha384,
    "HS512": hashlib.sha512,
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: object) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def craft(
    payload: object,
    *,
    key: str | None = ACCESS_KEY,
    header: dict[str, Any] | None = None,
    digest: str = "HS256",
) -> str:
    """A JWT made by hand: ``key=None`` leaves the signature empty."""
    signing_input = b64url_json(header or {"alg": ALG, "typ": "JWT"}) + "." + b64url_json(payload)
    if key is None:
        return signing_input + "."
    mac = hmac.new(key.encode(), signing_input.encode(), DIGESTS[digest]).digest()
    return signing_input + "." + b64url(mac)


def access_payload(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "id": USER_ID,
        "sub": str(USER_ID),
        "sid": SID,
        "type": "access",
        "iat": TS,
        "exp": TS + int(ACCESS_TTL.total_seconds()),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not MISSING}


def refresh_payload(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": str(USER_ID),
        "sid": SID,
        "gen": 1,
        "type": "refresh",
        "iat": TS,
        "exp": TS + int(REFRESH_TTL.total_seconds()),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not MISSING}


def make_access(
    *,
    issued_at: datetime = NOW,
    ttl: timedelta = ACCESS_TTL,
    key: str = ACCESS_KEY,
    algorithm: str = ALG,
) -> str:
    return encode_access_token(
        user_id=USER_ID,
        session_id=SID,
        issued_at=issued_at,
        expires_at=issued_at + ttl,
        keys=SigningKeys.hmac(key, algorithm),
    )


def make_refresh(
    *,
    generation: int = 1,
    issued_at: datetime = NOW,
    ttl: timedelta = REFRESH_TTL,
    key: str = REFRESH_KEY,
    algorithm: str = ALG,
) -> str:
    return encode_refresh_token(
        user_id=USER_ID,
        session_id=SID,
        generation=generation,
        issued_at=issued_at,
        expires_at=issued_at + ttl,
        keys=SigningKeys.hmac(key, algorithm),
    )


def access_problem(token: str, *, key: str = ACCESS_KEY, now: datetime = NOW) -> TokenProblem:
    with pytest.raises(TokenError) as caught:
        decode_access_token(token, keys=SigningKeys.hmac(key, ALG), now=now)
    return caught.value.problem


def refresh_problem(token: str, *, key: str = REFRESH_KEY, now: datetime = NOW) -> TokenProblem:
    with pytest.raises(TokenError) as caught:
        decode_refresh_token(token, keys=SigningKeys.hmac(key, ALG), now=now)
    return caught.value.problem


# --- round trips ---------------------------------------------------------------------------------


def test_access_token_round_trip() -> None:
    token = make_access()
    claims = decode_access_token(token, keys=SigningKeys.hmac(ACCESS_KEY, ALG), now=NOW)
    assert claims == AccessClaims(
        user_id=USER_ID, session_id=SID, issued_at=TS, expires_at=TS + 15 * 60
    )


def test_access_token_carries_strapi_id_and_type() -> None:
    token = make_access()
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    assert jwt.get_unverified_claims(token) == {
        "id": USER_ID,
        "sub": "7",
        "sid": SID,
        "type": "access",
        "iat": TS,
        "exp": TS + 900,
    }


def test_refresh_token_round_trip() -> None:
    token = make_refresh(generation=3)
    claims = decode_refresh_token(token, keys=SigningKeys.hmac(REFRESH_KEY, ALG), now=NOW)
    assert claims == RefreshClaims(
        user_id=USER_ID, session_id=SID, generation=3, issued_at=TS, expires_at=TS + 30 * 86400
    )


def test_refresh_token_claims() -> None:
    assert jwt.get_unverified_claims(make_refresh(generation=2)) == {
        "sub": "7",
        "sid": SID,
        "gen": 2,
        "type": "refresh",
        "iat": TS,
        "exp": TS + 30 * 86400,
    }


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_round_trip_with_each_hmac_algorithm(algorithm: str) -> None:
    access = make_access(algorithm=algorithm)
    refresh = make_refresh(algorithm=algorithm)
    assert jwt.get_unverified_header(access)["alg"] == algorithm
    assert (
        decode_access_token(access, keys=SigningKeys.hmac(ACCESS_KEY, algorithm), now=NOW).user_id
        == 7
    )
    assert (
        decode_refresh_token(
            refresh, keys=SigningKeys.hmac(REFRESH_KEY, algorithm), now=NOW
        ).generation
        == 1
    )


def test_timestamps_are_whole_seconds() -> None:
    issued_at = NOW.replace(microsecond=999_999)
    claims = decode_access_token(
        make_access(issued_at=issued_at), keys=SigningKeys.hmac(ACCESS_KEY, ALG), now=issued_at
    )
    assert (claims.issued_at, claims.expires_at) == (TS, TS + 900)


def test_a_hand_made_token_decodes_like_an_encoded_one() -> None:
    """The ``craft`` helper is faithful: it is what makes the refusals below meaningful."""
    assert decode_access_token(
        craft(access_payload()), keys=SigningKeys.hmac(ACCESS_KEY, ALG), now=NOW
    )
    assert decode_refresh_token(
        craft(refresh_payload(), key=REFRESH_KEY), keys=SigningKeys.hmac(REFRESH_KEY, ALG), now=NOW
    )


def test_encode_refresh_token_is_deterministic() -> None:
    assert make_refresh(generation=4) == make_refresh(generation=4)
    assert make_refresh(generation=4) != make_refresh(generation=5)


def test_encode_access_token_is_deterministic() -> None:
    assert make_access() == make_access()


# --- time ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("after", [timedelta(0), timedelta(seconds=1), timedelta(days=400)])
def test_access_token_expired_at_and_after_exp(after: timedelta) -> None:
    now = NOW + ACCESS_TTL + after
    assert access_problem(make_access(), now=now) is TokenProblem.EXPIRED


@pytest.mark.parametrize("after", [timedelta(0), timedelta(seconds=1), timedelta(days=400)])
def test_refresh_token_expired_at_and_after_exp(after: timedelta) -> None:
    now = NOW + REFRESH_TTL + after
    assert refresh_problem(make_refresh(), now=now) is TokenProblem.EXPIRED


def test_valid_until_the_last_second_before_exp() -> None:
    now = NOW + ACCESS_TTL - timedelta(seconds=1)
    assert decode_access_token(make_access(), keys=SigningKeys.hmac(ACCESS_KEY, ALG), now=now)
    now = NOW + REFRESH_TTL - timedelta(seconds=1)
    assert decode_refresh_token(make_refresh(), keys=SigningKeys.hmac(REFRESH_KEY, ALG), now=now)


def test_sub_second_remainder_of_now_does_not_extend_validity() -> None:
    now = NOW + ACCESS_TTL + timedelta(microseconds=1)
    assert access_problem(make_access(), now=now) is TokenProblem.EXPIRED


def test_iat_within_clock_skew_is_accepted() -> None:
    issued_at = NOW + timedelta(seconds=MAX_CLOCK_SKEW_SECONDS)
    assert decode_access_token(
        make_access(issued_at=issued_at), keys=SigningKeys.hmac(ACCESS_KEY, ALG), now=NOW
    )
    assert decode_refresh_token(
        make_refresh(issued_at=issued_at), keys=SigningKeys.hmac(REFRESH_KEY, ALG), now=NOW
    )


@pytest.mark.parametrize("ahead", [MAX_CLOCK_SKEW_SECONDS + 1, 3600, 86400 * 365])
def test_iat_beyond_clock_skew_is_not_yet_valid(ahead: int) -> None:
    issued_at = NOW + timedelta(seconds=ahead)
    assert access_problem(make_access(issued_at=issued_at)) is TokenProblem.NOT_YET_VALID
    assert refresh_problem(make_refresh(issued_at=issued_at)) is TokenProblem.NOT_YET_VALID


def test_expired_wins_over_not_yet_valid() -> None:
    token = craft(access_payload(iat=TS + 3600, exp=TS))
    assert access_problem(token) is TokenProblem.EXPIRED


# --- signature and algorithm ---------------------------------------------------------------------


def test_wrong_key() -> None:
    assert access_problem(make_access(), key="another-key-" + "c" * 40) is TokenProblem.MALFORMED
    assert refresh_problem(make_refresh(), key="another-key-" + "c" * 40) is TokenProblem.MALFORMED


def test_access_and_refresh_keys_are_not_interchangeable() -> None:
    assert access_problem(make_access(key=REFRESH_KEY)) is TokenProblem.MALFORMED
    assert refresh_problem(make_refresh(key=ACCESS_KEY)) is TokenProblem.MALFORMED


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_with_empty_signature(alg: str) -> None:
    access = craft(access_payload(), key=None, header={"alg": alg, "typ": "JWT"})
    refresh = craft(refresh_payload(), key=None, header={"alg": alg, "typ": "JWT"})
    assert access_problem(access) is TokenProblem.MALFORMED
    assert refresh_problem(refresh) is TokenProblem.MALFORMED


def test_missing_alg() -> None:
    assert access_problem(craft(access_payload(), header={"typ": "JWT"})) is TokenProblem.MALFORMED


@pytest.mark.parametrize("other", ["HS384", "HS512"])
def test_other_hmac_algorithm_refused_when_hs256_is_pinned(other: str) -> None:
    assert access_problem(make_access(algorithm=other)) is TokenProblem.MALFORMED
    assert refresh_problem(make_refresh(algorithm=other)) is TokenProblem.MALFORMED
    crafted = craft(access_payload(), header={"alg": other, "typ": "JWT"}, digest=other)
    assert access_problem(crafted) is TokenProblem.MALFORMED


def test_hs256_refused_when_hs512_is_pinned() -> None:
    with pytest.raises(TokenError) as caught:
        decode_access_token(make_access(), keys=SigningKeys.hmac(ACCESS_KEY, "HS512"), now=NOW)
    assert caught.value.problem is TokenProblem.MALFORMED


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256", "EdDSA"])
def test_asymmetric_header_with_hmac_of_the_secret(alg: str) -> None:
    """Algorithm confusion: the header claims a public-key algorithm, the signature is our HMAC."""
    access = craft(access_payload(), header={"alg": alg, "typ": "JWT"})
    refresh = craft(refresh_payload(), key=REFRESH_KEY, header={"alg": alg, "typ": "JWT"})
    assert access_problem(access) is TokenProblem.MALFORMED
    assert refresh_problem(refresh) is TokenProblem.MALFORMED


def test_tampered_payload() -> None:
    header, _, signature = make_access().split(".")
    forged = b64url_json(access_payload(id=1, sub="1"))
    assert access_problem(f"{header}.{forged}.{signature}") is TokenProblem.MALFORMED


def test_tampered_expiry_in_refresh_token() -> None:
    header, _, signature = make_refresh().split(".")
    forged = b64url_json(refresh_payload(exp=TS + 10 * 365 * 86400))
    assert refresh_problem(f"{header}.{forged}.{signature}") is TokenProblem.MALFORMED


def test_tampered_header() -> None:
    _, payload, signature = make_access().split(".")
    header = b64url_json({"alg": "HS256", "typ": "JWT", "kid": "x"})
    assert access_problem(f"{header}.{payload}.{signature}") is TokenProblem.MALFORMED


def test_flipped_signature_bit() -> None:
    header, payload, signature = make_access().split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 1
    assert access_problem(f"{header}.{payload}.{b64url(bytes(raw))}") is TokenProblem.MALFORMED


@pytest.mark.parametrize(
    "cut",
    [
        lambda t: t[:-1],
        lambda t: t[:-10],
        lambda t: t.rsplit(".", 1)[0],
        lambda t: t.rsplit(".", 1)[0] + ".",
        lambda t: t.split(".", 1)[0],
        lambda t: t[: len(t) // 2],
        lambda t: "",
        lambda t: ".",
        lambda t: "..",
        lambda t: "not a token",
        lambda t: t + ".extra",
        lambda t: "é" + t,
    ],
    ids=[
        "last-char",
        "ten-chars",
        "no-signature",
        "empty-signature",
        "header-only",
        "half",
        "empty",
        "dot",
        "two-dots",
        "garbage",
        "four-segments",
        "non-ascii",
    ],
)
def test_truncated_or_garbled_token(cut: Callable[[str], str]) -> None:
    assert access_problem(cut(make_access())) is TokenProblem.MALFORMED
    assert refresh_problem(cut(make_refresh())) is TokenProblem.MALFORMED


@pytest.mark.parametrize("payload", [[1, 2], "a string", 42, None, True])
def test_payload_that_is_not_an_object(payload: object) -> None:
    assert access_problem(craft(payload)) is TokenProblem.MALFORMED


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b'{"type": "access", "iat": 1, "exp": 2, "x": "\xff"}',  # not UTF-8
        '{"type": "access"}'.encode("utf-16"),  # JSON, but not in UTF-8
        b'{"type": "access", "sub": "1"} trailing',
    ],
)
def test_payload_that_is_not_json_in_utf8(payload: bytes) -> None:
    signing_input = b64url_json({"alg": ALG, "typ": "JWT"}) + "." + b64url(payload)
    mac = hmac.new(ACCESS_KEY.encode(), signing_input.encode(), hashlib.sha256).digest()
    assert access_problem(signing_input + "." + b64url(mac)) is TokenProblem.MALFORMED


# --- the type claim ------------------------------------------------------------------------------


def test_access_token_presented_as_refresh_token_with_the_same_key() -> None:
    token = make_access(key=REFRESH_KEY)
    assert refresh_problem(token, key=REFRESH_KEY) is TokenProblem.WRONG_TYPE


def test_refresh_token_presented_as_access_token_with_the_same_key() -> None:
    token = make_refresh(key=ACCESS_KEY)
    assert access_problem(token, key=ACCESS_KEY) is TokenProblem.WRONG_TYPE


def test_refresh_token_with_an_id_claim_is_still_the_wrong_type() -> None:
    """Even carrying every access claim, a refresh-typed token is not an access token."""
    token = craft(access_payload(type="refresh", gen=1))
    assert access_problem(token) is TokenProblem.WRONG_TYPE


@pytest.mark.parametrize("kind", [MISSING, None, "", "ACCESS", "Access", "access ", "refresh", 1])
def test_access_type_claim(kind: object) -> None:
    assert access_problem(craft(access_payload(type=kind))) is TokenProblem.WRONG_TYPE


@pytest.mark.parametrize("kind", [MISSING, None, "REFRESH", "access", ["refresh"]])
def test_refresh_type_claim(kind: object) -> None:
    token = craft(refresh_payload(type=kind), key=REFRESH_KEY)
    assert refresh_problem(token) is TokenProblem.WRONG_TYPE


# --- claims --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"iat": MISSING},
        {"exp": MISSING},
        {"iat": float(TS)},
        {"exp": float(TS + 900)},
        {"iat": str(TS)},
        {"exp": str(TS + 900)},
        {"iat": True},
        {"exp": None},
    ],
    ids=[
        "no-iat",
        "no-exp",
        "float-iat",
        "float-exp",
        "str-iat",
        "str-exp",
        "bool-iat",
        "null-exp",
    ],
)
def test_iat_and_exp_must_be_integers(changes: dict[str, Any]) -> None:
    assert access_problem(craft(access_payload(**changes))) is TokenProblem.MALFORMED
    token = craft(refresh_payload(**changes), key=REFRESH_KEY)
    assert refresh_problem(token) is TokenProblem.MALFORMED


@pytest.mark.parametrize(
    "user_id",
    [str(USER_ID), float(USER_ID), None, MISSING, [USER_ID]],
    ids=["str", "float", "null", "missing", "list"],
)
def test_non_int_id(user_id: object) -> None:
    assert access_problem(craft(access_payload(id=user_id))) is TokenProblem.MALFORMED


def test_bool_id() -> None:
    """``True == 1`` in Python: the id check must not let a boolean through for user 1."""
    token = craft(access_payload(id=True, sub="1"))
    assert access_problem(token) is TokenProblem.MALFORMED
    token = craft(access_payload(id=False, sub="0"))
    assert access_problem(token) is TokenProblem.MALFORMED


@pytest.mark.parametrize(("user_id", "sub"), [(8, "7"), (7, "8"), (1, "10"), (0, "7")])
def test_mismatched_id_and_sub(user_id: int, sub: str) -> None:
    assert access_problem(craft(access_payload(id=user_id, sub=sub))) is TokenProblem.MALFORMED


@pytest.mark.parametrize(
    "sub",
    [MISSING, None, 7, "", "-7", "+7", "7a", " 7", "7.0", "1" * 19],
    ids=["missing", "null", "int", "empty", "negative", "plus", "suffix", "space", "float", "long"],
)
def test_bad_sub(sub: object) -> None:
    assert access_problem(craft(access_payload(sub=sub))) is TokenProblem.MALFORMED
    token = craft(refresh_payload(sub=sub), key=REFRESH_KEY)
    assert refresh_problem(token) is TokenProblem.MALFORMED


def test_longest_sub_accepted() -> None:
    user_id = 10**18 - 1  # 18 digits
    token = craft(refresh_payload(sub=str(user_id)), key=REFRESH_KEY)
    assert (
        decode_refresh_token(token, keys=SigningKeys.hmac(REFRESH_KEY, ALG), now=NOW).user_id
        == user_id
    )


@pytest.mark.parametrize(
    "sid",
    [MISSING, None, "", 5, ["s"], "s" * 65],
    ids=["missing", "null", "empty", "int", "list", "65"],
)
def test_bad_sid(sid: object) -> None:
    assert access_problem(craft(access_payload(sid=sid))) is TokenProblem.MALFORMED
    token = craft(refresh_payload(sid=sid), key=REFRESH_KEY)
    assert refresh_problem(token) is TokenProblem.MALFORMED


@pytest.mark.parametrize("sid", ["s", "s" * 64])
def test_sid_length_bounds_accepted(sid: str) -> None:
    claims = decode_access_token(
        craft(access_payload(sid=sid)), keys=SigningKeys.hmac(ACCESS_KEY, ALG), now=NOW
    )
    assert claims.session_id == sid


@pytest.mark.parametrize(
    "generation",
    [0, -1, -(2**40), MISSING, None, True, "1", 1.0],
    ids=["zero", "negative", "very-negative", "missing", "null", "bool", "str", "float"],
)
def test_bad_generation(generation: object) -> None:
    token = craft(refresh_payload(gen=generation), key=REFRESH_KEY)
    assert refresh_problem(token) is TokenProblem.MALFORMED


def test_generation_zero_or_negative_even_through_the_encoder() -> None:
    for generation in (0, -3):
        assert refresh_problem(make_refresh(generation=generation)) is TokenProblem.MALFORMED


def test_large_generation_accepted() -> None:
    claims = decode_refresh_token(
        make_refresh(generation=2**40), keys=SigningKeys.hmac(REFRESH_KEY, ALG), now=NOW
    )
    assert claims.generation == 2**40


def test_token_error_names_its_problem() -> None:
    error = TokenError(TokenProblem.EXPIRED)
    assert error.problem is TokenProblem.EXPIRED
    assert str(error) == "TOKEN_EXPIRED"
    assert {p.value for p in TokenProblem} == {
        "TOKEN_MALFORMED",
        "TOKEN_WRONG_TYPE",
        "TOKEN_EXPIRED",
        "TOKEN_NOT_YET_VALID",
    }


def test_repr_of_the_runtime_keys_hides_them() -> None:
    keys = TokenKeys(
        PublishedKeys.of_secret("secret-access-key", "HS256"),
        SigningKeys.hmac("secret-refresh-key", "HS256"),
        timedelta(minutes=5),
    )
    assert "secret" not in repr(keys)
