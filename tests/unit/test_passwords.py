"""Password hashing and verification, against the bcrypt hashes a real Strapi 5 wrote."""

from __future__ import annotations

import sqlite3

import pytest
from passlib.context import CryptContext

from app.security.passwords import (
    BCRYPT_MAX_BYTES,
    Argon2Params,
    build_context,
    hash_password,
    login_secret,
    make_dummy_hash,
    verify_password,
)
from tests.support import STRAPI_FIXTURE

ARGON2ID_DEFAULT_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"

# The passwords of the fixture's users (tests/fixtures/README.md).
FIXTURE_PASSWORDS = {
    "alice": "Secret-pass-123",
    "bob": "pässwörd-ünïcode",
    "carol": "x" * 72,
    "dave": "Dave-pass-123",
}


@pytest.fixture(scope="module")
def context() -> CryptContext:
    return build_context(Argon2Params())


@pytest.fixture(scope="module")
def dummy(context: CryptContext) -> str:
    return make_dummy_hash(context)


@pytest.fixture(scope="module")
def strapi_hashes() -> dict[str, str]:
    """username -> password hash, read from the Strapi database file (read-only)."""
    assert STRAPI_FIXTURE.is_file(), STRAPI_FIXTURE
    conn = sqlite3.connect(f"file:{STRAPI_FIXTURE}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT username, password FROM up_users ORDER BY id").fetchall()
    finally:
        conn.close()
    return {str(username): str(password) for username, password in rows}


def test_fixture_holds_bcryptjs_hashes(strapi_hashes: dict[str, str]) -> None:
    assert set(strapi_hashes) == set(FIXTURE_PASSWORDS)
    for stored in strapi_hashes.values():
        assert stored.startswith("$2a$10$")
        assert len(stored) == 60


# --- hashing -------------------------------------------------------------------------------------


def test_default_context_hashes_argon2id_with_owasp_parameters(context: CryptContext) -> None:
    hashed = hash_password(context, "Secret-pass-123")
    assert hashed.startswith(ARGON2ID_DEFAULT_PREFIX)


def test_hashes_are_salted(context: CryptContext) -> None:
    assert hash_password(context, "same") != hash_password(context, "same")


def test_custom_parameters_reach_the_hash() -> None:
    context = build_context(Argon2Params(memory_cost=32768, time_cost=3, parallelism=2))
    assert hash_password(context, "pw").startswith("$argon2id$v=19$m=32768,t=3,p=2$")


def test_dummy_hash_is_a_current_argon2id_hash(context: CryptContext, dummy: str) -> None:
    assert dummy.startswith(ARGON2ID_DEFAULT_PREFIX)
    assert make_dummy_hash(context) != dummy


def test_current_argon2_hash_verifies_without_rehash(context: CryptContext, dummy: str) -> None:
    stored = hash_password(context, "Secret-pass-123")
    assert verify_password(context, "Secret-pass-123", stored, dummy) == (True, None)
    assert verify_password(context, "secret-pass-123", stored, dummy) == (False, None)
    assert verify_password(context, "", stored, dummy) == (False, None)


@pytest.mark.parametrize(
    "params",
    [Argon2Params(time_cost=1), Argon2Params(memory_cost=8192), Argon2Params(parallelism=2)],
    ids=["time", "memory", "parallelism"],
)
def test_argon2_hash_with_other_parameters_is_rehashed(
    context: CryptContext, dummy: str, params: Argon2Params
) -> None:
    stored = hash_password(build_context(params), "pw")
    ok, replacement = verify_password(context, "pw", stored, dummy)
    assert ok
    assert replacement is not None
    assert replacement.startswith(ARGON2ID_DEFAULT_PREFIX)
    assert verify_password(context, "pw", replacement, dummy) == (True, None)


def test_wrong_password_never_yields_a_replacement(context: CryptContext, dummy: str) -> None:
    stored = hash_password(build_context(Argon2Params(time_cost=1)), "pw")
    assert verify_password(context, "other", stored, dummy) == (False, None)


# --- Strapi's bcrypt hashes ----------------------------------------------------------------------


@pytest.mark.parametrize("username", sorted(FIXTURE_PASSWORDS))
def test_strapi_hash_verifies_and_is_upgraded_to_argon2id(
    context: CryptContext, dummy: str, strapi_hashes: dict[str, str], username: str
) -> None:
    password = FIXTURE_PASSWORDS[username]
    ok, replacement = verify_password(context, password, strapi_hashes[username], dummy)
    assert ok
    assert replacement is not None
    assert replacement.startswith(ARGON2ID_DEFAULT_PREFIX)
    # The replacement is a current hash of the same password: it verifies and needs no update.
    assert verify_password(context, password, replacement, dummy) == (True, None)
    assert verify_password(context, "!" + password, replacement, dummy) == (False, None)


@pytest.mark.parametrize("username", sorted(FIXTURE_PASSWORDS))
def test_strapi_hash_refuses_a_wrong_password(
    context: CryptContext, dummy: str, strapi_hashes: dict[str, str], username: str
) -> None:
    wrong = FIXTURE_PASSWORDS[username][:-1] + "?"
    assert verify_password(context, wrong, strapi_hashes[username], dummy) == (False, None)


