"""Settings: production's refusal of weak secrets, durations, database URLs, development secrets.

Every ``Settings`` here is built with ``_env_file=None`` and explicit values for what the test depends on,
so neither a ``.env`` file nor the ambient environment changes the outcome.
"""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic import ValidationError as PydanticValidationError

from app.settings import (
    MIN_SECRET_BYTES,
    Settings,
    describe_invalid,
    normalize_database_url,
    secret_problem,
)

GOOD_ACCESS = "unit-access-secret-" + "a" * 40
GOOD_REFRESH = "unit-refresh-secret-" + "b" * 40


def build(**values: Any) -> Settings:
    values.setdefault("environment", "test")
    values.setdefault("jwt_secret", GOOD_ACCESS)
    values.setdefault("refresh_jwt_secret", GOOD_REFRESH)
    return Settings(_env_file=None, **values)


def production(**values: Any) -> Settings:
    return build(environment="production", **values)


def refusal(**values: Any) -> str:
    with pytest.raises(PydanticValidationError) as caught:
        production(**values)
    message = str(caught.value)
    assert "refusing to start in production" in message
    return message


# --- production secrets --------------------------------------------------------------------------


def test_production_accepts_two_good_distinct_secrets() -> None:
    settings = production()
    assert settings.environment == "production"
    assert settings.jwt_secret.get_secret_value() == GOOD_ACCESS
    assert settings.refresh_jwt_secret.get_secret_value() == GOOD_REFRESH


def test_production_refuses_missing_jwt_secret() -> None:
    message = refusal(jwt_secret="")
    assert "production: JWT_SECRET is missing" in message
    assert "REFRESH_JWT_SECRET" not in message


def test_production_refuses_missing_refresh_secret() -> None:
    assert "REFRESH_JWT_SECRET is missing" in refusal(refresh_jwt_secret="")


def test_production_names_both_missing_secrets() -> None:
    message = refusal(jwt_secret="", refresh_jwt_secret="")
    assert "JWT_SECRET is missing; REFRESH_JWT_SECRET is missing" in message


@pytest.mark.parametrize("length", [1, 16, MIN_SECRET_BYTES - 1])
def test_production_refuses_short_secret(length: int) -> None:
    message = refusal(jwt_secret="k" * length)
    assert f"JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes" in message


