"""The signed-in user."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api import transport
from app.api.deps import principal_of
from app.api.direct import DirectRoute
from app.api.docs import errors
from app.schemas.common import UserOut, user_payload


async def me(request: Request) -> JSONResponse:
    """The bare user object (no envelope), as Strapi returns it."""
    # The principal is resolved by a call, not a dependency (and the route is a DirectRoute): this route runs on
    # every page load of every frontend, and FastAPI's dependency resolution was a large share of its CPU time
    # (bench/results/2026-11-28-hot-path.md).
    principal = await principal_of(request)
    return transport.private_json(user_payload(principal.user))


def add_me_route(app_router: APIRouter) -> None:
    """Declare ``/api/users/me`` on the app's own router (see app.main)."""
    app_router.add_api_route(
        "/api/users/me",
        me,
        methods=["GET"],
        tags=["users"],
        response_model=UserOut,
        responses=errors(401, 403, 500),
        summary="The user the access token belongs to",
        route_class_override=DirectRoute,
    )