def test_passwords_are_case_sensitive(
    context: CryptContext, dummy: str, strapi_hashes: dict[str, str]
) -> None:
    assert verify_password(context, "secret-pass-123", strapi_hashes["alice"], dummy) == (
        False,
        None,
    )


def test_carol_72_bytes_and_beyond(
    context: CryptContext, dummy: str, strapi_hashes: dict[str, str]
) -> None:
    stored = strapi_hashes["carol"]
    assert verify_password(context, "x" * 72, stored, dummy)[0]
    assert verify_password(context, "x" * 80, stored, dummy)[0]  # bcryptjs ignores bytes past 72
    assert verify_password(context, "x" * 72 + "anything", stored, dummy)[0]
    assert verify_password(context, "x" * 71, stored, dummy) == (False, None)
    assert verify_password(context, "x" * 71 + "y", stored, dummy) == (False, None)


def test_carol_upgraded_hash_keeps_accepting_80_bytes(
    context: CryptContext, dummy: str, strapi_hashes: dict[str, str]
) -> None:
    """After the upgrade to argon2id, the same typed passwords work as they did under bcrypt."""
    ok, replacement = verify_password(context, "x" * 80, strapi_hashes["carol"], dummy)
    assert ok
    assert replacement is not None
    assert verify_password(context, "x" * 80, replacement, dummy) == (True, None)
    assert verify_password(context, "x" * 72, replacement, dummy) == (True, None)
    assert verify_password(context, "x" * 71, replacement, dummy) == (False, None)


@pytest.mark.parametrize("variant", ["$2b$", "$2y$"])
def test_bcrypt_prefix_variants_verify(
    context: CryptContext, dummy: str, strapi_hashes: dict[str, str], variant: str
) -> None:
    stored = variant + strapi_hashes["alice"].removeprefix("$2a$")
    ok, replacement = verify_password(context, "Secret-pass-123", stored, dummy)
    assert ok
    assert replacement is not None
    assert replacement.startswith(ARGON2ID_DEFAULT_PREFIX)
    assert verify_password(context, "Secret-pass-124", stored, dummy) == (False, None)


# --- no hash, or not a hash ----------------------------------------------------------------------


def test_unknown_user(context: CryptContext, dummy: str) -> None:
    assert verify_password(context, "Secret-pass-123", None, dummy) == (False, None)
    assert verify_password(context, "", None, dummy) == (False, None)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "x",
        "not a hash",
        "Secret-pass-123",  # a plaintext password stored by mistake
        "$argon2id$",
        "$argon2id$v=19$m=19456,t=2,p=1$garbage",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$" + "A" * 43,
        "$2a$10$short",
        "$2a$10$" + "!" * 53,
        "$2a$99$fm8MGvKpr2c25YwageEz6.l/iaTHCe.Haz2AirpF9rtdhGvY8fIhi",
        "$2x$10$fm8MGvKpr2c25YwageEz6.l/iaTHCe.Haz2AirpF9rtdhGvY8fIhi",
        "$2a$10$fm8MGvKpr2c25YwageEz6.l/iaTHCe.Haz2AirpF9rtdhGvY8fIhé",
        "$1$abc$def",
        "$5$rounds=1000$abc$def",
        "$pbkdf2-sha256$29000$abc$def",
        "éé",
        "\x00",
    ],
    ids=lambda stored: repr(stored)[:24],
)
def test_garbage_stored_hash_is_a_mismatch(context: CryptContext, dummy: str, stored: str) -> None:
    assert verify_password(context, "Secret-pass-123", stored, dummy) == (False, None)


# --- non-ASCII -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password", ["pässwörd-ünïcode", "пароль-密码-🔑", "é" * 36, "\u200b zero width", "ﬁ ligature"]
)
def test_non_ascii_passwords(context: CryptContext, dummy: str, password: str) -> None:
    stored = hash_password(context, password)
    assert verify_password(context, password, stored, dummy) == (True, None)
    assert verify_password(context, "x" + password, stored, dummy) == (False, None)


def test_bob_non_ascii_password_is_compared_as_utf8_bytes(
    context: CryptContext, dummy: str, strapi_hashes: dict[str, str]
) -> None:
    stored = strapi_hashes["bob"]
    assert verify_password(context, "pässwörd-ünïcode", stored, dummy)[0]
    assert verify_password(context, "passwörd-ünïcode", stored, dummy) == (False, None)
    latin1_as_utf8 = "pässwörd-ünïcode".encode().decode("latin-1")
    assert verify_password(context, latin1_as_utf8, stored, dummy) == (False, None)


def test_login_secret_cuts_utf8_bytes_at_72() -> None:
    assert BCRYPT_MAX_BYTES == 72
    assert login_secret("x" * 80) == b"x" * 72
    assert login_secret("pässwörd") == "pässwörd".encode()
    # As bcryptjs does, the cut may fall inside a multi-byte character.
    assert login_secret("x" * 71 + "é") == b"x" * 71 + b"\xc3"
    assert login_secret("é" * 40) == ("é" * 36).encode()
