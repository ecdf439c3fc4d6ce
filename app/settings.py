"""Configuration from the environment (or a ``.env`` file), named as the refresh-token plugin names it.

``Settings`` and its validation live here; the helpers it uses are in ``app/config/`` (signing-key checks and the
development secrets file, URL normalisation, the production start checks) and are re-exported from here.

Longer than the project's 400 lines on purpose: one class holds every setting with its one-line description (the
source of ``.env.example``), so that validation and the production checks see them all together; the settings of
the API docs and of Strapi core's session mode are mixed in from ``app/config/``.
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
    Field,
    SecretStr,
    ValidationError,
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
from app.config.signing import SigningSettings
from app.config.urls import (
    check_database_url,
    check_redis_url,
    check_web_url,
    domain_of,
    normalize_database_url,
    url_origin,
)
from app.durations import Duration
from app.security.passwords import BCRYPT_MAX_BYTES

__all__ = [
    "MIN_SECRET_BYTES",
    "SECRET_FIELDS",
    "WELL_KNOWN_SECRETS",
    "DatabaseSettings",
    "Duration",
    "Settings",
    "cookie_domain",
    "describe_invalid",
    "normalize_database_url",
    "secret_problem",
    "url_origin",
]

logger = logging.getLogger("refreshd.settings")


def describe_invalid(exc: ValidationError) -> str:
    """A refused configuration in one line, each problem led by the setting it is about:
    ``LOG_LEVEL: Input should be 'DEBUG', ...; PRODUCTION_URL: 'x y' is not an http(s) URL``."""
    return "; ".join(
        (f"{'.'.join(str(part) for part in error['loc']).upper()}: " if error["loc"] else "")
        + str(error["msg"]).removeprefix("Value error, ")
        for error in exc.errors()
    )


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

    database_url: str = Field(
        default="sqlite+aiosqlite:///./refreshd.db",
        description="an SQLite file (sqlite:///path/to/file.db; its folder must exist) or "
        "postgresql://user:password@host:5432/database",
    )

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str) -> str:
        return check_database_url(normalize_database_url(value.strip()))


class Settings(DatabaseSettings, DocsSettings, StrapiSessionSettings, SigningSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # A refused start must not print (part of) a signing key in its error.
        hide_input_in_errors=True,
    )

    environment: Literal["development", "production", "test"] = Field(
        default="development",
        description="production refuses to start with missing, short (< 32 bytes), well-known or shared "
        "secrets, and never writes mail links to the log",
    )
    # The process's one PostgreSQL pool: connections for requests (one more is kept for housekeeping batches).
    db_pool_size: int = Field(
        default=20,
        ge=1,
        le=500,
        description="PostgreSQL connections per worker for requests (one more for the purge); keep "
        "workers x (DB_POOL_SIZE + 1) under max_connections",
    )
    sqlite_busy_timeout_ms: int = Field(
        default=5000,
        ge=0,
        description="how long an SQLite writer waits for another process (the CLI, a second worker) "
        "before answering 503",
    )

    jwt_secret: SecretStr = Field(
        default=SecretStr(""),
        description="signs access tokens (with an HS algorithm) and keys reset codes; at least 32 random "
        "bytes: python3 -c 'import secrets; print(secrets.token_urlsafe(48))' (unset: generated in "
        "development)",
    )
    jwt_algorithm: Literal["HS256", "HS384", "HS512", "ES256", "RS256"] = Field(
        default="HS256",
        description="access tokens: HS256, HS384 or HS512 with JWT_SECRET, or ES256 or RS256 with "
        "JWT_SIGNING_KEYS_FILE (other services verify them with /.well-known/jwks.json); verification "
        "accepts only this one",
    )
    jwt_expires_in: Duration = Field(
        default=timedelta(minutes=15), description="access-token lifetime"
    )
    refresh_jwt_secret: SecretStr = Field(
        default=SecretStr(""),
        description="signs refresh tokens: a different key from JWT_SECRET (unset: generated in "
        "development)",
    )
    refresh_jwt_algorithm: Literal["HS256", "HS384", "HS512"] | None = Field(
        default=None,
        description="signs refresh tokens; unset: JWT_ALGORITHM if it is HS256, HS384 or HS512, else HS256 (when "
        "moving from HS384 or HS512 to ES256/RS256, set it to the old one and no session ends)",
    )
    refresh_token_expires_in: Duration = Field(
        default=timedelta(days=30),
        description="idle lifetime of a refresh token (slides with each rotation)",
    )
    session_max_age: Duration = Field(
        default=timedelta(days=90),
        description="absolute lifetime of a session; rotation never extends it",
    )
    refresh_token_reuse_grace: Duration = Field(
        default=timedelta(seconds=10),
        description="a just-replaced refresh token presented again within this window gets the same "
        "successor",
    )
    request_refresh_on_all: bool = Field(
        default=False,
        description="every login (and register) gets a refresh token without asking",
    )
    refresh_token_rotation: bool = Field(
        default=True,
        description="each refresh returns a successor and retires the presented token",
    )
    cookie_response: bool = Field(
        default=False,
        description="the refresh token travels in an HttpOnly cookie instead of the body",
    )
    production_url: str | None = Field(
        default=None,
        description="the frontend's URL or bare host: an allowed origin, the cookie's Domain, and Secure "
        "cookies when https",
    )
    cookie_name: str = Field(
        default="refreshToken",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="the refresh cookie's name",
    )
    cookie_secure: bool | None = Field(
        default=None,
        description="force the cookie's Secure flag on or off (unset: on when PRODUCTION_URL is https)",
    )
    cookie_samesite: Literal["lax", "strict", "none"] = Field(
        default="lax", description="lax, strict, or none (only with Secure cookies)"
    )
    cookie_domain: str | None = Field(
        default=None,
        description="the cookie's Domain (unset: the host of PRODUCTION_URL; none for localhost and IPs)",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated origins allowed CORS with credentials (and the refresh cookie)",
    )
    audit_retention: Duration = Field(
        default=timedelta(days=90), description="audit events older than this are purged"
    )
    session_purge_interval: Duration = Field(
        default=timedelta(hours=1),
        description="how often dead sessions, used codes and old audit events are deleted",
    )
    session_purge_batch: int = Field(
        default=100, ge=1, le=100_000, description="rows deleted per purge batch"
    )

    rate_limit_enabled: bool = Field(
        default=True, description="Strapi's rate limits and the per-address and per-account budgets"
    )
    rate_limit_max: int = Field(
        default=10, ge=1, description="requests per window, per route and key"
    )
    rate_limit_interval: Duration = Field(
        default=timedelta(seconds=60), description="the rate-limit window"
    )
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
    redis_url: str | None = Field(
        default=None,
        description="redis://host:6379/0 shares rate limits across instances (unset: each counts alone)",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated addresses or networks whose X-Forwarded-For is believed",
    )
    max_body_size: int = Field(
        default=64 * 1024, ge=1024, description="bytes; a larger request body gets 413"
    )

    allow_register: bool = Field(
        default=True, description="off: register answers 'Register action is currently disabled'"
    )
    email_confirmation: bool = Field(
        default=False,
        description="new accounts must confirm their email address before they can log in",
    )
    password_min_length: int = Field(
        default=6, ge=1, le=BCRYPT_MAX_BYTES, description="the shortest password accepted"
    )
    password_max_bytes: int = Field(
        default=BCRYPT_MAX_BYTES,
        ge=8,
        le=BCRYPT_MAX_BYTES,
        description="the longest password accepted, in UTF-8 bytes (bcrypt's limit is the ceiling)",
    )

    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="this service's own URL, for the confirmation links in emails",
    )
    reset_password_url: str | None = Field(
        default=None,
        description="set this to your frontend's reset-password page; the emailed link adds ?code=<code> "
        "(unset: PUBLIC_URL/reset-password, a page refreshd does not serve)",
    )
    reset_password_ttl: Duration = Field(
        default=timedelta(hours=1), description="how long a password-reset code works"
    )
    email_confirmation_ttl: Duration = Field(
        default=timedelta(days=3), description="how long an email-confirmation code works"
    )
    email_confirmation_redirect: str = Field(
        default="/", description="where a followed confirmation link sends the browser"
    )
    smtp_host: str | None = Field(
        default=None,
        description="the SMTP server (unset: emails go to the log in development, nowhere in production)",
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="the SMTP server's port")
    smtp_username: str | None = Field(
        default=None, description="SMTP login, with SMTP_PASSWORD (both or neither)"
    )
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password")
    smtp_starttls: bool = Field(
        default=True, description="require STARTTLS (never sends the password in clear)"
    )
    smtp_use_tls: bool = Field(
        default=False, description="implicit TLS from the first byte (port 465) instead of STARTTLS"
    )
    smtp_timeout: float = Field(
        default=10.0, gt=0, le=300, description="seconds one whole send may take"
    )
    mail_from: str = Field(
        default="refreshd <no-reply@localhost>", description="the sender of every email"
    )
    mail_outbox: Path | None = Field(
        default=None, description="development: also write each email here as an .eml file"
    )
    mail_templates: Path | None = Field(
        default=None,
        description="a folder with reset_password.txt / email_confirmation.txt ('Subject: ...', a blank "
        "line, the body with $url, $username, $email, $expires_in)",
    )

    argon2_memory_cost: int = Field(
        default=19456, ge=19456, description="argon2id memory per hash, KiB (OWASP minimum)"
    )
    argon2_time_cost: int = Field(default=2, ge=2, description="argon2id iterations")
    argon2_parallelism: int = Field(default=1, ge=1, description="argon2id lanes")
    hash_workers: int = Field(
        default=0, ge=0, description="password-hashing threads; 0 means one per CPU core"
    )
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

    dev_secrets_file: Path = Field(
        default=Path(".refreshd-secrets.json"),
        description="where development keeps the secrets it generates when JWT_SECRET and "
        "REFRESH_JWT_SECRET are unset",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL"
    )
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
        "refresh_jwt_algorithm",
        "jwt_signing_keys_file",
        "introspection_token",
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
                raise ValueError(f"{item!r} is not an IP address or network") from None
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

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: str | None) -> str | None:
        return None if value is None else check_redis_url(value)

    @field_validator("production_url", "cookie_domain")
    @classmethod
    def _valid_site(cls, value: str | None) -> str | None:
        if value is None:
            return None
        check_web_url(value, bare_host=True)
        domain_of(value)  # a host that cannot be a cookie's Domain
        return value

    @field_validator("public_url", "reset_password_url")
    @classmethod
    def _valid_web_url(cls, value: str | None) -> str | None:
        return None if value is None else check_web_url(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

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
    def refresh_algorithm(self) -> str:
        """Refresh tokens stay HMAC whatever signs access tokens: nobody but refreshd verifies them."""
        if self.refresh_jwt_algorithm is not None:
            return self.refresh_jwt_algorithm
        return "HS256" if self.asymmetric_tokens else self.jwt_algorithm

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
