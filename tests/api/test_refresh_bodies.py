"""The refresh body, which the route reads with pydantic straight from the bytes (app/api/bodies.py): every way of
sending it gets the answer FastAPI's own body reading gave (compared case by case against the previous version of
the route when the change was made)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from tests.api.helpers import error_of, registered_with_refresh

PATH = "/api/auth/local/refresh"
JSON = "application/json"


def _body(token: str) -> bytes:
    return json.dumps({"refreshToken": token}).encode()


Encode = Callable[[str], bytes]

ACCEPTED: list[tuple[str, Encode, str]] = [
    ("plain", _body, JSON),
    ("charset parameter", _body, "application/json; charset=utf-8"),
    ("upper case type", _body, "APPLICATION/JSON"),
    ("space before the parameters", _body, "application/json ;charset=x"),
    ("structured +json type", _body, "application/vnd.api+json"),
    ("byte-order mark", lambda t: b"\xef\xbb\xbf" + _body(t), JSON),
    ("UTF-16", lambda t: _body(t).decode().encode("utf-16"), JSON),
    ("surrounding whitespace", lambda t: b" \n" + _body(t) + b"\n ", JSON),
    ("escaped characters", lambda t: _body(t).replace(b".", b"\\u002e"), JSON),
    (
        "unknown keys",
        lambda t: json.dumps({"refreshToken": t, "x": [1, {"y": None}]}).encode(),
        JSON,
    ),
    ("duplicate key, last wins", lambda t: b'{"refreshToken": "zzz", ' + _body(t)[1:], JSON),
    ("NaN beside it", lambda t: _body(t)[:-1] + b', "x": NaN}', JSON),
    ("a lone surrogate beside it", lambda t: _body(t)[:-1] + b', "x": "\\ud800"}', JSON),
    (
        "a 4,000-digit integer beside it",
        lambda t: _body(t)[:-1] + b', "x": 1' + b"0" * 4000 + b"}",
        JSON,
    ),
]


@pytest.mark.parametrize(
    ("encode", "content_type"),
    [case[1:] for case in ACCEPTED],
    ids=[case[0] for case in ACCEPTED],
)
async def test_the_token_is_read_from_any_json_a_client_may_send(
    client: httpx.AsyncClient, encode: Encode, content_type: str
) -> None:
    token = (await registered_with_refresh(client))["refreshToken"]
    response = await client.post(
        PATH, content=encode(token), headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text
    assert response.json()["jwt"]


MISSING = "Missing refresh token"
NOT_OBJECT = "Request body must be a JSON object"
MALFORMED_JSON = "Malformed JSON in request body"
UNREADABLE = "Malformed request body"

REFUSED: list[tuple[str, bytes, str | None, str]] = [
    ("no body, no type", b"", None, MISSING),
    ("empty JSON body", b"", JSON, MISSING),
    ("empty object", b"{}", JSON, MISSING),
    ("null", b"null", JSON, MISSING),
    ("token null", b'{"refreshToken": null}', JSON, MISSING),
    ("token a number", b'{"refreshToken": 1}', JSON, MISSING),
    ("token a list", b'{"refreshToken": ["a"]}', JSON, MISSING),
    ("token empty", b'{"refreshToken": ""}', JSON, MISSING),
    ("a list", b"[]", JSON, NOT_OBJECT),
    ("a string", b'"t"', JSON, NOT_OBJECT),
    ("a number", b"1", JSON, NOT_OBJECT),
    ("true", b"true", JSON, NOT_OBJECT),
    ("JSON without a content type", b'{"refreshToken": "a"}', None, NOT_OBJECT),
    ("JSON as text/plain", b'{"refreshToken": "a"}', "text/plain", NOT_OBJECT),
    ("JSON as application/xml", b'{"refreshToken": "a"}', "application/xml", NOT_OBJECT),
    ("JSON with an empty content type", b'{"refreshToken": "a"}', "", NOT_OBJECT),
    ("JSON with a bare json type", b'{"refreshToken": "a"}', "json", NOT_OBJECT),
    ("a form", b"refreshToken=abc", "application/x-www-form-urlencoded", NOT_OBJECT),
    ("truncated", b'{"refreshToken": "a', JSON, MALFORMED_JSON),
    ("trailing garbage", b'{"refreshToken": "a"} x', JSON, MALFORMED_JSON),
    ("two documents", b'{"refreshToken": "a"}{"refreshToken": "a"}', JSON, MALFORMED_JSON),
    ("binary garbage", b"\xff\xfe\x00garbage", JSON, MALFORMED_JSON),
    ("invalid UTF-8", b'{"refreshToken": "\xff\xfe"}', JSON, UNREADABLE),
    ("nested 5,000 deep", b'{"a":' * 5000 + b"1" + b"}" * 5000, JSON, UNREADABLE),
]


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
async def test_bodies_without_a_usable_token_get_strapis_400(
    client: httpx.AsyncClient, content: bytes, content_type: str | None, message: str
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = await client.post(PATH, content=content, headers=headers)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["name"], error["message"]) == ("ValidationError", message)


async def test_a_refresh_token_that_is_not_a_string_is_missing(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/refresh", json={"refreshToken": 123})
    assert error_of(response)["message"] == "Missing refresh token"


async def test_a_token_that_is_not_unicode_text_is_a_field_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        PATH, content=b'{"refreshToken": "\\ud800"}', headers={"content-type": JSON}
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["details"]["errors"] == [
        {
            "path": ["refreshToken"],
            "message": "refreshToken must be valid Unicode text",
            "name": "ValidationError",
        }
    ]


async def test_a_body_over_the_limit_is_a_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        PATH,
        content=b'{"refreshToken": "' + b"a" * 2_000_000 + b'"}',
        headers={"content-type": JSON},
    )
    assert response.status_code == 413
    assert error_of(response)["name"] == "PayloadTooLargeError"


async def test_the_document_still_names_the_request_model(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in (PATH, "/api/auth/refresh"):
        schema = spec["paths"][path]["post"]["requestBody"]["content"][JSON]["schema"]
        assert schema["anyOf"] == [
            {"$ref": "#/components/schemas/RefreshRequest"},
            {"type": "null"},
        ]
    model = spec["components"]["schemas"]["RefreshRequest"]
    assert list(model["properties"]) == ["refreshToken"]
