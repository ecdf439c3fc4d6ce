"""The signed-in user's sessions (devices): list them, end one."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api import transport
from app.api.deps import ClientDep, CurrentPrincipal, Now, RuntimeDep
from app.api.docs import errors
from app.errors import NotFoundError
from app.schemas.auth import EmptyData, SessionsResponse
from app.schemas.common import iso_ms
from app.services.sessions import Revocation, SessionView

router = APIRouter(prefix="/api/auth/sessions", tags=["sessions"])

SESSION_NOT_FOUND = "Session not found"
SESSION_ID = re.compile(r"[0-9a-f]{32}")


@router.get(
    "",
    response_model=SessionsResponse,
    responses=errors(401, 403, 500),
    summary="List the live sessions of the signed-in user, the current one first",
)
async def list_sessions(principal: CurrentPrincipal, runtime: RuntimeDep, now: Now) -> JSONResponse:
    views = await runtime.services.sessions.listed(
        principal.user.id, current=principal.session_id, now=now
    )
    return transport.private_json({"data": [_session_entry(v) for v in views]})


def _session_entry(view: SessionView) -> dict[str, Any]:
    """One session as the list shows it; ``deviceId`` after ``id`` when the login named one (Strapi core leaves
    it out otherwise, and so do we)."""
    entry: dict[str, Any] = {"id": view.id}
    if view.device_id is not None:
        entry["deviceId"] = view.device_id
    entry |= {
        "deviceName": view.device_name,
        "ip": view.ip,
        "current": view.current,
        "loginAt": iso_ms(view.login_at),
        "lastActiveAt": iso_ms(view.last_active_at),
    }
    return entry


@router.delete(
    "/{session_id}",
    response_model=EmptyData,
    responses=errors(401, 403, 404, 500),
    summary="End one session of the signed-in user (its refresh and access tokens stop working)",
)
async def revoke_session(
    session_id: str, principal: CurrentPrincipal, runtime: RuntimeDep, now: Now, client: ClientDep
) -> JSONResponse:
    """Any id that names no live session of this user, well-formed or not, is a 404."""
    revoked = SESSION_ID.fullmatch(session_id) is not None and (
        await runtime.services.sessions.end_one(
            principal.user.id,
            session_id,
            by_session=principal.session_id,
            client=client,
            now=now,
        )
    )
    if not revoked:
        raise NotFoundError(SESSION_NOT_FOUND)
    runtime.metrics.count_revoked(Revocation.USER_REVOKED.value)
    return JSONResponse({"data": {}})
