"""Everything the client can get wrong at the HTTP level comes back in Strapi's envelope, never as a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from tests.api.helpers import error_of
from tests.support import FakeClock


async def test_unknown_path_is_a_404_envelope(client: httpx.AsyncClient) -> None:
    for method in ("GET", "POST", "DELETE"):
        response = await client.request(method, "/api/nothing-here")
        assert response.status_code == 404
        assert error_of(response) == {
            "status": 404,
            "name": "NotFoundError",
            "message": "Not Found",
            "details": {},
        }


async def test_wrong_method_is_a_405_envelope_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/auth/local")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert error_of(response)["name"] == "MethodNotAllowedError"


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b'{"identifier": "a",', "application/json", "Malformed JSON in request body"),
        (b"\xff\xfe\x00garbage", "application/json", "Malformed JSON in request body"),
        (b"[]", "application/json", "Request body must be a JSON object"),
        (b'"text"', "application/json", "Request body must be a JSON object"),
        (b"null", "application/json", "Request body must be a JSON object"),
        (b"identifier=a&password=b", "application/x-www-form-urlencoded", None),
        (b"hello", "text/plain", "Request body must be a JSON object"),
    ],
)
async def test_bodies_that_are_not_json_objects(
    client: httpx.AsyncClient, content: bytes, content_type: str, message: str | None
) -> None:
    response = await client.post(
        "/api/auth/local", content=content, headers={"content-type": content_type}
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["name"] == "ValidationError"
    if message is not None:
        assert error["message"] == message


async def test_empty_body_reports_each_missing_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/local")
    assert response.status_code == 400
    assert error_of(response)["message"] == "2 errors occurred"


@pytest.fixture
async def crashing_client(settings: Settings, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, clock=clock)

    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    app.add_api_route("/boom", boom)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://testserver",
        ) as client,
    ):
        yield client


async def test_a_crash_is_a_500_envelope_without_internals(
    crashing_client: httpx.AsyncClient,
) -> None:
    response = await crashing_client.get("/boom")
    assert response.status_code == 500
    assert error_of(response) == {
        "status": 500,
        "name": "InternalServerError",
        "message": "Internal Server Error",
        "details": {},
    }
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/auth/local", {"identifier": "al\u0000ice", "password": "x"}),
        ("/api/auth/local", {"identifier": "alice", "password": "pass\u0000word"}),
        (
            "/api/auth/local/register",
            {"username": "a\u0000b", "email": "a@b.co", "password": "123456"},
        ),
        ("/api/auth/refresh", {"refreshToken": "abc\u0000def"}),
    ],
)
async def test_nul_characters_are_a_validation_error(
    client: httpx.AsyncClient, path: str, body: dict[str, str]
) -> None:
    response = await client.post(path, json=body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["name"] == "ValidationError"
    assert error["message"].endswith("must not contain NUL characters")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/auth/local", '{"identifier": "\\ud800", "password": "x"}', "identifier"),
        ("/api/auth/local", '{"identifier": "alice", "password": "x\\udfff"}', "password"),
        (
            "/api/auth/local/register",
            '{"username": "a\\ud800b", "email": "a@example.com", "password": "123456"}',
            "username",
        ),
    ],
)
async def test_lone_surrogates_are_a_validation_error(
    client: httpx.AsyncClient, path: str, body: str, field: str
) -> None:
    """A lone surrogate could not be encoded for the database or the hash: it was a 500."""
    response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["message"] == f"{field} must be valid Unicode text"
