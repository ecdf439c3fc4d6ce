"""Everything a request needs, built once per app from its settings and owned by the app's lifespan: the store,
and the services built on it."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network

from app.api.ratelimit import RateLimiter
from app.api.transport import TokenTransport
from app.clock import Clock
from app.observability import Metrics
from app.security.codes import derive_key
from app.security.passwords import Argon2Params
from app.security.tokens import SigningKeys
from app.services.accounts import AccountPolicy, AccountService
from app.services.admin import AdminService
from app.services.hashing import PasswordHasher
from app.services.key_file import LoadedKeys, published_keys
from app.services.mail import DisabledMailer, Mailer, SmtpConfig, Templates, build_mailer
from app.services.recovery import RecoveryPolicy, RecoveryService
from app.services.sessions import Lifetimes, SessionService
from app.services.tokens import TokenKeys
from app.services.users import PasswordRules
from app.settings import Settings
from app.store import Store
from app.store.warm import warm


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


def password_rules(settings: Settings) -> PasswordRules:
    return PasswordRules(settings.password_min_length, settings.password_max_bytes)


def token_keys(settings: Settings, signing: LoadedKeys | None) -> TokenKeys:
    # Switching JWT_ALGORITHM from HS256 to ES256 ends no session: refresh tokens are still HS256 (see
    # Settings.refresh_algorithm), and the access tokens are refreshed.
    return TokenKeys(
        published=published_keys(settings, signing),
        refresh=SigningKeys.hmac(
            settings.refresh_jwt_secret.get_secret_value(), settings.refresh_algorithm
        ),
        access_ttl=settings.jwt_expires_in,
    )


def lifetimes(settings: Settings) -> Lifetimes:
    return Lifetimes(
        access=settings.jwt_expires_in,
        refresh_idle=settings.refresh_token_expires_in,
        session_max=settings.session_max_age,
        reuse_grace=settings.refresh_token_reuse_grace,
    )


def password_hasher(settings: Settings, metrics: Metrics | None = None) -> PasswordHasher:
    floor = settings.login_failure_floor_ms
    return PasswordHasher(
        argon2_params(settings),
        workers=settings.hash_pool_size,
        anonymous_limit=settings.hash_anonymous_limit,
        observe=metrics.observe_password_hash if metrics else None,
        floor=None if floor is None else floor / 1000,
    )


@dataclass
class Services:
    """The use cases, built once on one store: what routers and the command line call."""

    store: Store
    hasher: PasswordHasher
    sessions: SessionService
    accounts: AccountService
    recovery: RecoveryService
    admin: AdminService

    @classmethod
    def build(
        cls,
        settings: Settings,
        store: Store,
        hasher: PasswordHasher,
        mailer: Mailer,
        signing: LoadedKeys | None = None,
    ) -> Services:
        rules = password_rules(settings)
        sessions = SessionService(
            store,
            token_keys(settings, signing),
            lifetimes(settings),
            rotate=settings.refresh_token_rotation,
        )
        recovery = RecoveryService(
            store=store,
            hasher=hasher,
            sessions=sessions,
            mailer=mailer,
            # Loaded now, so a broken template stops the start, not the first email.
            templates=Templates.load(settings.mail_templates),
            policy=RecoveryPolicy(
                reset_link_base=settings.reset_link_base,
                confirmation_link_base=(
                    f"{settings.public_url.rstrip('/')}/api/auth/email-confirmation"
                ),
                reset_ttl=settings.reset_password_ttl,
                confirmation_ttl=settings.email_confirmation_ttl,
                request_refresh_on_all=settings.request_refresh_on_all,
                passwords=rules,
            ),
            code_key=derive_key(settings.jwt_secret.get_secret_value()),
        )
        policy = AccountPolicy(
            email_confirmation=settings.email_confirmation,
            request_refresh_on_all=settings.request_refresh_on_all,
            passwords=rules,
        )
        return cls(
            store=store,
            hasher=hasher,
            sessions=sessions,
            accounts=AccountService(store, hasher, sessions, recovery, policy),
            recovery=recovery,
            admin=AdminService(store, access_ttl=settings.jwt_expires_in),
        )

    async def close(self) -> None:
        await self.store.close()
        self.hasher.close()


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    metrics: Metrics
    services: Services
    limiter: RateLimiter
    trusted_proxies: list[IPv4Network | IPv6Network]
    transport: TokenTransport

    @property
    def store(self) -> Store:
        return self.services.store

    @classmethod
    def start(
        cls,
        settings: Settings,
        clock: Clock,
        metrics: Metrics | None,
        signing: LoadedKeys | None,
    ) -> Runtime:
        """``signing``: the ES256/RS256 key set as the app's factory loaded and checked it (None: HMAC)."""
        metrics = metrics or Metrics()
        store = Store.open(settings)
        warm(store.database)
        services = Services.build(
            settings, store, password_hasher(settings, metrics), mailer_for(settings), signing
        )
        return cls(
            settings=settings,
            clock=clock,
            metrics=metrics,
            services=services,
            limiter=RateLimiter(settings, clock=clock, metrics=metrics),
            trusted_proxies=[ip_network(p, strict=False) for p in settings.trusted_proxies],
            transport=TokenTransport(settings, services.sessions.keys),
        )

    async def stop(self) -> None:
        await self.services.close()
