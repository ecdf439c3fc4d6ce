"""Dependencies as ``Annotated`` aliases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from app.api import ratelimit, transport
from app.errors import ForbiddenError
from app.runtime import Runtime
from app.services import tokens
from app.services.client import Client
from app.store import UserRecord


# Every dependency is `async def`: FastAPI runs plain `def` dependencies in a thread pool, a thread hop per
# request that costs more than the work itself.
def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_now(runtime: RuntimeDep) -> datetime:
    return runtime.clock()


Now = Annotated[datetime, Depends(get_now)]


async def get_client(request: Request, runtime: RuntimeDep) -> Client:
    return transport.client_of(request, runtime.trusted_proxies)


ClientDep = Annotated[Client, Depends(get_client)]


@dataclass(frozen=True)
class Principal:
    """The signed-in user and the session their access token belongs to."""

    user: UserRecord
    session_id: str


async def get_principal(request: Request, runtime: RuntimeDep, now: Now) -> Principal:
    token = transport.bearer_token(request)
    if token is None:
        raise ForbiddenError()
    claims = tokens.read_access_token(runtime.transport.keys, token, now=now)
    user = await runtime.services.sessions.authenticated_user(
        claims.user_id,
        claims.session_id,
        now=now,
        email_confirmation=runtime.settings.email_confirmation,
    )
    return Principal(user, claims.session_id)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def principal_of(request: Request) -> Principal:
    """``get_principal`` without dependency injection, for the hot routes (see ``app.api.routers.users``)."""
    runtime = runtime_of(request)
    return await get_principal(request, runtime, runtime.clock())


async def rate_limit(request: Request, runtime: RuntimeDep, client: ClientDep) -> None:
    """Strapi's limit on public routes: per route and client address."""
    await ratelimit.enforce(request, runtime.limiter, ip=client.ip, by_email=False)


async def rate_limit_by_email(request: Request, runtime: RuntimeDep, client: ClientDep) -> None:
    """Per route, address and the body's email (register, forgot password, send confirmation)."""
    await ratelimit.enforce(request, runtime.limiter, ip=client.ip, by_email=True)


async def rate_limit_user(
    request: Request, runtime: RuntimeDep, client: ClientDep, principal: CurrentPrincipal
) -> None:
    """Per route and signed-in user; runs after authentication, so 401/403 are not counted."""
    await ratelimit.enforce(
        request, runtime.limiter, ip=client.ip, by_email=False, user_id=principal.user.id
    )
