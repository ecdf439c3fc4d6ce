"""The Strapi-shaped error hierarchy, and ``iso_ms``, Strapi's way of printing times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.errors import (
    AppError,
    ApplicationError,
    ForbiddenError,
    InternalServerError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServiceUnavailableError,
    UnauthorizedError,
    ValidationError,
)
from app.schemas.common import ErrorEnvelope, iso_ms

# --- ValidationError.from_field_errors -----------------------------------------------------------


def test_one_field_error_is_the_message() -> None:
    error = ValidationError.from_field_errors([(["identifier"], "identifier is a required field")])
    assert error.message == "identifier is a required field"
    assert str(error) == "identifier is a required field"
    assert error.details == {
        "errors": [
            {
                "path": ["identifier"],
                "message": "identifier is a required field",
                "name": "ValidationError",
            }
        ]
    }


def test_several_field_errors_are_counted() -> None:
    error = ValidationError.from_field_errors(
        [
            (["identifier"], "identifier is a required field"),
            (["password"], "password is a required field"),
        ]
    )
    assert error.message == "2 errors occurred"
    assert [item["path"] for item in error.details["errors"]] == [["identifier"], ["password"]]
    assert [item["message"] for item in error.details["errors"]] == [
        "identifier is a required field",
        "password is a required field",
    ]


def test_three_errors_and_nested_paths() -> None:
    error = ValidationError.from_field_errors(
        [(["a"], "one"), (["b", 0], "two"), (["c", "d", 1], "three")]
    )
    assert error.message == "3 errors occurred"
    assert [item["path"] for item in error.details["errors"]] == [["a"], ["b", 0], ["c", "d", 1]]
    assert {item["name"] for item in error.details["errors"]} == {"ValidationError"}


def test_validation_error_body_shape() -> None:
    body = ValidationError.from_field_errors([(["email"], "email must be a valid email")]).body()
    assert body == {
        "data": None,
        "error": {
            "status": 400,
            "name": "ValidationError",
            "message": "email must be a valid email",
            "details": {
                "errors": [
                    {
                        "path": ["email"],
                        "message": "email must be a valid email",
                        "name": "ValidationError",
                    }
                ]
            },
        },
    }
    assert list(body) == ["data", "error"]
    assert list(body["error"]) == ["status", "name", "message", "details"]
    ErrorEnvelope.model_validate(body)  # the documented response schema accepts it


# --- AppError ------------------------------------------------------------------------------------


def test_code_goes_into_details() -> None:
    error = UnauthorizedError("Invalid credentials", code="REFRESH_TOKEN_REUSED")
    assert error.details == {"code": "REFRESH_TOKEN_REUSED"}
    assert error.body()["error"]["details"] == {"code": "REFRESH_TOKEN_REUSED"}


def test_code_joins_given_details_without_mutating_them() -> None:
    given: dict[str, Any] = {"errors": []}
    error = ValidationError("Bad", given, code="SOME_CODE")
    assert error.details == {"errors": [], "code": "SOME_CODE"}
    assert given == {"errors": []}


def test_no_code_no_details() -> None:
    error = ApplicationError("Something")
    assert error.details == {}
    assert "code" not in error.body()["error"]["details"]


def test_default_message_and_headers() -> None:
    error = RateLimitError(headers={"Retry-After": "60"})
    assert error.message == "Too many requests, please try again later."
    assert error.headers == {"Retry-After": "60"}
    assert ValidationError().message == "Validation error"
    assert ValidationError("").message == "Validation error"
    assert NotFoundError().headers is None


@pytest.mark.parametrize(
    ("cls", "status", "name"),
    [
        (ApplicationError, 400, "ApplicationError"),
        (ValidationError, 400, "ValidationError"),
        (UnauthorizedError, 401, "UnauthorizedError"),
        (ForbiddenError, 403, "ForbiddenError"),
        (NotFoundError, 404, "NotFoundError"),
        (MethodNotAllowedError, 405, "MethodNotAllowedError"),
        (PayloadTooLargeError, 413, "PayloadTooLargeError"),
        (RateLimitError, 429, "RateLimitError"),
        (InternalServerError, 500, "InternalServerError"),
        (ServiceUnavailableError, 503, "ServiceUnavailableError"),
    ],
)
def test_status_and_name(cls: type[AppError], status: int, name: str) -> None:
    body = cls().body()
    assert body["data"] is None
    assert body["error"]["status"] == status
    assert body["error"]["name"] == name
    assert body["error"]["message"] == cls.default_message
    assert isinstance(cls(), AppError)
    ErrorEnvelope.model_validate(body)


# --- iso_ms --------------------------------------------------------------------------------------


def test_iso_ms_strapi_format() -> None:
    value = datetime(2026, 11, 27, 23, 38, 4, 597123, tzinfo=UTC)
    assert iso_ms(value) == "2026-11-27T23:38:04.597Z"


@pytest.mark.parametrize(
    ("microsecond", "millis"),
    [(0, "000"), (999, "000"), (1000, "001"), (10_000, "010"), (999_999, "999")],
)
def test_iso_ms_truncates_to_milliseconds(microsecond: int, millis: str) -> None:
    value = datetime(2026, 1, 2, 3, 4, 5, microsecond, tzinfo=UTC)
    assert iso_ms(value) == f"2026-01-02T03:04:05.{millis}Z"


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 28, 0, 38, 4, 597123, tzinfo=timezone(timedelta(hours=1))),
        datetime(2026, 11, 27, 18, 8, 4, 597123, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(2026, 11, 28, 9, 38, 4, 597999, tzinfo=timezone(timedelta(hours=10))),
    ],
    ids=["+01:00", "-05:30", "+10:00"],
)
def test_iso_ms_converts_an_aware_datetime_to_utc(value: datetime) -> None:
    assert iso_ms(value) == "2026-11-27T23:38:04.597Z"


def test_iso_ms_across_midnight_and_year_end() -> None:
    value = datetime(2027, 1, 1, 0, 30, 0, 5000, tzinfo=timezone(timedelta(hours=1)))
    assert iso_ms(value) == "2026-12-31T23:30:00.005Z"
