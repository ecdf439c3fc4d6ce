"""The one place errors become responses: Strapi's envelope for everything, including routing errors,
malformed bodies and crashes (which never show internals)."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from app.errors import (
    AppError,
    DatabaseUnavailable,
    ForbiddenError,
    InternalServerError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UnauthorizedError,
    ValidationError,
)
from app.store.postgres import UNAVAILABLE_SQLSTATES

logger = logging.getLogger("refreshd.errors")

_BY_STATUS: dict[int, type[AppError]] = {
    400: ValidationError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    413: PayloadTooLargeError,
}
_BODY_NOT_OBJECT = "Request body must be a JSON object"
_TYPE_NAMES = {
    "string_type": "string",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "int_type": "number",
    "float_type": "number",
    "dict_type": "object",
    "list_type": "array",
}


def render(error: AppError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


# A field whose name says it holds a secret: its value is never echoed, whatever its type (gateways log 4xx
# bodies). Matched on the lower-cased name, so `password`, `currentPassword`, `passwordConfirmation`,
# `refreshToken`, `code`, `confirmation` and the like are all covered, and any new one named so is too.
_SECRET_NAME_PARTS = ("password", "token", "secret", "jwt")
_SECRET_NAMES = frozenset({"code", "confirmation"})
REDACTED = "[redacted]"


def is_secret_field(name: object) -> bool:
    if not isinstance(name, str):
        return False
    lowered = name.lower()
    return lowered in _SECRET_NAMES or any(part in lowered for part in _SECRET_NAME_PARTS)


def _without_secrets(value: Any) -> Any:
    """The value with what any secret-named key holds, at any depth, replaced."""
    if isinstance(value, dict):
        return {
            key: REDACTED if is_secret_field(key) else _without_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_without_secrets(item) for item in value]
    return value


def _print_value(value: Any) -> str:
    """yup's printValue: strings quoted, other values as JSON."""
    value = _without_secrets(value)
    try:
        return json.dumps(
            value, ensure_ascii=False, indent=2 if isinstance(value, dict | list) else None
        )
    except (TypeError, ValueError):
        return str(value)


def _field_message(error: dict[str, Any], field: str, *, secret: bool) -> str:
    # A length bound on a type that also has validators is checked generically ("too_short").
    kind = {"too_short": "string_too_short", "too_long": "string_too_long"}.get(
        error["type"], error["type"]
    )
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "missing" or (kind in _TYPE_NAMES and value is None):
        return f"{field} is a required field"
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return f"{field} is a required field"
        return f"{field} must be at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"{field} must be at most {ctx.get('max_length')} characters"
    if kind in _TYPE_NAMES:
        shown = REDACTED if secret else _print_value(value)
        return f"{field} must be a `{_TYPE_NAMES[kind]}` type, but the final value was: `{shown}`."
    if kind == "nul_character":
        return f"{field} must not contain NUL characters"
    if kind == "bad_unicode":
        return f"{field} must be valid Unicode text"
    if kind.startswith("strapi_"):
        return str(error["msg"])  # our own validators speak Strapi's words already
    return f"{field} is invalid"


def _body_model(request: Request) -> type[BaseModel] | None:
    route = request.scope.get("route")
    body_field = getattr(route, "body_field", None) if isinstance(route, Route) else None
    annotation = getattr(getattr(body_field, "field_info", None), "annotation", None)
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def translate_validation(request: Request, errors: list[dict[str, Any]]) -> AppError:
    """Pydantic's errors, as Strapi's yup validation reports them (400, not FastAPI's 422)."""
    field_errors: list[tuple[list[str | int], str]] = []
    for error in errors:
        kind, loc = error["type"], tuple(error.get("loc", ()))
        if kind == "json_invalid":
            return ValidationError("Malformed JSON in request body")
        if kind == "unknown_parameters":
            return ValidationError(str(error["msg"]))
        path = [part for part in loc[1:] if isinstance(part, str | int)]
        if kind == "strapi_no_unknown":
            field_errors.append(([], str(error["msg"])))
            continue
        if loc and loc[0] == "body" and not path:
            if kind == "missing" and (model := _body_model(request)) is not None:
                # No body at all: report it as Strapi reports `{}`, field by field.
                try:
                    model.model_validate({})
                except PydanticValidationError as exc:
                    return translate_validation(
                        request, [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
                    )
            return ValidationError(_BODY_NOT_OBJECT)
        field = ".".join(str(part) for part in path) or str(loc[-1] if loc else "request")
        secret = any(is_secret_field(part) for part in path) or is_secret_field(field)
        field_errors.append((path or [field], _field_message(dict(error), field, secret=secret)))
    if not field_errors:
        return ValidationError()
    return ValidationError.from_field_errors(field_errors)


async def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return render(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return render(translate_validation(request, [dict(e) for e in exc.errors()]))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error_class = _BY_STATUS.get(exc.status_code)
    if error_class is None:
        error: AppError = InternalServerError() if exc.status_code >= 500 else ValidationError()
    elif exc.status_code == 400 and isinstance(exc.detail, str):
        error = error_class("Malformed request body")
    else:
        error = error_class()
    response = render(error)
    response.status_code = exc.status_code
    if exc.headers:
        response.headers.update(exc.headers)
    return response


# SQLSTATE classes that mean "the server cannot serve now": connection exceptions, insufficient resources
# (too many connections), operator intervention (shutting down, starting up).
def _sqlstate(error: BaseException | None) -> str:
    while error is not None:
        state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(state, str):
            return state
        error = error.__cause__
    return ""


async def _dbapi_error(request: Request, exc: Exception) -> JSONResponse:
    """A driver error: the database being unreachable is an outage (503); anything else is a bug (500)."""
    assert isinstance(exc, DBAPIError)
    if (
        exc.connection_invalidated
        or isinstance(exc.orig, OSError | ConnectionError)
        or _sqlstate(exc.orig).startswith(UNAVAILABLE_SQLSTATES)
    ):
        return await _database_unavailable(request, exc)
    return await _crash(request, exc)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The database is down, restarting, or (SQLite) locked past the busy timeout by another process: the
    # transaction was rolled back, nothing was half-written, and trying again later is the right move.
    logger.error(
        "database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    response = render(ServiceUnavailableError())
    response.headers["Retry-After"] = "1"
    return response


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return render(InternalServerError())


def install(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for unavailable in (
        OperationalError,
        InterfaceError,
        PoolTimeoutError,
        ConnectionError,
        OSError,
    ):
        app.add_exception_handler(unavailable, _database_unavailable)
    # The store's translation of driver outages (app.store).
    app.add_exception_handler(DatabaseUnavailable, _database_unavailable)
    app.add_exception_handler(DBAPIError, _dbapi_error)
    app.add_exception_handler(Exception, _crash)
