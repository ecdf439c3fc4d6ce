"""Request and response bodies of the auth routes, validated the way Strapi's yup schemas validate them."""

from __future__ import annotations

from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.errors import PASSWORD_TOO_LONG
from app.schemas.common import UserOut

MAX_PASSWORD_BYTES = 72


def _valid_email(value: str) -> str:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise PydanticCustomError("email", "email must be a valid email") from None
    return value


def _at_most_72_bytes(value: str) -> str:
    if len(value.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise PydanticCustomError("password_bytes", PASSWORD_TOO_LONG)
    return value


# yup's `required` treats "" as missing; StrictStr refuses numbers, booleans, objects.
Required = Annotated[StrictStr, Field(min_length=1)]
Email = Annotated[StrictStr, Field(min_length=1, max_length=255), AfterValidator(_valid_email)]
NewPassword = Annotated[StrictStr, Field(min_length=1), AfterValidator(_at_most_72_bytes)]


class LoginRequest(BaseModel):
    """Log in with an email (any case) or a username (exact) and a password."""

    model_config = ConfigDict(
        extra="ignore",  # Strapi accepts and ignores other keys here
        json_schema_extra={
            "examples": [{"identifier": "alice@example.com", "password": "Secret-pass-123"}]
        },
    )

    identifier: Required
    password: Required
    requestRefresh: StrictBool = False


class RegisterRequest(BaseModel):
    """Create a local account."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"username": "alice", "email": "alice@example.com", "password": "Secret-pass-123"}
            ]
        },
    )

    username: Annotated[Required, Field(max_length=255)]
    email: Email
    password: NewPassword

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_keys(cls, data: Any) -> Any:
        # Strapi names every unexpected key at once, before any field rule runs.
        if isinstance(data, dict):
            unknown = [str(key) for key in data if key not in cls.model_fields]
            if unknown:
                raise PydanticCustomError(
                    "unknown_parameters",
                    "Invalid parameters: {keys}",
                    {"keys": ", ".join(unknown)},
                )
        return data


class AuthResponse(BaseModel):
    jwt: str = Field(description="Access token (Bearer), short-lived")
    user: UserOut
    refreshToken: str | None = Field(
        default=None, description="Present when a refresh token was requested (body mode)"
    )
