"""Configuration from the environment (or a ``.env`` file), named as the refresh-token plugin names it.

``Settings`` and its validation live here; the helpers it uses are in ``app/config/`` (signing-key checks and the
development secrets file, URL normalisation, the production start checks) and are re-exported from here.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from limits import parse_many
from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.config.compat import StrapiSessionSettings
from app.config.docs import DocsSettings
from app.config.production import production_problems
from app.config.secret_keys import (
    MIN_SECRET_BYTES,
    SECRET_FIELDS,
    WELL_KNOWN_SECRETS,
    read_secrets,
    secret_problem,
    write_secrets,
)
from app.config.urls import domain_of, normalize_database_url, url_origin
from app.durations import format_duration, parse_duration
from app.security.passwords import BCRYPT_MAX_BYTES

__all__ = [
    "MIN_SECRET_BYTES",
    "SECRET_FIELDS",
    "WELL_KNOWN_SECRETS",
    "DatabaseSettings",
    "Duration",
    "Settings",
    "cookie_domain",
    "normalize_database_url",
    "secret_problem",
    "url_origin",
]

logger = logging.getLogger("refreshd.settings")

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


def cookie_domain(settings: Settings) -> str | None:
    """The cookie's Domain: COOKIE_DOMAIN, else the host of PRODUCTION_URL (a URL or a bare host).

    None for localhost and IP addresses, where browsers refuse a Domain attribute.
    """
    return domain_of(settings.cookie_domain or settings.production_url)


class DatabaseSettings(BaseSettings):
    """Just what migrations need: they run before, and apart from, the service's own checks."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
    )

    database_url: str = "sqlite+aiosqlite:///./refreshd.db"

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str) -> str:
        return normalize_database_url(value)


