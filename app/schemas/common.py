"""Shapes shared by every route: the error envelope and the user object."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.store.records import UserRecord


class ErrorItem(BaseModel):
    path: list[str | int]
    message: str
    name: str


class ErrorDetails(BaseModel):
    model_config = ConfigDict(extra="allow")
    errors: list[ErrorItem] | None = None
    code: str | None = Field(default=None, description="A stable machine-readable reason")


class ErrorBody(BaseModel):
    status: int
    name: str = Field(examples=["ValidationError"])
    message: str = Field(examples=["Invalid identifier or password"])
    details: ErrorDetails


class ErrorEnvelope(BaseModel):
    """Strapi's error envelope, used for every error response."""

    data: None
    error: ErrorBody


class UserOut(BaseModel):
    """The public user object, with Strapi's keys in Strapi's order; never anything private."""

    id: int
    documentId: str = Field(min_length=24, max_length=24)
    username: str
    email: str
    provider: str
    confirmed: bool
    blocked: bool
    createdAt: str
    updatedAt: str
    publishedAt: str


def iso_ms(value: datetime) -> str:
    """``2026-11-27T23:38:04.597Z``: UTC, milliseconds, ``Z``, as Strapi prints times."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def user_payload(user: UserRecord) -> dict[str, Any]:
    return {
        "id": user.id,
        "documentId": user.document_id,
        "username": user.username,
        "email": user.email,
        "provider": user.provider,
        "confirmed": user.confirmed,
        "blocked": user.blocked,
        "createdAt": iso_ms(user.created_at),
        "updatedAt": iso_ms(user.updated_at),
        "publishedAt": iso_ms(user.published_at),
    }
