"""``app.api.bodies``: the content-type test, and what reading a body raises, on Starlette requests built from ASGI
scopes (the HTTP behaviour is in tests/api/test_refresh_bodies.py)."""

from __future__ import annotations

import email.message

import pytest
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, StrictStr, TypeAdapter
from starlette.requests import Request
from starlette.types import Message

from app.api.bodies import is_json, optional_json


class Sample(BaseModel):
    name: StrictStr


ADAPTER: TypeAdapter[Sample | None] = TypeAdapter(Sample | None)


def _fastapi_is_json(content_type: str) -> bool:
    """FastAPI 0.165's own test (fastapi/routing.py), for comparison."""
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() == "application":
        subtype = message.get_content_subtype()
        return subtype == "json" or subtype.endswith("+json")
    return False


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON", True),
        ("application/json ;charset=x", True),
        ("application/vnd.api+json", True),
        ("application/problem+json; charset=utf-8", True),
        ("application/jsonx", False),
        ("application/json-seq", False),
        ("text/json", False),
        ("text/plain", False),
        ("json", False),
        ("", False),
        ("application/", False),
        ("multipart/form-data; boundary=x", False),
    ],
)
def test_json_content_types_are_the_ones_fastapi_parses(content_type: str, expected: bool) -> None:
    assert is_json(content_type) is expected
    assert _fastapi_is_json(content_type) is expected


def test_no_content_type_is_not_json() -> None:
    assert is_json(None) is False


def _request(body: bytes | None, content_type: str | None = "application/json") -> Request:
    """A POST whose body arrives in one message, or (``body`` None) whose client disconnects instead."""
    headers = [] if content_type is None else [(b"content-type", content_type.encode())]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}

    async def receive() -> Message:
        if body is None:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


async def test_a_body_is_validated_in_one_pass() -> None:
    assert await optional_json(_request(b'{"name": "a"}'), ADAPTER) == Sample(name="a")
    assert await optional_json(_request(b""), ADAPTER) is None
    assert await optional_json(_request(b"null"), ADAPTER) is None


async def test_field_errors_are_located_in_the_body() -> None:
    with pytest.raises(RequestValidationError) as caught:
        await optional_json(_request(b'{"name": 1}'), ADAPTER)
    assert [(e["type"], e["loc"]) for e in caught.value.errors()] == [
        ("string_type", ("body", "name"))
    ]


async def test_field_errors_are_located_in_the_body_after_the_slow_path_too() -> None:
    with pytest.raises(RequestValidationError) as caught:
        await optional_json(_request(b'\xef\xbb\xbf{"name": 1}'), ADAPTER)
    assert [(e["type"], e["loc"]) for e in caught.value.errors()] == [
        ("string_type", ("body", "name"))
    ]


async def test_malformed_json_is_reported_with_its_position() -> None:
    with pytest.raises(RequestValidationError) as caught:
        await optional_json(_request(b'{"name": '), ADAPTER)
    (error,) = caught.value.errors()
    assert (error["type"], error["loc"]) == ("json_invalid", ("body", 9))


async def test_a_body_that_is_not_json_is_validated_as_bytes() -> None:
    with pytest.raises(RequestValidationError) as caught:
        await optional_json(_request(b'{"name": "a"}', "text/plain"), ADAPTER)
    (error,) = caught.value.errors()
    assert error["loc"] == ("body",)


@pytest.mark.parametrize(
    "body", [None, b'{"name": "\xff"}', b"[" * 100_000], ids=["disconnect", "bad-utf8", "deep"]
)
async def test_an_unreadable_body_is_fastapis_400(body: bytes | None) -> None:
    with pytest.raises(HTTPException) as caught:
        await optional_json(_request(body), ADAPTER)
    assert caught.value.status_code == 400
