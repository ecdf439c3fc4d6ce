"""Local authentication: Strapi ``users-permissions`` paths plus the refresh-token plugin's."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter

from app.api import bodies, transport
from app.api.deps import (
    ClientDep,
    CurrentPrincipal,
    Now,
    RuntimeDep,
    rate_limit,
    rate_limit_by_email,
    rate_limit_user,
    runtime_of,
)
from app.api.direct import DirectRoute
from app.api.docs import errors
from app.api.routers import account
from app.errors import (
    BLOCKED,
    INVALID_LOGIN,
    NOT_CONFIRMED,
    REGISTER_DISABLED,
    AppError,
    ApplicationError,
    ForbiddenError,
    RateLimitError,
    UnauthorizedError,
    ValidationError,
)
from app.observability import REFRESH_OUTCOME_BY_CODE, LoginOutcome, Metrics
from app.schemas.auth import (
    AuthResponse,
    ChangePasswordRequest,
    LoginRequest,
    LogoutRequest,
    OkResponse,
    RefreshRequest,
    RefreshResponse,
    RegisteredResponse,
    RegisterRequest,
)
from app.schemas.common import user_payload
from app.services import audit, sessions, tokens, users
from app.services.audit import Event
from app.services.mail import MailError
from app.services.sessions import Refreshed, Refused, Rejection, Revocation
from app.settings import Settings

router = APIRouter(prefix="/api/auth", tags=["auth"])
logger = logging.getLogger("refreshd.auth")
CONFIRMATION_NOT_SENT = "Error sending confirmation email"


_LOGIN_FAILURES: dict[str, LoginOutcome] = {
    INVALID_LOGIN: "invalid_credentials",
    BLOCKED: "blocked",
    NOT_CONFIRMED: "unconfirmed",
}


async def rate_limit_login(request: Request, runtime: RuntimeDep, client: ClientDep) -> None:
    try:
        await rate_limit(request, runtime, client)
    except RateLimitError:
        runtime.metrics.count_login("rate_limited")
        raise


async def registration_open(runtime: RuntimeDep) -> None:
    if not runtime.settings.allow_register:
        raise ApplicationError(REGISTER_DISABLED)


@router.post(
    "/local",
    response_model=AuthResponse,
    response_model_exclude_none=True,
    responses=errors(400, 413, 429, 500),
    dependencies=[Depends(rate_limit_login)],
    summary="Log in with an identifier (email or username) and a password",
)
async def login(
    body: LoginRequest, runtime: RuntimeDep, now: Now, client: ClientDep
) -> JSONResponse:
    """Returns a short-lived access token and the user; with `requestRefresh: true` (or `REQUEST_REFRESH_ON_ALL`)
    also a refresh token, in the body or, in cookie mode, in an HttpOnly cookie. Every login starts a session."""
    settings = runtime.settings
    # NFKC, as usernames and emails are stored: one account (and one wrong-password budget) per spelling.
    identifier = users.normalize_username(body.identifier)
    try:
        # Before the look-up: an unknown identifier is counted, refused and timed like a known one.
        attempt = await runtime.limiter.login_attempt(identifier, client.ip)
    except RateLimitError:
        runtime.metrics.count_login("rate_limited")
        raise
    candidate = await runtime.hot.login_candidate(users.LOCAL, identifier)
    try:
        user, upgraded_hash = await users.check_credentials(
            runtime.hasher, candidate, body.password, email_confirmation=settings.email_confirmation
        )
    except AppError as exc:
        reason = _LOGIN_FAILURES.get(exc.message, "invalid_credentials")
        runtime.metrics.count_login(reason)
        async with runtime.db.write() as session:
            await audit.record(
                session,
                Event.LOGIN_FAILED,
                now=now,
                user_id=candidate.id if candidate else None,
                client=client,
                reason=reason,
            )
        raise
    verified_hash = user.password_hash or ""
    started = await sessions.start_login_session(
        runtime.hot,
        runtime.keys,
        user.id,
        verified_hash,
        client,
        now=now,
        lifetimes=runtime.lifetimes,
        with_refresh=body.requestRefresh or settings.request_refresh_on_all,
    )
    if started is None:
        # Changed or blocked while the password was being checked.
        runtime.metrics.count_login("invalid_credentials")
        raise ValidationError(INVALID_LOGIN)
    if upgraded_hash:
        # A Strapi (bcrypt) hash, re-hashed with argon2 now that the password is known; conditional on the
        # verified hash, so a concurrent change wins.
        async with runtime.db.write() as session:
            await users.upgrade_password_hash(session, user.id, verified_hash, upgraded_hash)
    await runtime.limiter.login_succeeded(attempt)
    runtime.metrics.count_login("success")
    return transport.signed_in(runtime, user, started.session_id, started.refresh, now=now)


@router.post(
    "/local/register",
    response_model=AuthResponse | RegisteredResponse,
    response_model_exclude_none=True,
    responses=errors(400, 413, 429, 500),
    dependencies=[Depends(registration_open), Depends(rate_limit_by_email)],
    summary="Register a local account",
)
async def register(
    body: RegisterRequest, runtime: RuntimeDep, now: Now, client: ClientDep
) -> JSONResponse:
    """Creates the account (email stored lower-cased), starts a session and returns its access token (and a refresh
    token when `REQUEST_REFRESH_ON_ALL` is on). With `EMAIL_CONFIRMATION` on, it returns only `{user}` and emails a
    confirmation link instead."""
    settings = runtime.settings
    registration = users.Registration(body.username, body.email, body.password)
    users.check_registration(
        registration,
        password_min_length=settings.password_min_length,
        password_max_bytes=settings.password_max_bytes,
    )
    # One turn of the anonymous hashing cap covers the look-up too: a flood holds as few database connections as
    # hashing threads, not one each (PostgreSQL forked a backend per overflow connection, beside the logins).
    async with runtime.hasher.anonymous_turn():
        async with runtime.db.read() as session:
            await users.ensure_available(session, body.username, body.email)
        password_hash = await runtime.hasher.hash(body.password, anonymous=True)
    confirm = settings.email_confirmation
    async with runtime.db.write() as session:
        user = await users.create_user(
            session, registration, password_hash, confirmed=not confirm, now=now
        )
        await audit.record(session, Event.REGISTERED, now=now, user_id=user.id, client=client)
        started = None
        if not confirm:
            started = await sessions.start_session(
                session,
                runtime.keys,
                user.id,
                client,
                now=now,
                lifetimes=runtime.lifetimes,
                with_refresh=settings.request_refresh_on_all,
            )
    if started is None:
        # The account is committed before the email goes: a failed send loses nothing, and
        # send-email-confirmation can try again.
        try:
            await account.send_confirmation(runtime, user.id, user.email, user.username, now)
        except MailError as exc:
            logger.error("confirmation email for new user %s not delivered: %s", user.id, exc)
            raise ApplicationError(CONFIRMATION_NOT_SENT) from None
        return transport.private_json({"user": user_payload(user)})
    return transport.signed_in(runtime, user, started.session_id, started.refresh, now=now)


_REFRESH_BODY: TypeAdapter[RefreshRequest | None] = TypeAdapter(RefreshRequest | None)


async def refresh(request: Request) -> JSONResponse:
    """Exchange a refresh token (cookie first in cookie mode, else `refreshToken` in the body) for a new access
    token. With rotation on, also returns its successor and retires it; replaying a retired token outside
    the grace window revokes the whole session. The `Authorization` header is ignored here."""
    # Body, runtime, time and client by plain calls, not FastAPI's parameters: the hottest route (see users.me).
    body = await bodies.optional_json(request, _REFRESH_BODY)
    runtime = runtime_of(request)
    now = runtime.clock()
    client = transport.client_of(request, runtime.trusted_proxies)
    settings = runtime.settings
    token, from_cookie = transport.refresh_token_of(
        request, settings, body.refreshToken if body else None
    )
    if token is None:
        raise ValidationError("Missing refresh token")
    if from_cookie:
        transport.refuse_cross_site(request, settings)
    outcome = await sessions.refresh(
        runtime.db,
        runtime.hot,
        runtime.keys,
        token,
        client,
        now=now,
        lifetimes=runtime.lifetimes,
        rotate=settings.refresh_token_rotation,
    )
    _count_refresh(runtime.metrics, outcome)
    # Committed: a reuse verdict revoked the session before this refusal goes out.
    if isinstance(outcome, Refused):
        raise outcome.error()
    jwt = tokens.issue_access_token(
        runtime.keys, user_id=outcome.user_id, session_id=outcome.session_id, now=now
    )
    return transport.token_response(settings, {"jwt": jwt}, outcome.refresh, now=now)


def _count_refresh(metrics: Metrics, outcome: Refreshed | Refused) -> None:
    if isinstance(outcome, Refreshed):
        if outcome.reissued:
            metrics.count_refresh("reissued_in_grace")
        else:
            metrics.count_refresh("rotated" if outcome.refresh else "not_rotated")
    else:
        metrics.count_refresh(REFRESH_OUTCOME_BY_CODE[outcome.reason.value])
        if outcome.reason is Rejection.REUSED:
            metrics.count_revoked(Revocation.REUSE.value)


def add_refresh_routes(app_router: APIRouter) -> None:
    """Declare both refresh paths on the app's own router, not on ``router`` (see app.main)."""
    for path, name in (("/local/refresh", "refresh_plugin"), ("/refresh", "refresh")):
        app_router.add_api_route(
            router.prefix + path,
            refresh,
            methods=["POST"],
            name=name,
            tags=router.tags,
            response_model=RefreshResponse,
            response_model_exclude_none=True,
            responses=errors(400, 401, 403, 413, 500),
            openapi_extra=bodies.openapi_body(RefreshRequest),
            route_class_override=DirectRoute,
            summary="Get a new access token with a refresh token"
            + (" (the refresh-token plugin's path)" if path == "/local/refresh" else ""),
        )


