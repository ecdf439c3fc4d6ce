"""The signed-in user."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import CurrentPrincipal
from app.api.docs import errors
from app.schemas.common import UserOut, user_payload

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get(
    "/me",
    response_model=UserOut,
    responses=errors(401, 403, 500),
    summary="The user the access token belongs to",
)
async def me(principal: CurrentPrincipal) -> JSONResponse:
    """The bare user object (no envelope), as Strapi returns it."""
    return JSONResponse(user_payload(principal.user))
