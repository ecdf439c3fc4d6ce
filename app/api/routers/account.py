"""Password reset and email confirmation (Strapi ``users-permissions`` paths).

Forgot-password and send-email-confirmation answer at once, the same way for every address, and do their work
(look-up, code, email) after the response: neither the body nor the time taken tells whether an account exists.
"""

from __future__ import annotations

import logging
from datetime import datetime

from fastapi import APIRouter, BackgroundTasks, Depends, Query
from fastapi.responses import JSONResponse, RedirectResponse

from app.api import transport
from app.api.deps import ClientDep, Now, RuntimeDep, rate_limit, rate_limit_by_email
from app.api.docs import errors
from app.errors import BLOCKED, ApplicationError, ValidationError
from app.runtime import Runtime
from app.schemas.auth import (
    AuthResponse,
    EmailRequest,
    ForgotPasswordRequest,
    OkResponse,
    ResetPasswordRequest,
    SentResponse,
)
from app.services import accounts, audit, mail, sessions, users
from app.services.accounts import Purpose
from app.services.audit import Event
from app.services.sessions import Revocation

router = APIRouter(prefix="/api/auth", tags=["account"])
logger = logging.getLogger("refreshd.account")

INCORRECT_CODE = "Incorrect code provided"
INVALID_TOKEN = "Invalid token"  # noqa: S105 - a message


def confirmation_link(runtime: Runtime, code: str) -> str:
    base = runtime.settings.public_url.rstrip("/")
    return f"{base}/api/auth/email-confirmation?confirmation={code}"


async def send_confirmation(
    runtime: Runtime, user_id: int, email: str, username: str, now: datetime
) -> None:
    """Issue a confirmation code (committed first: a failed send loses nothing) and mail it."""
    settings = runtime.settings
    async with runtime.db.write() as session:
        code = await accounts.issue_code(
            session,
            runtime.code_key,
            user_id,
            Purpose.CONFIRM_EMAIL,
            now=now,
            ttl=settings.email_confirmation_ttl,
        )
    message = mail.render_confirmation(
        runtime.templates,
        to=email,
        username=username,
        url=confirmation_link(runtime, code),
        expires_in=settings.email_confirmation_ttl,
    )
    await runtime.mailer.send(message)


async def _deliver_reset(runtime: Runtime, email: str, now: datetime) -> None:
    settings = runtime.settings
    try:
        async with runtime.db.write() as session:
            user = await accounts.find_local_user_by_email(session, email)
            if user is None or user.blocked:
                return
            code = await accounts.issue_code(
                session,
                runtime.code_key,
                user.id,
                Purpose.RESET_PASSWORD,
                now=now,
                ttl=settings.reset_password_ttl,
            )
        message = mail.render_reset(
            runtime.templates,
            to=user.email,
            username=user.username,
            url=f"{settings.reset_link_base}?code={code}",
            expires_in=settings.reset_password_ttl,
        )
        await runtime.mailer.send(message)
    except mail.MailError as exc:
        logger.error("password-reset email not delivered: %s", exc)
    except Exception:
        logger.exception("password-reset request failed")


async def _deliver_confirmation(runtime: Runtime, email: str, now: datetime) -> None:
    try:
        async with runtime.db.read() as session:
            user = await accounts.find_local_user_by_email(session, email)
        if user is None or user.confirmed or user.blocked:
            return
        await send_confirmation(runtime, user.id, user.email, user.username, now)
    except mail.MailError as exc:
        logger.error("confirmation email not delivered: %s", exc)
    except Exception:
        logger.exception("confirmation re-send failed")


@router.post(
    "/forgot-password",
    response_model=OkResponse,
    responses=errors(400, 413, 429, 500),
    dependencies=[Depends(rate_limit_by_email)],
    summary="Email a password-reset link",
)
async def forgot_password(
    body: ForgotPasswordRequest, runtime: RuntimeDep, now: Now, background: BackgroundTasks
) -> JSONResponse:
    """Always `{"ok": true}`. A known, non-blocked account gets an email with a single-use link that expires
    (`RESET_PASSWORD_TTL`); asking again retires the previous link."""
    background.add_task(_deliver_reset, runtime, users.normalize_email(body.email), now)
    return JSONResponse({"ok": True})