def test_secret_length_is_counted_in_bytes() -> None:
    assert secret_problem("JWT_SECRET", "k" * MIN_SECRET_BYTES) is None
    assert secret_problem("JWT_SECRET", "é" * (MIN_SECRET_BYTES // 2)) is None  # 2 bytes each
    assert secret_problem("JWT_SECRET", "é" * (MIN_SECRET_BYTES // 2 - 1) + "k") is not None
    production(jwt_secret="k" * MIN_SECRET_BYTES)


@pytest.mark.parametrize("secret", ["SuperSecretKey", "changeme", "CHANGEME", " changeme "])
def test_production_refuses_well_known_secret(secret: str) -> None:
    assert "JWT_SECRET is a well-known placeholder value" in refusal(jwt_secret=secret)
    message = refusal(refresh_jwt_secret=secret)
    assert "REFRESH_JWT_SECRET is a well-known placeholder value" in message


def test_production_refuses_equal_secrets() -> None:
    message = refusal(jwt_secret=GOOD_ACCESS, refresh_jwt_secret=GOOD_ACCESS)
    assert "JWT_SECRET and REFRESH_JWT_SECRET must be different keys" in message


PRIVATE_KEY = "q7Zr4Vx9Lm2Tk8Wp3Ns6Hd1Yc5Bf0Gj-Ea2Ru"


def leaked_fragments(message: str, secret: str, size: int = 8) -> list[str]:
    return [
        secret[i : i + size]
        for i in range(len(secret) - size + 1)
        if secret[i : i + size] in message
    ]


# Pydantic's error text would otherwise carry a truncated repr of the input, ending with the tail of
# the last secret given: a refused start must not print part of a real signing key into the logs.
@pytest.mark.parametrize(
    "secrets",
    [
        {"jwt_secret": PRIVATE_KEY, "refresh_jwt_secret": PRIVATE_KEY},
        {"jwt_secret": "short", "refresh_jwt_secret": PRIVATE_KEY},
        {"jwt_secret": PRIVATE_KEY, "refresh_jwt_secret": "Pv3-short-private"},
        {"refresh_jwt_secret": "Pv3-short-private", "jwt_secret": PRIVATE_KEY},
    ],
    ids=["equal-keys", "short-access-key", "short-refresh-key", "access-key-last"],
)
def test_refusal_does_not_echo_a_secret(secrets: dict[str, str]) -> None:
    message = refusal(**secrets)
    for secret in secrets.values():
        assert leaked_fragments(message, secret) == []


@pytest.mark.parametrize("environment", ["development", "test"])
def test_weak_secrets_allowed_outside_production(environment: str) -> None:
    settings = build(environment=environment, jwt_secret="changeme", refresh_jwt_secret="changeme")
    assert settings.jwt_secret.get_secret_value() == "changeme"
    build(environment=environment, jwt_secret="", refresh_jwt_secret="")


def test_unknown_environment_refused() -> None:
    with pytest.raises(PydanticValidationError):
        build(environment="staging")


def test_secrets_are_not_in_repr() -> None:
    settings = production()
    assert GOOD_ACCESS not in repr(settings)
    assert GOOD_REFRESH not in str(settings)


# --- durations -----------------------------------------------------------------------------------


def test_durations_parsed_from_strings() -> None:
    settings = build(
        jwt_expires_in="2h",
        refresh_token_expires_in="30d",
        session_max_age="5w",
        refresh_token_reuse_grace="600",
    )
    assert settings.jwt_expires_in == timedelta(hours=2)
    assert settings.refresh_token_expires_in == timedelta(days=30)
    assert settings.session_max_age == timedelta(weeks=5)
    assert settings.refresh_token_reuse_grace == timedelta(seconds=600)


def test_durations_from_numbers_and_timedeltas() -> None:
    settings = build(
        jwt_expires_in=900, refresh_token_expires_in="2d", session_max_age=timedelta(days=3)
    )
    assert settings.jwt_expires_in == timedelta(minutes=15)
    assert settings.session_max_age == timedelta(days=3)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"refresh_token_reuse_grace": "1d", "refresh_token_expires_in": "1d"},
            "REUSE_GRACE must be shorter",
        ),
        ({"refresh_token_expires_in": "91d"}, "REFRESH_TOKEN_EXPIRES_IN must not be longer"),
        (
            {"jwt_expires_in": "100d", "refresh_token_expires_in": "1d"},
            "JWT_EXPIRES_IN must not be longer",
        ),
    ],
)
def test_lifetimes_must_nest(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(**values)


def test_durations_serialize_in_plugin_form() -> None:
    dumped = build(jwt_expires_in="7200s", refresh_token_expires_in="30d").model_dump(mode="json")
    assert dumped["jwt_expires_in"] == "2h"
    assert dumped["refresh_token_expires_in"] == "30d"


@pytest.mark.parametrize("value", ["", "0", "-5", "1y", "1.5h", "soon", True, 0.5, "3661d"])
def test_bad_durations_are_validation_errors(value: object) -> None:
    with pytest.raises(PydanticValidationError, match="jwt_expires_in"):
        build(jwt_expires_in=value)


def test_overflowing_duration_is_a_validation_error() -> None:
    with pytest.raises(PydanticValidationError, match="jwt_expires_in"):
        build(jwt_expires_in="999999999w")


def test_environment_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_EXPIRES_IN", "2h")
    monkeypatch.setenv("REFRESH_TOKEN_ROTATION", "false")
    monkeypatch.setenv("REFRESH_TOKEN_EXPIRES_IN", "14d")
    monkeypatch.setenv("COOKIE_RESPONSE", "true")
    monkeypatch.setenv("JWT_SECRET", "from-the-environment-" + "e" * 40)
    settings = Settings(_env_file=None, environment="test")
    assert settings.jwt_expires_in == timedelta(hours=2)
    assert settings.refresh_token_rotation is False
    assert settings.refresh_token_expires_in == timedelta(days=14)
    assert settings.cookie_response is True
    assert settings.jwt_secret.get_secret_value() == "from-the-environment-" + "e" * 40


# --- database URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("postgres://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        ("postgresql://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
        ("sqlite+aiosqlite:///./refreshd.db", "sqlite+aiosqlite:///./refreshd.db"),
    ],
)
def test_database_url_normalization(url: str, normalized: str) -> None:
    assert normalize_database_url(url) == normalized
    settings = build(database_url=url)
    assert settings.database_url == normalized
    assert settings.is_sqlite is normalized.startswith("sqlite")


