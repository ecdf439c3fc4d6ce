"""Liveness and readiness for orchestrators, load balancers and the container's HEALTHCHECK."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.api.deps import RuntimeDep
from app.migrations_info import expected_head
from app.services.schema import NOT_MIGRATED

router = APIRouter(tags=["health"])
READINESS_TIMEOUT = 3.0


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    migrations: str


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready"}},
    summary="The database answers and its schema is this build's",
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """200 when the database answers within 3 s and is migrated to this build's head; 503 otherwise, saying
    which: the database unreachable, its schema never migrated, or at another revision."""
    expected = expected_head()
    try:
        async with asyncio.timeout(READINESS_TIMEOUT):
            current = await runtime.store.schema_version()
    except Exception:  # any failure to answer means "not ready", never a 500
        body = {"status": "unavailable", "database": "unreachable", "migrations": "unknown"}
        return JSONResponse(body, status_code=503)
    if current is None:
        body = {"status": "unavailable", "database": "ok", "migrations": NOT_MIGRATED}
        return JSONResponse(body, status_code=503)
    if current != expected:
        body = {
            "status": "unavailable",
            "database": "ok",
            "migrations": f"at {current}, expected {expected}",
        }
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok", "migrations": str(current)})
