"""Local authentication: register and log in (Strapi ``users-permissions`` paths)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from app.api.deps import ClientDep, Now, RuntimeDep
from app.api.docs import errors
from app.errors import REGISTER_DISABLED, ApplicationError
from app.schemas.auth import AuthResponse, LoginRequest, RegisterRequest
from app.schemas.common import user_payload
from app.services import sessions, tokens, users

router = APIRouter(prefix="/api/auth", tags=["auth"])


def registration_open(runtime: RuntimeDep) -> None:
    if not runtime.settings.allow_register:
        raise ApplicationError(REGISTER_DISABLED)


@router.post(
    "/local",
    response_model=AuthResponse,
    response_model_exclude_none=True,
    responses=errors(400, 413, 429, 500),
    summary="Log in with an identifier (email or username) and a password",
)
async def login(
    body: LoginRequest, runtime: RuntimeDep, now: Now, client: ClientDep
) -> JSONResponse:
    """Returns a short-lived access token and the user. Every successful login starts a session."""
    settings = runtime.settings
    async with runtime.db.read() as session:
        candidate = await users.find_for_login(session, body.identifier)
    user, upgraded_hash = await users.check_credentials(
        runtime.hasher, candidate, body.password, email_confirmation=settings.email_confirmation
    )
    async with runtime.db.write() as session:
        started = await sessions.start_session(
            session, user.id, client, now=now, max_age=settings.session_max_age
        )
        if upgraded_hash and user.password_hash:
            await users.upgrade_password_hash(session, user.id, user.password_hash, upgraded_hash)
    jwt = tokens.issue_access_token(runtime.keys, user_id=user.id, session_id=started.id, now=now)
    return JSONResponse({"jwt": jwt, "user": user_payload(user)})


@router.post(
    "/local/register",
    response_model=AuthResponse,
    response_model_exclude_none=True,
    responses=errors(400, 413, 429, 500),
    dependencies=[Depends(registration_open)],
    summary="Register a local account",
)
async def register(
    body: RegisterRequest, runtime: RuntimeDep, now: Now, client: ClientDep
) -> JSONResponse:
    """Creates the account (email stored lower-cased), starts a session and returns its access token."""
    settings = runtime.settings
    registration = users.Registration(body.username, body.email, body.password)
    users.check_registration(registration, password_min_length=settings.password_min_length)
    password_hash = await runtime.hasher.hash(body.password)
    async with runtime.db.write() as session:
        user = await users.create_user(
            session,
            registration,
            password_hash,
            confirmed=not settings.email_confirmation,
            now=now,
        )
        started = await sessions.start_session(
            session, user.id, client, now=now, max_age=settings.session_max_age
        )
    jwt = tokens.issue_access_token(runtime.keys, user_id=user.id, session_id=started.id, now=now)
    return JSONResponse({"jwt": jwt, "user": user_payload(user)})