def test_only_the_scheme_is_rewritten() -> None:
    url = "postgres://u:postgres://@db/app"
    assert normalize_database_url(url) == "postgresql+asyncpg://u:postgres://@db/app"


# --- development secrets -------------------------------------------------------------------------


def dev(tmp_path: Path, **values: Any) -> Settings:
    values.setdefault("jwt_secret", "")
    values.setdefault("refresh_jwt_secret", "")
    return build(
        environment="development", dev_secrets_file=tmp_path / "nested" / "secrets.json", **values
    )


def test_development_secrets_generated_once(tmp_path: Path) -> None:
    settings = dev(tmp_path).with_development_secrets()
    path = tmp_path / "nested" / "secrets.json"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    access = settings.jwt_secret.get_secret_value()
    refresh = settings.refresh_jwt_secret.get_secret_value()
    assert len(access.encode()) >= MIN_SECRET_BYTES
    assert len(refresh.encode()) >= MIN_SECRET_BYTES
    assert access != refresh
    assert json.loads(path.read_text()) == {"jwt_secret": access, "refresh_jwt_secret": refresh}

    before = path.read_bytes()
    again = dev(tmp_path).with_development_secrets()
    assert again.jwt_secret.get_secret_value() == access
    assert again.refresh_jwt_secret.get_secret_value() == refresh
    assert path.read_bytes() == before


def test_development_secrets_do_not_mutate_the_original(tmp_path: Path) -> None:
    original = dev(tmp_path)
    filled = original.with_development_secrets()
    assert filled is not original
    assert original.jwt_secret.get_secret_value() == ""
    assert original.refresh_jwt_secret.get_secret_value() == ""


def test_given_secret_is_kept(tmp_path: Path) -> None:
    settings = dev(tmp_path, jwt_secret=GOOD_ACCESS).with_development_secrets()
    assert settings.jwt_secret.get_secret_value() == GOOD_ACCESS
    refresh = settings.refresh_jwt_secret.get_secret_value()
    assert refresh
    assert refresh != GOOD_ACCESS
    stored = json.loads((tmp_path / "nested" / "secrets.json").read_text())
    assert stored == {"refresh_jwt_secret": refresh}


def test_given_secret_wins_over_the_file(tmp_path: Path) -> None:
    generated = dev(tmp_path).with_development_secrets()
    settings = dev(tmp_path, refresh_jwt_secret=GOOD_REFRESH).with_development_secrets()
    assert settings.refresh_jwt_secret.get_secret_value() == GOOD_REFRESH
    assert settings.jwt_secret == generated.jwt_secret


def test_file_completed_when_a_secret_is_added(tmp_path: Path) -> None:
    first = dev(tmp_path, jwt_secret=GOOD_ACCESS).with_development_secrets()
    second = dev(tmp_path).with_development_secrets()
    assert second.refresh_jwt_secret == first.refresh_jwt_secret
    assert second.jwt_secret.get_secret_value() not in ("", GOOD_ACCESS)
    stored = json.loads((tmp_path / "nested" / "secrets.json").read_text())
    assert set(stored) == {"jwt_secret", "refresh_jwt_secret"}


def test_both_secrets_given_leaves_settings_and_disk_alone(tmp_path: Path) -> None:
    settings = dev(tmp_path, jwt_secret=GOOD_ACCESS, refresh_jwt_secret=GOOD_REFRESH)
    assert settings.with_development_secrets() is settings
    assert not (tmp_path / "nested").exists()


def test_production_returns_self_unchanged(tmp_path: Path) -> None:
    settings = production(dev_secrets_file=tmp_path / "secrets.json")
    assert settings.with_development_secrets() is settings
    # Even with a secret missing (only reachable by bypassing validation), nothing is generated.
    unvalidated = settings.model_copy(
        update={"jwt_secret": SecretStr(""), "refresh_jwt_secret": SecretStr("")}
    )
    assert unvalidated.with_development_secrets() is unvalidated
    assert unvalidated.jwt_secret.get_secret_value() == ""
    assert not (tmp_path / "secrets.json").exists()


# --- settings that are refused, in words that name them ------------------------------------------------------


