"""Request and response bodies of the auth routes, validated the way Strapi's yup schemas validate them."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.errors import PASSWORD_TOO_LONG
from app.schemas.common import UserOut
from app.security.passwords import BCRYPT_MAX_BYTES


def _valid_email(value: str) -> str:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise PydanticCustomError("strapi_email", "email must be a valid email") from None
    return value


def _within_bcrypt_limit(value: str) -> str:
    if len(value.encode("utf-8")) > BCRYPT_MAX_BYTES:
        raise PydanticCustomError("strapi_password_bytes", PASSWORD_TOO_LONG)
    return value


def _storable(value: str) -> str:
    # No legitimate value holds U+0000 or a lone surrogate (JSON's "\ud800"), and neither can be stored or
    # encoded: refuse them here, not with a 500 further down.
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("bad_unicode", "must be valid Unicode text") from None
    return value


STORED_NAME_LENGTH = 255


def _stored_fits(value: str) -> str:
    """Names are stored in NFKC form (emails lower-cased too), which can be longer than what was typed (U+FDFA is
    18 characters once normalized): the column's limit holds for the stored form, or the database refuses it."""
    stored = unicodedata.normalize("NFKC", value)
    if max(len(stored), len(stored.lower())) > STORED_NAME_LENGTH:
        raise PydanticCustomError(
            "too_long_normalized", f"must be at most {STORED_NAME_LENGTH} characters"
        )
    return value


# yup's `required` treats "" as missing; StrictStr refuses numbers, booleans, objects.
Text = Annotated[StrictStr, AfterValidator(_storable)]
Required = Annotated[Text, Field(min_length=1)]
Email = Annotated[
    Text,
    Field(min_length=1, max_length=STORED_NAME_LENGTH),
    AfterValidator(_valid_email),
    AfterValidator(_stored_fits),
]
NewPassword = Annotated[Text, Field(min_length=1), AfterValidator(_within_bcrypt_limit)]


def _device_or_nothing(value: object) -> object:
    """Strapi core's reading of ``deviceId``: a non-empty string, else no device at all (never an error)."""
    return value if isinstance(value, str) and value else None


DEVICE_ID_LENGTH = 255  # Strapi's column, and ours
DeviceId = Annotated[
    Annotated[Text, Field(max_length=DEVICE_ID_LENGTH)] | None,
    BeforeValidator(_device_or_nothing),
    # As read: any value that is not a string is accepted and means no device, so the document may not call it
    # invalid (a generated client or a gateway would refuse what the service takes).
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": DEVICE_ID_LENGTH},
                {"not": {"type": "string"}},
            ],
            "description": "Strapi core's session mode: the client's own name for this device; logout "
            "can end every session of it. A value that is not a non-empty string names no device.",
            "examples": ["laptop-7f3a"],
        }
    ),
]


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
    # A JSON boolean (a wrong type is a 400, as the contract says; never JavaScript truthiness).
    requestRefresh: StrictBool = False
    deviceId: DeviceId = None


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

    username: Annotated[
        Required, Field(max_length=STORED_NAME_LENGTH), AfterValidator(_stored_fits)
    ]
    email: Email
    password: NewPassword

    @model_validator(mode="before")
    @classmethod
    def _invalid_parameters(cls, data: Any) -> Any:
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


def _no_unknown_keys(model: type[BaseModel], data: Any) -> Any:
    """yup's ``noUnknown``: one error at the root naming the unexpected keys."""
    if isinstance(data, dict):
        unknown = [str(key) for key in data if key not in model.model_fields]
        if unknown:
            raise PydanticCustomError(
                "strapi_no_unknown",
                "this field has unspecified keys: {keys}",
                {"keys": ", ".join(unknown)},
            )
    return data


def _matches_password(value: str, info: ValidationInfo) -> str:
    password = info.data.get("password")
    if password is not None and value != password:
        raise PydanticCustomError("strapi_password_mismatch", "Passwords do not match")
    return value


class _StrictBody(BaseModel):
    """yup's ``noUnknown``: unexpected keys are refused with one error naming them."""

    @model_validator(mode="before")
    @classmethod
    def _strict_keys(cls, data: Any) -> Any:
        return _no_unknown_keys(cls, data)


class _NewPasswordBody(_StrictBody):
    """A new password and its confirmation (the fields are declared by each body, in Strapi's order)."""

    _confirmed = field_validator("passwordConfirmation", check_fields=False)(_matches_password)


class ChangePasswordRequest(_NewPasswordBody):
    """Change the password of the signed-in user."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "currentPassword": "Secret-pass-123",
                    "password": "New-secret-456",
                    "passwordConfirmation": "New-secret-456",
                }
            ]
        },
    )

    currentPassword: Required
    password: NewPassword
    passwordConfirmation: Required


def _string_or_nothing(value: object) -> object:
    """A refresh token that is not a string is no token at all (Strapi: "Missing refresh token")."""
    return value if isinstance(value, str) else None


TokenText = Annotated[Text | None, BeforeValidator(_string_or_nothing)]


class RefreshRequest(BaseModel):
    """The refresh token, unless it travels in the cookie (cookie mode)."""

    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"refreshToken": "eyJhbGciOi..."}]}
    )

    refreshToken: TokenText = None


class RefreshResponse(BaseModel):
    jwt: str = Field(description="A new access token")
    refreshToken: str | None = Field(
        default=None,
        description="The successor refresh token (rotation on, body mode); the old one stops working",
    )


def _scope(value: str) -> str:
    if value not in ("local", "others", "all"):
        raise PydanticCustomError(
            "strapi_one_of", "scope must be one of the following values: local, others, all"
        )
    return value


class LogoutRequest(BaseModel):
    """Which sessions to end: this one (default), all others, or all."""

    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"scope": "local"}, {"scope": "all"}]}
    )

    scope: Annotated[
        StrictStr,
        AfterValidator(_scope),
        Field(json_schema_extra={"enum": ["local", "others", "all"]}),
    ] = "local"
    refreshToken: Text | None = None
    # Strapi core: end every session of this device instead (``scope: "all"`` still wins).
    deviceId: DeviceId = None


class OkResponse(BaseModel):
    ok: Literal[True]


class SessionOut(BaseModel):
    id: str
    deviceId: str | None = Field(
        default=None, description="Present when the login named its device (Strapi core's deviceId)"
    )
    deviceName: str | None
    ip: str | None
    current: bool
    loginAt: str
    lastActiveAt: str


class SessionsResponse(BaseModel):
    data: list[SessionOut]


class EmptyData(BaseModel):
    data: dict[str, Any] = Field(default_factory=dict)


class ForgotPasswordRequest(_StrictBody):
    """Ask for a password-reset link by email."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"email": "alice@example.com"}]}
    )

    email: Email


class ResetPasswordRequest(_NewPasswordBody):
    """Choose a new password with the code from the reset email."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "code": "the code from the link",
                    "password": "New-secret-456",
                    "passwordConfirmation": "New-secret-456",
                }
            ]
        },
    )

    code: Required
    password: NewPassword
    passwordConfirmation: Required


class EmailRequest(BaseModel):
    """An email address (re-send the confirmation email)."""

    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"email": "alice@example.com"}]}
    )

    email: Email


class SentResponse(BaseModel):
    email: str
    sent: Literal[True]


class RegisteredResponse(BaseModel):
    """Registration with email confirmation on: no token until the address is confirmed."""

    user: UserOut
