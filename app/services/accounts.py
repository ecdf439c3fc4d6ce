"""The account use cases of the public API: register, log in, change the password.

Each takes plain values and the current time, runs its writes in one transaction of the store it was built with,
and returns a small result for the transport to render; failures are ``app.errors`` raised before or inside the
transaction (which then rolls back whole).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime

from app.errors import (
    BLOCKED,
    CURRENT_PASSWORD_INVALID,
    INVALID_LOGIN,
    NOT_CONFIRMED,
    TAKEN,
    AppError,
    ApplicationError,
    ValidationError,
)
from app.models.audit import Event
from app.services import users
from app.services.client import Client
from app.services.hashing import PasswordHasher
from app.services.mail import MailError
from app.services.recovery import RecoveryService
from app.services.sessions import RefreshToken, Revocation, SessionService, Started
from app.store import Conflict, Repositories, Store, UserRecord

logger = logging.getLogger("refreshd.accounts")
CONFIRMATION_NOT_SENT = "Error sending confirmation email"

# A refused login's reason, as the audit trail and the metrics record it.
LOGIN_FAILURES = {
    INVALID_LOGIN: "invalid_credentials",
    BLOCKED: "blocked",
    NOT_CONFIRMED: "unconfirmed",
}


def login_failure(exc: AppError) -> str:
    return LOGIN_FAILURES.get(exc.message, "invalid_credentials")


@dataclass(frozen=True)
class AccountPolicy:
    """What the settings decide for these use cases."""

    email_confirmation: bool
    request_refresh_on_all: bool
    passwords: users.PasswordRules


@dataclass(frozen=True)
class SignedIn:
    user: UserRecord
    session_id: str
    refresh: RefreshToken | None


@dataclass(frozen=True)
class Registered:
    user: UserRecord
    signed_in: SignedIn | None  # None: a confirmation email went out instead


@dataclass(frozen=True)
class PasswordChanged:
    signed_in: SignedIn
    sessions_revoked: int


async def create_account(
    repos: Repositories,
    reg: users.Registration,
    password_hash: str,
    *,
    confirmed: bool,
    now: datetime,
) -> UserRecord:
    """Insert a local account, unless its username or email is taken (checked again here, and the unique indexes
    decide a race: the loser's transaction rolls back whole)."""
    values = users.new_user_values(reg, password_hash, confirmed=confirmed, now=now)
    if await repos.users.taken(values["username"], values["email"]):
        raise ApplicationError(TAKEN)
    try:
        return await repos.users.create(values)
    except Conflict:
        raise ApplicationError(TAKEN) from None


class AccountService:
    def __init__(
        self,
        store: Store,
        hasher: PasswordHasher,
        sessions: SessionService,
        recovery: RecoveryService,
        policy: AccountPolicy,
    ) -> None:
        self.store = store
        self.hasher = hasher
        self.sessions = sessions
        self.recovery = recovery
        self.policy = policy

    async def register(
        self,
        reg: users.Registration,
        client: Client,
        *,
        now: datetime,
        with_refresh: bool = False,
    ) -> Registered:
        """Create the account and start a session, or, with EMAIL_CONFIRMATION on, mail a confirmation link.
        The session has a refresh token with ``with_refresh`` or REQUEST_REFRESH_ON_ALL."""
        users.check_registration(reg, self.policy.passwords)
        # Refuse a taken name before paying for a hash. One turn of the anonymous hashing cap covers the look-up
        # too: a flood holds as many database connections as hashing threads, not one each.
        async with self.hasher.anonymous_turn():
            username, email = (
                users.normalize_username(reg.username),
                users.normalize_email(reg.email),
            )
            if await self.store.users.taken(username, email):
                raise ApplicationError(TAKEN)
            password_hash = await self.hasher.hash(reg.password, anonymous=True)
        confirm = self.policy.email_confirmation
        async with self.store.transaction() as tx:
            user = await create_account(tx, reg, password_hash, confirmed=not confirm, now=now)
            await tx.audit.record(
                Event.REGISTERED,
                now=now,
                user_id=user.id,
                ip=client.ip,
                user_agent=client.short_user_agent,
            )
            if confirm:
                code = await self.recovery.issue_confirmation(tx, user.id, now=now)
            else:
                started = await self._start(
                    tx, user, password_hash, client, now=now, with_refresh=with_refresh
                )
                return Registered(user, SignedIn(user, started.session_id, started.refresh))
        # The account and its code are committed before the email goes: a failed send loses nothing, and
        # send-email-confirmation can try again.
        try:
            await self.recovery.mail_confirmation(user, code)
        except MailError as exc:
            logger.error("confirmation email for new user %s not delivered: %s", user.id, exc)
            raise ApplicationError(CONFIRMATION_NOT_SENT) from None
        return Registered(user, None)

    async def _start(
        self,
        repos: Repositories,
        user: UserRecord,
        verified_hash: str,
        client: Client,
        *,
        now: datetime,
        with_refresh: bool,
    ) -> Started:
        started = await self.sessions.start(
            repos,
            user.id,
            verified_hash,
            client,
            now=now,
            with_refresh=with_refresh or self.policy.request_refresh_on_all,
            audited=False,
        )
        assert started is not None  # the transaction wrote this account's hash itself
        return started

    async def login(
        self,
        identifier: str,
        password: str,
        client: Client,
        *,
        now: datetime,
        with_refresh: bool,
        device_id: str | None = None,
    ) -> SignedIn:
        """Check the credentials and start a session (on the client's ``device_id``, if it names one).
        ``identifier`` is an email (any case) or a username, in NFKC form. A refusal is audited, then raised."""
        candidate = await self.store.users.login_candidate(users.LOCAL, identifier)
        try:
            user, upgraded_hash = await users.check_credentials(
                self.hasher,
                candidate,
                password,
                email_confirmation=self.policy.email_confirmation,
            )
        except AppError as exc:
            await self.store.audit.record(
                Event.LOGIN_FAILED,
                now=now,
                user_id=candidate.id if candidate else None,
                ip=client.ip,
                user_agent=client.short_user_agent,
                reason=login_failure(exc),
            )
            raise
        verified_hash = user.password_hash or ""
        with_refresh = with_refresh or self.policy.request_refresh_on_all
        # One commit either way: the session alone (one statement with its audit row), or with the re-hash of a
        # Strapi (bcrypt) password, now that it is known, in the same transaction.
        unit = self.store.transaction() if upgraded_hash else contextlib.nullcontext(self.store)
        async with unit as repos:
            started = await self.sessions.start(
                repos,
                user.id,
                verified_hash,
                client,
                now=now,
                with_refresh=with_refresh,
                audited=True,
                device_id=device_id,
            )
            if started is not None and upgraded_hash:
                # Conditional on the verified hash, so a concurrent change wins.
                await repos.users.upgrade_hash(user.id, verified_hash, upgraded_hash)
        if started is None:
            raise ValidationError(
                INVALID_LOGIN
            )  # changed or blocked while the password was checked
        return SignedIn(user, started.session_id, started.refresh)

    async def change_password(
        self,
        user: UserRecord,
        session_id: str,
        current_password: str,
        new_password: str,
        client: Client,
        *,
        now: datetime,
    ) -> PasswordChanged:
        """Every other session of the user is revoked; this one gets fresh refresh-token material if it has
        any."""
        new_hash = await users.prepare_password_change(
            self.hasher, user, current_password, new_password, self.policy.passwords
        )
        async with self.store.transaction() as tx:
            changed = await tx.users.set_password(user.id, user.password_hash, new_hash, now=now)
            if changed is None:
                raise ValidationError(CURRENT_PASSWORD_INVALID)  # changed by someone else meanwhile
            revoked = await tx.sessions.revoke_all(
                user.id, reason=Revocation.PASSWORD_CHANGED.value, now=now, keep=session_id
            )
            await tx.audit.record(
                Event.PASSWORD_CHANGED,
                now=now,
                user_id=user.id,
                session_id=session_id,
                ip=client.ip,
                user_agent=client.short_user_agent,
                sessions_revoked=revoked,
            )
            refresh = await self.sessions.renew_after_password_change(
                tx, user.id, session_id, now=now
            )
        return PasswordChanged(SignedIn(changed, session_id, refresh), revoked)