@router.post(
    "/reset-password",
    response_model=AuthResponse,
    response_model_exclude_none=True,
    responses=errors(400, 413, 429, 500),
    dependencies=[Depends(rate_limit)],
    summary="Set a new password with the code from the reset email",
)
async def reset_password(
    body: ResetPasswordRequest, runtime: RuntimeDep, now: Now, client: ClientDep
) -> JSONResponse:
    """Every session of the account is revoked; the answer carries a new session's access token."""
    settings = runtime.settings
    async with runtime.db.read() as session:
        valid = await accounts.code_is_valid(
            session, runtime.code_key, body.code, Purpose.RESET_PASSWORD, now=now
        )
    if not valid:
        raise ValidationError(INCORRECT_CODE)
    users.check_password_policy(
        body.password,
        min_length=settings.password_min_length,
        max_bytes=settings.password_max_bytes,
    )
    new_hash = await runtime.hasher.hash(body.password, anonymous=True)
    async with runtime.db.write() as session:
        user_id = await accounts.consume_code(
            session, runtime.code_key, body.code, Purpose.RESET_PASSWORD, now=now
        )
        user = (
            await accounts.replace_password(session, user_id, new_hash, now=now)
            if user_id
            else None
        )
        if user is None:
            raise ValidationError(INCORRECT_CODE)  # used or expired meanwhile
        if user.blocked:
            raise ApplicationError(
                BLOCKED
            )  # rolls back: the code stays unused, the password unchanged
        if not user.confirmed:
            # The code reached this address's mailbox, as a confirmation link would have: a successful reset
            # proves it, so confirm it now. Refusing the session instead would leave an owner who just set a
            # password unable to use it until a second email arrived (and handing one out unconfirmed gave a
            # refresh token that worked while /users/me answered 401).
            await accounts.confirm_email(session, user.id, now=now)
            await audit.record(
                session, Event.EMAIL_CONFIRMED, now=now, user_id=user.id, client=client
            )
            await session.refresh(user)
        revoked = await sessions.revoke_user_sessions(
            session, user.id, reason=Revocation.PASSWORD_RESET, now=now
        )
        runtime.metrics.count_revoked(Revocation.PASSWORD_RESET.value, revoked)
        await audit.record(
            session,
            Event.PASSWORD_RESET,
            now=now,
            user_id=user.id,
            client=client,
            sessions_revoked=revoked,
        )
        started = await sessions.start_session(
            session,
            runtime.keys,
            user.id,
            client,
            now=now,
            lifetimes=runtime.lifetimes,
            with_refresh=settings.request_refresh_on_all,
        )
    return transport.signed_in(runtime, user, started.session_id, started.refresh, now=now)


@router.get(
    "/email-confirmation",
    status_code=302,
    response_class=RedirectResponse,
    responses={
        302: {"description": "Confirmed: redirect to EMAIL_CONFIRMATION_REDIRECT"},
        **errors(400, 500),
    },
    summary="Confirm an email address with the code from the confirmation email",
)
async def email_confirmation(
    runtime: RuntimeDep,
    now: Now,
    client: ClientDep,
    confirmation: str | None = Query(default=None, max_length=256),
) -> RedirectResponse:
    if not confirmation:
        raise ValidationError.from_field_errors(
            [(["confirmation"], "confirmation is a required field")]
        )
    async with runtime.db.write() as session:
        user_id = await accounts.consume_code(
            session, runtime.code_key, confirmation, Purpose.CONFIRM_EMAIL, now=now
        )
        if user_id is not None:
            await accounts.confirm_email(session, user_id, now=now)
            await audit.record(
                session, Event.EMAIL_CONFIRMED, now=now, user_id=user_id, client=client
            )
    if user_id is None:
        raise ValidationError(INVALID_TOKEN)
    return RedirectResponse(runtime.settings.email_confirmation_redirect, status_code=302)


@router.post(
    "/send-email-confirmation",
    response_model=SentResponse,
    responses=errors(400, 413, 429, 500),
    dependencies=[Depends(rate_limit_by_email)],
    summary="Send the confirmation email again",
)
async def send_email_confirmation(
    body: EmailRequest, runtime: RuntimeDep, now: Now, background: BackgroundTasks
) -> JSONResponse:
    """Always `{"email": <as sent>, "sent": true}`: an unconfirmed account gets a new link (the old one stops
    working); confirmed, blocked or unknown addresses get nothing, and the answer does not say which."""
    background.add_task(_deliver_confirmation, runtime, users.normalize_email(body.email), now)
    return JSONResponse({"email": body.email, "sent": True})