def problem(**values: Any) -> str:
    with pytest.raises(PydanticValidationError) as caught:
        build(**values)
    return describe_invalid(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "garbage",
            "DATABASE_URL: not a database URL: use sqlite:///path/to/file.db or postgresql://",
        ),
        ("://", "DATABASE_URL: not a database URL"),
        ("mysql://root:hunter2@db/app", "DATABASE_URL: unsupported database 'mysql'"),
        ("mongodb+srv://u:hunter2@db/app", "DATABASE_URL: unsupported database 'mongodb+srv'"),
        ("sqlite://", "DATABASE_URL: refreshd needs an SQLite database file"),
        ("sqlite:///:memory:", "DATABASE_URL: refreshd needs an SQLite database file"),
        (
            "sqlite:////no/such/folder/x.db",
            "DATABASE_URL: the folder '/no/such/folder' of the SQLite",
        ),
        ("postgresql://u:hunter2@db:99999/app", "DATABASE_URL: the port is not a number"),
        ("postgresql://u:hunter2@db:port/app", "DATABASE_URL: "),
    ],
)
def test_a_bad_database_url_is_named_without_its_password(url: str, message: str) -> None:
    text = problem(database_url=url)
    assert text.startswith(message)
    assert "hunter2" not in text


def test_an_sqlite_file_in_an_existing_folder_is_accepted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new.db"
    assert build(database_url=url).database_url == f"sqlite+aiosqlite:///{tmp_path}/new.db"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis_url": "garbage"}, "REDIS_URL: not a Redis URL"),
        ({"redis_url": "http://cache:6379"}, "REDIS_URL: not a Redis URL"),
        ({"redis_url": "redis://:hunter2@"}, "REDIS_URL: not a Redis URL"),
        ({"log_level": "verbose"}, "LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING'"),
        (
            {"production_url": "not a url"},
            "PRODUCTION_URL: 'not a url' is not an http(s) URL or a host",
        ),
        ({"production_url": "ftp://example.com"}, "PRODUCTION_URL: 'ftp://example.com' is not"),
        ({"production_url": "https://"}, "PRODUCTION_URL: 'https://' is not"),
        (
            {"production_url": "https://exa_mple.com"},
            "PRODUCTION_URL: 'https://exa_mple.com' is not",
        ),
        ({"production_url": "https://example.com:99999"}, "PRODUCTION_URL: "),
        ({"cookie_domain": "a b"}, "COOKIE_DOMAIN: 'a b' is not"),
        ({"public_url": "127.0.0.1:8000"}, "PUBLIC_URL: '127.0.0.1:8000' is not an http(s) URL"),
        ({"reset_password_url": "/reset"}, "RESET_PASSWORD_URL: '/reset' is not an http(s) URL"),
        ({"trusted_proxies": "10.0.0.0/8,nope"}, "TRUSTED_PROXIES: 'nope' is not an IP address"),
    ],
)
def test_a_bad_setting_is_named(values: dict[str, str], message: str) -> None:
    text = problem(**values)
    assert text.startswith(message), text
    assert "hunter2" not in text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"redis_url": "rediss://:pw@cache.internal:6380/2"}, "rediss://:pw@cache.internal:6380/2"),
        ({"log_level": "debug"}, "DEBUG"),
        ({"production_url": "app.example.com"}, "app.example.com"),
        ({"production_url": "http://localhost:3000"}, "http://localhost:3000"),
        ({"production_url": "https://[::1]:8443/app"}, "https://[::1]:8443/app"),
        ({"public_url": "https://auth.example.com/base/"}, "https://auth.example.com/base/"),
    ],
)
def test_good_values_are_kept(values: dict[str, str], expected: str) -> None:
    [(name, _)] = values.items()
    assert getattr(build(**values), name) == expected


def test_production_mail_needs_a_reset_page() -> None:
    """The default reset link, PUBLIC_URL/reset-password, is no page of refreshd's: production that sends mail
    must say where its frontend's reset page is."""
    message = refusal(smtp_host="smtp.example.com")
    assert "set RESET_PASSWORD_URL to your frontend's reset page" in message
    settings = production(
        smtp_host="smtp.example.com", reset_password_url="https://app.example.com/reset"
    )
    assert settings.reset_link_base == "https://app.example.com/reset"
    assert production().reset_password_url is None  # no mail, no link: nothing to set
