"""Local authentication: Strapi ``users-permissions`` paths plus the refresh-token plugin's."""

from __future__ import annotations

from typing import cast

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
from app.errors import (
    REGISTER_DISABLED,
    AppError,
    ApplicationError,
    DatabaseUnavailable,
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
from app.services import sessions, tokens, users
from app.services.accounts import login_failure
from app.services.reuse import Rejection
from app.services.sessions import Refreshed, Refused, Revocation

router = APIRouter(prefix="/api/auth", tags=["auth"])


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
    request: Request, body: LoginRequest, runtime: RuntimeDep, now: Now, client: ClientDep
) -> JSONResponse:
    """Returns a short-lived access token and the user; with `requestRefresh: true` (or `REQUEST_REFRESH_ON_ALL`)
    also a refresh token, in the body or, in cookie mode, in an HttpOnly cookie. With Strapi core's
    `x-strapi-refresh-cookie: httpOnly` header, a refresh token always, in Strapi's cookie. Every login starts a
    session, on the client's `deviceId` if it names one."""
    # NFKC, as usernames and emails are stored: one account (and one wrong-password budget) per spelling.
    identifier = users.normalize_username(body.identifier)
    try:
        # Before the look-up: an unknown identifier is counted, refused and timed like a known one.
        attempt = await runtime.limiter.login_attempt(identifier, client.ip)
    except RateLimitError:
        runtime.metrics.count_login("rate_limited")
        raise
    try:
        signed = await runtime.services.accounts.login(
            identifier,
            body.password,
            client,
            now=now,
            # Only Strapi core's clients send the header, and they never send requestRefresh: they always get one.
            with_refresh=body.requestRefresh or runtime.transport.wants_strapi_cookie(request),
            device_id=body.deviceId,
        )
    except DatabaseUnavailable:
        raise  # an outage is no login outcome
    except AppError as exc:
        runtime.metrics.count_login(cast(LoginOutcome, login_failure(exc)))
        raise
    await runtime.limiter.login_succeeded(attempt)
    runtime.metrics.count_login("success")
    return runtime.transport.signed_in(
        signed.user, signed.session_id, signed.refresh, now=now, request=request
    )


@router.post(
    "/local/register",
    response_model=AuthResponse | RegisteredResponse,
    response_model_exclude_none=True,
    responses=errors(400, 413, 429, 500),
    dependencies=[Depends(registration_open), Depends(rate_limit_by_email)],
    summary="Register a local account",
)
async def register(
    request: Request, body: RegisterRequest, runtime: RuntimeDep, now: Now, client: ClientDep
) -> JSONResponse:
    """Creates the account (email stored lower-cased), starts a session and returns its access token (and a refresh
    token when `REQUEST_REFRESH_ON_ALL` is on, or with Strapi core's `x-strapi-refresh-cookie` header: then in the
    body, as Strapi core returns it here). With `EMAIL_CONFIRMATION` on, it returns only `{user}` and emails a
    confirmation link instead."""
    registration = users.Registration(body.username, body.email, body.password)
    registered = await runtime.services.accounts.register(
        registration, client, now=now, with_refresh=runtime.transport.wants_strapi_cookie(request)
    )
    signed = registered.signed_in
    if signed is None:
        return transport.private_json({"user": user_payload(registered.user)})
    return runtime.transport.signed_in(signed.user, signed.session_id, signed.refresh, now=now)


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
    token, _from_cookie = runtime.transport.presented(request, body.refreshToken if body else None)
    if token is None:
        raise ValidationError("Missing refresh token")
    outcome = await runtime.services.sessions.refresh(token, client, now=now)
    _count_refresh(runtime.metrics, outcome)
    # Committed: a reuse verdict revoked the session before this refusal goes out.
    if isinstance(outcome, Refused):
        raise outcome.error()
    jwt = tokens.issue_access_token(
        runtime.transport.keys, user_id=outcome.user_id, session_id=outcome.session_id, now=now
    )
    return runtime.transport.tokens({"jwt": jwt}, outcome.refresh, now=now, request=request)


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
    token expired can still log out. `scope`: `local` (default), `others` or `all`; or `deviceId` (Strapi core's
    session mode): every session of that device (`scope: all` wins over it). Clears the cookie."""
    scope = body.scope if body else "local"
    device_id = body.deviceId if body else None
    service = runtime.services.sessions
    identity: sessions.Identity | None = None
    failure: AppError | None = None
    access = transport.bearer_token(request)
    if access is not None:
        try:
            claims = tokens.read_access_token(service.keys, access, now=now)
            identity = sessions.Identity(claims.user_id, claims.session_id, None)
        except UnauthorizedError as exc:
            failure = exc
    if identity is None:
        token, from_cookie = runtime.transport.presented(
            request, body.refreshToken if body else None
        )
        if token is not None:
            identity = service.identify(token, now=now)
            if identity is None and from_cookie:
                # An unusable cookie: nothing to revoke, cleared.
                return runtime.transport.logged_out(request=request)
            if identity is None:
                failure = UnauthorizedError(sessions.INVALID_REFRESH_TOKEN)
    if identity is None:
        raise failure or ForbiddenError()
    revoked = await service.logout(identity, scope, client, now=now, device_id=device_id)
    reason = sessions.logout_reason(scope, device_id)
    runtime.metrics.count_revoked(reason.value, revoked)
    return runtime.transport.logged_out(
        clear=reason is not Revocation.LOGOUT_OTHERS, request=request
    )


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
    changed = await runtime.services.accounts.change_password(
        principal.user,
        principal.session_id,
        body.currentPassword,
        body.password,
        client,
        now=now,
    )
    runtime.metrics.count_revoked(Revocation.PASSWORD_CHANGED.value, changed.sessions_revoked)
    signed = changed.signed_in
    return runtime.transport.signed_in(signed.user, signed.session_id, signed.refresh, now=now)
