"""Everything a request needs, built once per app from its settings and owned by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network

from app.api.ratelimit import RateLimiter
from app.clock import Clock
from app.db import Database
from app.observability import Metrics
from app.security.codes import derive_key
from app.security.passwords import Argon2Params
from app.services.hashing import PasswordHasher
from app.services.hotpath import HotPath, create_hot_path
from app.services.mail import DisabledMailer, Mailer, SmtpConfig, Templates, build_mailer
from app.services.sessions import Lifetimes
from app.services.tokens import TokenKeys
from app.settings import Settings


def argon2_params(settings: Settings) -> Argon2Params:
    return Argon2Params(
        memory_cost=settings.argon2_memory_cost,
        time_cost=settings.argon2_time_cost,
        parallelism=settings.argon2_parallelism,
    )


def smtp_config(settings: Settings) -> SmtpConfig | None:
    if not settings.smtp_host:
        return None
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls,
        use_tls=settings.smtp_use_tls,
        timeout=settings.smtp_timeout,
        sender=settings.mail_from,
    )


def mailer_for(settings: Settings) -> Mailer:
    smtp = smtp_config(settings)
    if smtp is None and settings.environment == "production":
        return DisabledMailer()  # the log mailer would write reset links into production logs
    return build_mailer(smtp, outbox=settings.mail_outbox)


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    metrics: Metrics
    db: Database
    hot: HotPath
    hasher: PasswordHasher
    keys: TokenKeys
    lifetimes: Lifetimes
    limiter: RateLimiter
    trusted_proxies: list[IPv4Network | IPv6Network]
    mailer: Mailer
    templates: Templates
    code_key: bytes = field(repr=False)

    @classmethod
    def start(cls, settings: Settings, clock: Clock, metrics: Metrics | None = None) -> Runtime:
        metrics = metrics or Metrics()
        db = Database(settings)
        return cls(
            settings=settings,
            clock=clock,
            metrics=metrics,
            db=db,
            hot=create_hot_path(settings, db.engine.dialect, db.write_gate),
            hasher=PasswordHasher(
                argon2_params(settings),
                workers=settings.hash_pool_size,
                anonymous_limit=settings.hash_anonymous_limit,
                observe=metrics.observe_password_hash,
                floor=(
                    None
                    if settings.login_failure_floor_ms is None
                    else settings.login_failure_floor_ms / 1000
                ),
            ),
            keys=TokenKeys(
                access_key=settings.jwt_secret.get_secret_value(),
                refresh_key=settings.refresh_jwt_secret.get_secret_value(),
                algorithm=settings.jwt_algorithm,
                access_ttl=settings.jwt_expires_in,
            ),
            lifetimes=Lifetimes(
                access=settings.jwt_expires_in,
                refresh_idle=settings.refresh_token_expires_in,
                session_max=settings.session_max_age,
                reuse_grace=settings.refresh_token_reuse_grace,
            ),
            limiter=RateLimiter(settings, clock=clock, metrics=metrics),
            trusted_proxies=[ip_network(p, strict=False) for p in settings.trusted_proxies],
            mailer=mailer_for(settings),
            # Loaded now, so a broken template stops the start, not the first email.
            templates=Templates.load(settings.mail_templates),
            code_key=derive_key(settings.jwt_secret.get_secret_value()),
        )

    async def stop(self) -> None:
        await self.hot.close()
        await self.db.dispose()
        self.hasher.close()
