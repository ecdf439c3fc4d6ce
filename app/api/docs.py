"""OpenAPI helpers: every route documents the error envelope it can return."""

from __future__ import annotations

from typing import Any

from app.schemas.common import ErrorEnvelope

_DESCRIPTIONS = {
    400: "Validation or application error",
    401: "Missing, invalid or revoked credentials",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Request body too large",
    429: "Too many requests",
    500: "Internal error",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": ErrorEnvelope, "description": _DESCRIPTIONS[status]}
        for status in statuses
    }