@router.post(
    "/logout",
    response_model=OkResponse,
    responses=errors(400, 401, 403, 413, 500),
    summary="End this session, all others, or all",
)
async def logout(
    request: Request,
    runtime: RuntimeDep,
    now: Now,
    client: ClientDep,
    body: LogoutRequest | None = Body(default=None),  # noqa: B008
) -> JSONResponse:
    """Works with a valid access token, or with only a refresh token (cookie or body), so a client whose access
    token expired can still log out. `scope`: `local` (default), `others` or `all`. Clears the cookie."""
    settings = runtime.settings
    scope = body.scope if body else "local"
    identity: sessions.Identity | None = None
    failure: AppError | None = None
    access = transport.bearer_token(request)
    if access is not None:
        try:
            claims = tokens.read_access_token(runtime.keys, access, now=now)
            identity = sessions.Identity(claims.user_id, claims.session_id, None)
        except UnauthorizedError as exc:
            failure = exc
    if identity is None:
        token, from_cookie = transport.refresh_token_of(
            request, settings, body.refreshToken if body else None
        )
        if token is not None:
            if from_cookie:
                transport.refuse_cross_site(request, settings)
            identity = sessions.identify(runtime.keys, token, now=now)
            if identity is None and from_cookie:
                return _logged_out(settings)  # an unusable cookie: nothing to revoke, still cleared
            if identity is None:
                failure = UnauthorizedError(sessions.INVALID_REFRESH_TOKEN)
    if identity is None:
        raise failure or ForbiddenError()
    async with runtime.db.write() as session:
        revoked = await sessions.logout(
            session, identity, scope, now=now, lifetimes=runtime.lifetimes
        )
        reason = {"all": Revocation.LOGOUT_ALL, "others": Revocation.LOGOUT_OTHERS}.get(
            scope, Revocation.LOGOUT
        )
        runtime.metrics.count_revoked(reason.value, revoked)
        await audit.record(
            session,
            Event.LOGGED_OUT,
            now=now,
            user_id=identity.user_id,
            session_id=identity.session_id,
            client=client,
            scope=scope,
            revoked=revoked,
        )
    return _logged_out(settings, clear=scope != "others")


