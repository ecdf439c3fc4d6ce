"""Dependencies as ``Annotated`` aliases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from app.api import transport
from app.errors import ForbiddenError
from app.models import User
from app.runtime import Runtime
from app.services import sessions, tokens
from app.services.sessions import Client


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_now(runtime: RuntimeDep) -> datetime:
    return runtime.clock()


Now = Annotated[datetime, Depends(get_now)]
ClientDep = Annotated[Client, Depends(transport.client_of)]


@dataclass(frozen=True)
class Principal:
    """The signed-in user and the session their access token belongs to."""

    user: User
    session_id: str


async def get_principal(request: Request, runtime: RuntimeDep, now: Now) -> Principal:
    token = transport.bearer_token(request)
    if token is None:
        raise ForbiddenError()
    claims = tokens.read_access_token(runtime.keys, token, now=now)
    async with runtime.db.read() as session:
        user = await sessions.authenticated_user(
            session,
            claims.user_id,
            claims.session_id,
            now=now,
            email_confirmation=runtime.settings.email_confirmation,
        )
    return Principal(user, claims.session_id)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
