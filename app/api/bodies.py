"""Optional JSON request bodies parsed by pydantic straight from the bytes, for the hottest routes.

For a declared body FastAPI checks the content type through ``email.message``, decodes the bytes with
``json.loads`` and validates the objects that makes: a share of a PostgreSQL refresh's CPU worth saving
(bench/results/ab.md).
``optional_json`` has pydantic parse and validate the bytes in one pass, and answers every other case as FastAPI
does (same exceptions, same error locations), so the error handlers render the same envelopes. A route that reads
its body this way documents it with ``openapi_body``.
"""

from __future__ import annotations

import email.message
import json
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import ClientDisconnect

_UNREADABLE = "There was an error parsing the body"

T = TypeVar("T")


def is_json(content_type: str | None) -> bool:
    """FastAPI's test, strict content type: ``application/json`` or ``application/*+json``, parameters aside. No
    header means no JSON. The exact value every JSON client sends skips the parser."""
    if content_type is None:
        return False
    if content_type == "application/json":
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def _in_body(exc: PydanticValidationError) -> RequestValidationError:
    """Pydantic's errors located in the body, as FastAPI reports a declared body's."""
    return RequestValidationError(
        [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
    )


async def optional_json(request: Request, adapter: TypeAdapter[T | None]) -> T | None:
    """The request's body validated by ``adapter`` (a model or None), or None when there is no body.

    Bytes that pydantic's parser refuses go through ``json.loads`` as in FastAPI, which also reads a byte-order
    mark, UTF-16 and UTF-32, and reports malformed JSON with its position."""
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise HTTPException(status_code=400, detail=_UNREADABLE) from None
    if not raw:
        return None
    if not is_json(request.headers.get("content-type")):
        # Not parsed at all: the raw bytes are what FastAPI validates, and they are not an object.
        raise RequestValidationError(
            [
                {
                    "type": "model_attributes_type",
                    "loc": ("body",),
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "input": raw,
                }
            ]
        )
    try:
        return adapter.validate_json(raw)
    except PydanticValidationError as exc:
        if not any(error["type"] == "json_invalid" for error in exc.errors()):
            raise _in_body(exc) from None
    try:
        decoded = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ],
            body=exc.doc,
        ) from None
    except (ValueError, RecursionError):  # not UTF-8/16/32, nested too deep, an integer too long
        raise HTTPException(status_code=400, detail=_UNREADABLE) from None
    try:
        return adapter.validate_python(decoded)
    except PydanticValidationError as exc:
        raise _in_body(exc) from None


# The models ``openapi_body`` documented, for the document's components (filled as the routes are declared).
_DOCUMENTED: dict[str, type[BaseModel]] = {}


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads an optional ``model`` with ``optional_json``: the request body
    FastAPI documents for ``body: model | None = Body(default=None)``. The model's schema goes into the
    components through ``openapi_components``, as FastAPI would have put it."""
    _DOCUMENTED[model.__name__] = model
    reference = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {"anyOf": [reference, {"type": "null"}], "title": "Body"}
                }
            }
        }
    }


def openapi_components() -> dict[str, Any]:
    """The schemas of the models ``openapi_body`` refers to."""
    return {
        name: model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, model in _DOCUMENTED.items()
    }