def _logged_out(settings: Settings, *, clear: bool = True) -> JSONResponse:
    response = JSONResponse({"ok": True})
    if settings.cookie_response and clear:
        transport.clear_refresh_cookie(response, settings)
    return response


@router.post(
    "/change-password",
    response_model=AuthResponse,
    response_model_exclude_none=True,
    responses=errors(400, 401, 403, 413, 429, 500),
    dependencies=[Depends(rate_limit_user)],
    summary="Change the password; every other session is revoked",
)
async def change_password(
    body: ChangePasswordRequest,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    now: Now,
    client: ClientDep,
) -> JSONResponse:
    """Returns a new access token for this session (and a fresh refresh token if the session has one)."""
    settings = runtime.settings
    new_hash = await users.prepare_password_change(
        runtime.hasher,
        principal.user,
        body.currentPassword,
        body.password,
        password_min_length=settings.password_min_length,
        password_max_bytes=settings.password_max_bytes,
    )
    async with runtime.db.write() as session:
        user = await users.set_password(session, principal.user, new_hash, now=now)
        revoked = await sessions.revoke_user_sessions(
            session, user.id, reason=Revocation.PASSWORD_CHANGED, now=now, keep=principal.session_id
        )
        runtime.metrics.count_revoked(Revocation.PASSWORD_CHANGED.value, revoked)
        await audit.record(
            session,
            Event.PASSWORD_CHANGED,
            now=now,
            user_id=user.id,
            session_id=principal.session_id,
            client=client,
            sessions_revoked=revoked,
        )
        refresh_token = await sessions.rotate_current(
            session,
            runtime.keys,
            user.id,
            principal.session_id,
            now=now,
            lifetimes=runtime.lifetimes,
        )
        if refresh_token is None:
            await sessions.extend_access_only_session(
                session, principal.session_id, now=now, lifetimes=runtime.lifetimes
            )
    return transport.signed_in(runtime, user, principal.session_id, refresh_token, now=now)
