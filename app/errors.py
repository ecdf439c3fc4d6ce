"""The error hierarchy of the service, shaped after Strapi's (``@strapi/utils`` errors).

Services raise these; one handler (``app.api.errors``) renders them in Strapi's envelope:
``{"data": null, "error": {"status", "name", "message", "details"}}``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    status: ClassVar[int] = 400
    name: ClassVar[str] = "ApplicationError"
    default_message: ClassVar[str] = "An application error occurred"

    def __init__(
        self,
        message: str | None = None,
        details: dict[str, Any] | None = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details: dict[str, Any] = dict(details or {})
        if code is not None:
            # A stable, machine-readable reason clients may rely on (CONTRACT §1).
            self.details["code"] = code
        self.headers = headers
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {
            "data": None,
            "error": {
                "status": self.status,
                "name": self.name,
                "message": self.message,
                "details": self.details,
            },
        }


class ApplicationError(AppError):
    pass


class ValidationError(AppError):
    name = "ValidationError"
    default_message = "Validation error"

    @classmethod
    def from_field_errors(cls, errors: list[tuple[list[str | int], str]]) -> ValidationError:
        """Strapi's yup rendering: one failure is the message, several are counted."""
        message = errors[0][1] if len(errors) == 1 else f"{len(errors)} errors occurred"
        return cls(
            message,
            {
                "errors": [
                    {"path": path, "message": text, "name": "ValidationError"}
                    for path, text in errors
                ]
            },
        )


class UnauthorizedError(AppError):
    status = 401
    name = "UnauthorizedError"
    default_message = "Unauthorized"


class ForbiddenError(AppError):
    status = 403
    name = "ForbiddenError"
    default_message = "Forbidden"


class NotFoundError(AppError):
    status = 404
    name = "NotFoundError"
    default_message = "Not Found"


class MethodNotAllowedError(AppError):
    status = 405
    name = "MethodNotAllowedError"
    default_message = "Method Not Allowed"


class PayloadTooLargeError(AppError):
    status = 413
    name = "PayloadTooLargeError"
    default_message = "Payload Too Large"


class RateLimitError(AppError):
    status = 429
    name = "RateLimitError"
    default_message = "Too many requests, please try again later."


class InternalServerError(AppError):
    status = 500
    name = "InternalServerError"
    default_message = "Internal Server Error"


class ServiceUnavailableError(AppError):
    status = 503
    name = "ServiceUnavailableError"
    default_message = "Service Unavailable"


class DatabaseUnavailable(ServiceUnavailableError):
    """The database cannot be reached, or (SQLite) is locked past the busy timeout by another process. Nothing was
    half-written (the transaction was rolled back); the client should try again shortly."""

    def __init__(self, reason: str) -> None:
        super().__init__(headers={"Retry-After": "1"})
        self.reason = reason  # for the log, never for the client


# Strapi's exact texts, in one place so routes, services and tests agree.
INVALID_LOGIN = "Invalid identifier or password"
NOT_CONFIRMED = "Your account email is not confirmed"
BLOCKED = "Your account has been blocked by an administrator"
MISSING_OR_INVALID_CREDENTIALS = "Missing or invalid credentials"
INVALID_CREDENTIALS = "Invalid credentials"
TAKEN = "Email or Username are already taken"
REGISTER_DISABLED = "Register action is currently disabled"
PASSWORD_TOO_LONG = "Password must be less than 73 bytes"  # noqa: S105 - a message
CURRENT_PASSWORD_INVALID = "The provided current password is invalid"  # noqa: S105 - a message
SAME_PASSWORD = "Your new password must be different than your current password"  # noqa: S105