class Settings(DatabaseSettings, DocsSettings, StrapiSessionSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # A refused start must not print (part of) a signing key in its error.
        hide_input_in_errors=True,
    )

    environment: Literal["development", "production", "test"] = "development"
    # The process's one PostgreSQL pool: connections for requests (one more is kept for housekeeping batches).
    db_pool_size: int = Field(default=20, ge=1, le=500)
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
    cookie_name: str = Field(default="refreshToken", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    cookie_secure: bool | None = Field(
        default=None, description="Default: on when PRODUCTION_URL is https"
    )
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    cookie_domain: str | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    audit_retention: Duration = timedelta(days=90)
    session_purge_interval: Duration = timedelta(hours=1)
    session_purge_batch: int = Field(default=100, ge=1, le=100_000)

    rate_limit_enabled: bool = True
    rate_limit_max: int = Field(
        default=10, ge=1, description="requests per window, per route and key"
    )
    rate_limit_interval: Duration = timedelta(seconds=60)
    rate_limit_ipv6_prefix: int = Field(
        default=64, ge=1, le=128, description="an IPv6 client counts by its network of this size"
    )
    rate_limit_per_email: str = Field(
        default="10/minute;20/hour",
        description="per route and email across addresses (register, forgot password, send confirmation)",
    )
    rate_limit_login_attempts: str = Field(
        default="5/minute;10/10 minutes;20/hour",
        description="login attempts per account across addresses, from addresses it never logged in from",
    )
    redis_url: str | None = Field(default=None, description="shares rate limits across instances")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_size: int = Field(default=64 * 1024, ge=1024, description="bytes")

    allow_register: bool = True
    email_confirmation: bool = False
    password_min_length: int = Field(default=6, ge=1, le=BCRYPT_MAX_BYTES)
    password_max_bytes: int = Field(
        default=BCRYPT_MAX_BYTES,
        ge=8,
        le=BCRYPT_MAX_BYTES,
        description="bcrypt's limit is the ceiling",
    )

    public_url: str = Field(
        default="http://127.0.0.1:8000", description="this service's own URL, for links in emails"
    )
    reset_password_url: str | None = Field(
        default=None, description="the frontend's reset page; the link adds ?code=<code>"
    )
    reset_password_ttl: Duration = timedelta(hours=1)
    email_confirmation_ttl: Duration = timedelta(days=3)
    email_confirmation_redirect: str = "/"
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_use_tls: bool = False
    smtp_timeout: float = Field(default=10.0, gt=0, le=300)
    mail_from: str = "refreshd <no-reply@localhost>"
    mail_outbox: Path | None = Field(default=None, description="development: also write mails here")
    mail_templates: Path | None = None

    argon2_memory_cost: int = Field(default=19456, ge=19456, description="KiB; OWASP minimum")
    argon2_time_cost: int = Field(default=2, ge=2)
    argon2_parallelism: int = Field(default=1, ge=1)
    hash_workers: int = Field(default=0, ge=0, description="0 means one per CPU core")
    hash_anonymous_concurrency: int = Field(
        default=0,
        ge=0,
        description="hashes for register and reset at once; 0 means half the pool, at least 1",
    )
    login_failure_floor_ms: int | None = Field(
        default=None,
        ge=0,
        description="a failed password check takes at least this long; unset: measured at start",
    )

    dev_secrets_file: Path = Path(".refreshd-secrets.json")
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="auto: JSON in production, readable text elsewhere"
    )
    metrics_enabled: bool | None = Field(
        default=None,
        description="serve /metrics; unset: on, but in production only with METRICS_TOKEN or METRICS_PORT",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="/metrics then requires `Authorization: Bearer <METRICS_TOKEN>`"
    )
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="serve /metrics on this port only, its own"
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="the address METRICS_PORT listens on"
    )

    @property
    def metrics_served(self) -> bool:
        """Whether /metrics is served at all. Production keeps it off unless it is guarded (a token) or apart
        (its own port), or METRICS_ENABLED says so explicitly."""
        if self.metrics_enabled is not None:
            return self.metrics_enabled
        guarded = self.metrics_token is not None or self.metrics_port is not None
        return self.environment != "production" or guarded

    @property
    def json_logs(self) -> bool:
        return self.log_format == "json" or (
            self.log_format == "auto" and self.environment == "production"
        )

    @field_validator(
        "production_url",
        "cookie_domain",
        "reset_password_url",
        "smtp_host",
        "smtp_username",
        "smtp_password",
        "mail_outbox",
        "mail_templates",
        "metrics_token",
        "metrics_port",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"TRUSTED_PROXIES: {item!r} is not an IP address or network"
                ) from None
        return value

    @field_validator("rate_limit_per_email", "rate_limit_login_attempts")
    @classmethod
    def _valid_limits(cls, value: str) -> str:
        try:  # the rate limiter's own notation
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a list of limits such as '5/minute;20/hour'"
            ) from None
        return value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _blank_redis(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cookie_samesite", mode="before")
    @classmethod
    def _lower_samesite(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_lifetimes(self) -> Settings:
        if self.refresh_token_reuse_grace >= self.refresh_token_expires_in:
            raise ValueError(
                "REFRESH_TOKEN_REUSE_GRACE must be shorter than REFRESH_TOKEN_EXPIRES_IN"
            )
        if self.refresh_token_expires_in > self.session_max_age:
            raise ValueError("REFRESH_TOKEN_EXPIRES_IN must not be longer than SESSION_MAX_AGE")
        if self.jwt_expires_in > self.session_max_age:
            raise ValueError("JWT_EXPIRES_IN must not be longer than SESSION_MAX_AGE")
        return self

    @model_validator(mode="after")
    def _check_cookie_settings(self) -> Settings:
        # Browsers drop SameSite=None cookies without Secure; refuse at start, not at the first login.
        if self.cookie_samesite == "none" and not self.cookie_is_secure:
            raise ValueError("COOKIE_SAMESITE=none requires Secure cookies (COOKIE_SECURE=true)")
        cookie_domain(self)  # raises on a domain that cannot be put in a header
        return self

    @property
    def reset_link_base(self) -> str:
        return self.reset_password_url or f"{self.public_url.rstrip('/')}/reset-password"

    @property
    def cookie_is_secure(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return bool(self.production_url and self.production_url.lower().startswith("https://"))

    @property
    def allowed_origins(self) -> list[str]:
        """Origins that may use the refresh cookie and CORS with credentials."""
        origins = list(self.cors_origins)
        if self.production_url and (origin := url_origin(self.production_url)):
            origins.append(origin)
        return list(dict.fromkeys(origins))

    @model_validator(mode="after")
    def _refuse_weak_secrets_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        problems = production_problems(self)
        if problems:
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def hash_pool_size(self) -> int:
        return self.hash_workers or os.cpu_count() or 1

    @property
    def hash_anonymous_limit(self) -> int:
        return self.hash_anonymous_concurrency or max(1, self.hash_pool_size // 2)

    def with_development_secrets(self) -> Settings:
        """Fill missing secrets outside production from a local file, generating it once.

        Keeping them in a file (git-ignored) means tokens survive a restart during development.
        """
        missing = [f for f in SECRET_FIELDS if not getattr(self, f).get_secret_value()]
        if not missing or self.environment == "production":
            return self
        path = self.dev_secrets_file
        stored = read_secrets(path)
        generated = [f for f in missing if not stored.get(f)]
        if generated:
            stored.update({f: secrets.token_urlsafe(48) for f in generated})
            stored = write_secrets(path, stored, create_only=not path.exists())
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
