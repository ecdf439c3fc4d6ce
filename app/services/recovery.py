"""Password reset and email confirmation: one-time codes mailed to the account's address.

Codes are single use (consumed by one conditional UPDATE), expire, and a new code for the same purpose retires the
previous one; only their keyed hash is stored. Forgot-password and re-sending a confirmation run after the
response has gone (``request_reset``, ``resend_confirmation``): neither the answer nor its timing tells whether an
account exists, and their failures are logged, never shown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from app.errors import BLOCKED, ApplicationError, ValidationError
from app.models.audit import Event
from app.security import codes
from app.services import mail, users
from app.services.client import Client
from app.services.hashing import PasswordHasher
from app.services.sessions import Revocation, SessionService, Started
from app.store import Repositories, Store, UserRecord

logger = logging.getLogger("refreshd.account")

INCORRECT_CODE = "Incorrect code provided"
INVALID_TOKEN = "Invalid token"  # noqa: S105 - a message


class Purpose(StrEnum):
    RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose, not a secret
    CONFIRM_EMAIL = "email_confirmation"


@dataclass(frozen=True)
class RecoveryPolicy:
    reset_link_base: str  # the frontend's reset page; the code is appended as ?code=
    confirmation_link_base: str  # this service's confirmation route; ?confirmation= is appended
    reset_ttl: timedelta
    confirmation_ttl: timedelta
    request_refresh_on_all: bool
    passwords: users.PasswordRules


@dataclass(frozen=True)
class PasswordReset:
    user: UserRecord
    started: Started
    sessions_revoked: int


@dataclass
class RecoveryService:
    store: Store
    hasher: PasswordHasher
    sessions: SessionService
    mailer: mail.Mailer
    templates: mail.Templates
    policy: RecoveryPolicy
    code_key: bytes = field(repr=False)

    def _hash(self, code: str) -> str | None:
        if not code or len(code) > codes.MAX_CODE_LENGTH:
            return None
        return codes.hash_code(self.code_key, code)

    async def _issue(
        self, repos: Repositories, user_id: int, purpose: Purpose, *, now: datetime, ttl: timedelta
    ) -> str:
        code = codes.new_code()
        await repos.codes.issue(
            user_id,
            purpose.value,
            codes.hash_code(self.code_key, code),
            now=now,
            expires_at=now + ttl,
        )
        return code

    async def issue_confirmation(self, repos: Repositories, user_id: int, *, now: datetime) -> str:
        """A new confirmation code, inside the caller's transaction; mail it once that commits."""
        ttl = self.policy.confirmation_ttl
        return await self._issue(repos, user_id, Purpose.CONFIRM_EMAIL, now=now, ttl=ttl)

    async def mail_confirmation(self, user: UserRecord, code: str) -> None:
        message = mail.render_confirmation(
            self.templates,
            to=user.email,
            username=user.username,
            url=f"{self.policy.confirmation_link_base}?confirmation={code}",
            expires_in=self.policy.confirmation_ttl,
        )
        await self.mailer.send(message)

    async def send_confirmation(self, user: UserRecord, *, now: datetime) -> None:
        """Issue a confirmation code (committed first: a failed send loses nothing) and mail it."""
        async with self.store.transaction() as tx:
            code = await self.issue_confirmation(tx, user.id, now=now)
        await self.mail_confirmation(user, code)

    async def request_reset(self, email: str, *, now: datetime) -> None:
        """Mail a reset link to a known, non-blocked local account; nothing otherwise. Never raises."""
        ttl = self.policy.reset_ttl
        try:
            async with self.store.transaction() as tx:
                user = await tx.users.local_by_email(email)
                if user is None or user.blocked:
                    return
                code = await self._issue(tx, user.id, Purpose.RESET_PASSWORD, now=now, ttl=ttl)
            message = mail.render_reset(
                self.templates,
                to=user.email,
                username=user.username,
                url=f"{self.policy.reset_link_base}?code={code}",
                expires_in=ttl,
            )
            await self.mailer.send(message)
        except mail.MailError as exc:
            logger.error("password-reset email not delivered: %s", exc)
        except Exception:
            logger.exception("password-reset request failed")

    async def resend_confirmation(self, email: str, *, now: datetime) -> None:
        """A new confirmation link for an unconfirmed, non-blocked local account. Never raises."""
        try:
            user = await self.store.users.local_by_email(email)
            if user is None or user.confirmed or user.blocked:
                return
            await self.send_confirmation(user, now=now)
        except mail.MailError as exc:
            logger.error("confirmation email not delivered: %s", exc)
        except Exception:
            logger.exception("confirmation re-send failed")

    async def reset_password(
        self, code: str, password: str, client: Client, *, now: datetime
    ) -> PasswordReset:
        """Set a new password with a reset code: every session of the account is revoked, and a new one starts."""
        code_hash = self._hash(code)
        purpose = Purpose.RESET_PASSWORD.value
        if code_hash is None or not await self.store.codes.usable(code_hash, purpose, now=now):
            raise ValidationError(INCORRECT_CODE)
        users.check_password_policy(password, self.policy.passwords)
        new_hash = await self.hasher.hash(password, anonymous=True)
        audit = {"ip": client.ip, "user_agent": client.short_user_agent}
        async with self.store.transaction() as tx:
            user_id = await tx.codes.consume(code_hash, purpose, now=now)
            user = await tx.users.replace_password(user_id, new_hash, now=now) if user_id else None
            if user is None:
                raise ValidationError(INCORRECT_CODE)  # used or expired meanwhile
            if user.blocked:
                raise ApplicationError(
                    BLOCKED
                )  # rolls back: the code stays unused, the password unchanged
            if not user.confirmed:
                # The code reached this address's mailbox, as a confirmation link would have: a successful reset
                # proves it, so confirm it now. Refusing the session instead would leave an owner who just set a
                # password unable to use it until a second email arrived.
                user = await tx.users.confirm(user.id, now=now) or user
                await tx.audit.record(Event.EMAIL_CONFIRMED, now=now, user_id=user.id, **audit)
            revoked = await tx.sessions.revoke_all(
                user.id, reason=Revocation.PASSWORD_RESET.value, now=now
            )
            await tx.audit.record(
                Event.PASSWORD_RESET, now=now, user_id=user.id, sessions_revoked=revoked, **audit
            )
            started = await self.sessions.start(
                tx,
                user.id,
                new_hash,
                client,
                now=now,
                with_refresh=self.policy.request_refresh_on_all,
                audited=False,
            )
            assert (
                started is not None
            )  # this transaction set the hash and saw the account unblocked
        return PasswordReset(user, started, revoked)

    async def confirm_email(self, code: str, client: Client, *, now: datetime) -> None:
        """Confirm the address a confirmation code was mailed to; ``INVALID_TOKEN`` if the code is not usable."""
        code_hash = self._hash(code)
        user_id = None
        if code_hash is not None:
            async with self.store.transaction() as tx:
                user_id = await tx.codes.consume(code_hash, Purpose.CONFIRM_EMAIL.value, now=now)
                if user_id is not None:
                    await tx.users.confirm(user_id, now=now)
                    await tx.audit.record(
                        Event.EMAIL_CONFIRMED,
                        now=now,
                        user_id=user_id,
                        ip=client.ip,
                        user_agent=client.short_user_agent,
                    )
        if user_id is None:
            raise ValidationError(INVALID_TOKEN)
