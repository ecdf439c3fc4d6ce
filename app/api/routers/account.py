"""Password reset and email confirmation (Strapi ``users-permissions`` paths).

Forgot-password and send-email-confirmation answer at once, the same way for every address, and do their work
(look-up, code, email) after the response: neither the body nor the time taken tells whether an account exists.
"""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Query
from fastapi.responses import JSONResponse, RedirectResponse

from app.api.deps import ClientDep, Now, RuntimeDep, rate_limit, rate_limit_by_email
from app.api.docs import errors
from app.errors import ValidationError
from app.schemas.auth import (
    AuthResponse,
    EmailRequest,
    ForgotPasswordRequest,
    OkResponse,
    ResetPasswordRequest,
    SentResponse,
)
from app.services import users
from app.services.sessions import Revocation

router = APIRouter(prefix="/api/auth", tags=["account"])


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
    recovery = runtime.services.recovery
    background.add_task(recovery.request_reset, users.normalize_email(body.email), now=now)
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
    reset = await runtime.services.recovery.reset_password(
        body.code, body.password, client, now=now
    )
    runtime.metrics.count_revoked(Revocation.PASSWORD_RESET.value, reset.sessions_revoked)
    started = reset.started
    return runtime.transport.signed_in(reset.user, started.session_id, started.refresh, now=now)


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
    await runtime.services.recovery.confirm_email(confirmation, client, now=now)
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
    recovery = runtime.services.recovery
    background.add_task(recovery.resend_confirmation, users.normalize_email(body.email), now=now)
    return JSONResponse({"email": body.email, "sent": True})
