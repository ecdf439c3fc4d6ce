"""Configuration from the environment (or a ``.env`` file), named as the refresh-token plugin names it."""

from __future__ import annotations

import json
import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.durations import format_duration, parse_duration

logger = logging.getLogger("refreshd.settings")

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]

# Secrets that appear in docs, tutorials and plugin defaults: anyone can sign tokens with them.
WELL_KNOWN_SECRETS = frozenset(
    s.lower()
    for s in (
        "SomethingSecret",
        "SuperSecretKey",
        "changeme",
        "change-me",
        "change_me",
        "changethis",
        "secret",
        "jwt-secret",
        "jwt_secret",
        "mysecret",
        "my-secret",
        "your-secret-key",
        "your_secret_key",
        "yoursecretkey",
        "tobemodified",
        "supersecret",
        "super-secret",
        "password",
        "default",
        "development",
        "dev-secret",
        "test",
        "refresh-secret",
    )
)
MIN_SECRET_BYTES = 32
SECRET_FIELDS = ("jwt_secret", "refresh_jwt_secret")


def normalize_database_url(url: str) -> str:
    """Accept the common spellings and pick the async driver this service runs on."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
    return url


def secret_problem(name: str, value: str) -> str | None:
    """Why ``value`` is not fit to sign production tokens, or None."""
    if not value:
        return f"{name} is missing"
    if value.strip().lower() in WELL_KNOWN_SECRETS:
        return f"{name} is a well-known placeholder value"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"{name} is shorter than {MIN_SECRET_BYTES} bytes"
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    environment: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite+aiosqlite:///./refreshd.db"
    db_pool_size: int = Field(default=20, ge=1, le=500)
    db_max_overflow: int = Field(default=10, ge=0, le=500)
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)

    jwt_secret: SecretStr = SecretStr("")
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_expires_in: Duration = timedelta(minutes=15)
    refresh_jwt_secret: SecretStr = SecretStr("")
    refresh_token_expires_in: Duration = timedelta(days=30)
    session_max_age: Duration = timedelta(days=90)
    refresh_token_reuse_grace: Duration = timedelta(seconds=10)
    request_refresh_on_all: bool = False
    refresh_token_rotation: bool = True
    cookie_response: bool = False
    production_url: str | None = None

    allow_register: bool = True
    email_confirmation: bool = False
    password_min_length: int = Field(default=6, ge=1, le=72)

    argon2_memory_cost: int = Field(default=19456, ge=19456, description="KiB; OWASP minimum")
    argon2_time_cost: int = Field(default=2, ge=2)
    argon2_parallelism: int = Field(default=1, ge=1)
    hash_workers: int = Field(default=0, ge=0, description="0 means one per CPU core")

    dev_secrets_file: Path = Path(".refreshd-secrets.json")
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @model_validator(mode="after")
    def _refuse_weak_secrets_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        problems = [
            problem
            for field in SECRET_FIELDS
            if (problem := secret_problem(field.upper(), getattr(self, field).get_secret_value()))
        ]
        if not problems and self.jwt_secret == self.refresh_jwt_secret:
            problems.append("JWT_SECRET and REFRESH_JWT_SECRET must be different keys")
        if problems:
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def hash_pool_size(self) -> int:
        return self.hash_workers or os.cpu_count() or 1

    def with_development_secrets(self) -> Settings:
        """Fill missing secrets outside production from a local file, generating it once.

        Keeping them in a file (git-ignored) means tokens survive a restart during development.
        """
        missing = [f for f in SECRET_FIELDS if not getattr(self, f).get_secret_value()]
        if not missing or self.environment == "production":
            return self
        path = self.dev_secrets_file
        stored: dict[str, Any] = {}
        if path.exists():
            stored = json.loads(path.read_text())
        generated = [f for f in missing if not stored.get(f)]
        for field in generated:
            stored[field] = secrets.token_urlsafe(48)
        if generated:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(stored, handle, indent=2)
            logger.warning(
                "generated development secrets %s and saved them in %s; "
                "set JWT_SECRET and REFRESH_JWT_SECRET in production",
                ", ".join(f.upper() for f in generated),
                path.resolve(),
            )
        else:
            logger.info(
                "using development secrets %s from %s",
                ", ".join(f.upper() for f in missing),
                path.resolve(),
            )
        return self.model_copy(update={f: SecretStr(stored[f]) for f in missing})
