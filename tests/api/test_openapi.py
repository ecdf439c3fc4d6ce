from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from app.api.openapi import OPERATION_IDS, RATE_LIMIT_HEADERS, SECURITY
from app.api.ratelimit_storage import Budget
from app.main import create_app
from app.security.tokens import TokenProblem
from app.services.reuse import Rejection
from tests.api.test_register import USER_KEYS
from tests.support import ROOT, make_settings

ROUTES = {
    ("/api/auth/local", "post"),
    ("/api/auth/local/register", "post"),
    ("/api/users/me", "get"),
}


async def test_docs_page_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger-ui" in response.text.lower()


async def test_every_route_documents_its_models_and_errors(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operations = {
        (path, method): op for path, item in spec["paths"].items() for method, op in item.items()
    }
    assert set(operations) >= ROUTES
    for key in ROUTES:
        op = operations[key]
        responses = op["responses"]
        assert "422" not in responses, key
        assert "200" in responses
        assert "schema" in responses["200"]["content"]["application/json"]
        error_codes = {"400"} if key[1] == "post" else {"401", "403"}
        for code in error_codes:
            ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorEnvelope"), (key, code)
        if key[1] == "post":
            assert "requestBody" in op
        assert op.get("summary")
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert list(schemas["UserOut"]["properties"]) == USER_KEYS
    assert schemas["RegisterRequest"]["additionalProperties"] is False


async def test_sections_come_in_a_fixed_order_and_name_every_route(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    sections = [tag["name"] for tag in spec["tags"]]
    assert sections == ["auth", "account", "users", "sessions", "keys", "health"]
    assert all(tag["description"] for tag in spec["tags"])
    for path, item in spec["paths"].items():
        for method, op in item.items():
            (tag,) = op["tags"]
            assert tag in sections, (path, method)
    assert spec["paths"]["/api/users/me"]["get"]["tags"] == ["users"]
    assert spec["paths"]["/api/auth/local/refresh"]["post"]["tags"] == ["auth"]


def test_the_hottest_routes_are_the_apps_own(tmp_path: Path) -> None:
    """Refresh and /users/me are matched before any included router (app.main says why)."""
    routes = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path}/x.db")).router.routes
    position = {route.path: i for i, route in enumerate(routes) if isinstance(route, APIRoute)}
    first_included = min(i for i, route in enumerate(routes) if not isinstance(route, Route))
    for path in ("/api/auth/local/refresh", "/api/auth/refresh", "/api/users/me"):
        assert position[path] < first_included, path


# --- what the document says the service does (issue #20) -----------------------------------------------------

ENVELOPE = "#/components/schemas/ErrorEnvelope"
ERROR_NAMES = {
    400: {"ValidationError", "ApplicationError"},
    401: {"UnauthorizedError"},
    403: {"ForbiddenError"},
    404: {"NotFoundError"},
    413: {"PayloadTooLargeError"},
    429: {"RateLimitError"},
    500: {"InternalServerError"},
    503: {"ServiceUnavailableError"},
}
# Every `code=...` the application passes to an error, and every enum it builds codes from.
CODE_LITERAL = re.compile(r"""\bcode=["']([A-Z][A-Z_]+)["']""")


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    database = tmp_path_factory.mktemp("openapi") / "x.db"
    spec: dict[str, Any] = create_app(make_settings(f"sqlite+aiosqlite:///{database}")).openapi()
    return spec


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): op
        for path, item in document["paths"].items()
        for method, op in item.items()
    }


def test_operation_ids_are_the_hand_chosen_ones(document: dict[str, Any]) -> None:
    operations = _operations(document)
    assert set(operations) == set(OPERATION_IDS), "a new route needs a name in OPERATION_IDS"
    ids = [op["operationId"] for op in operations.values()]
    assert len(ids) == len(set(ids))
    for key, op in operations.items():
        assert op["operationId"] == OPERATION_IDS[key]
        assert re.fullmatch(r"[a-z][A-Za-z]+", op["operationId"]), op["operationId"]


def test_who_may_call_each_operation(document: dict[str, Any]) -> None:
    operations = {op["operationId"]: op for op in _operations(document).values()}
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["refreshCookie"] == {
        **schemes["refreshCookie"],
        "type": "apiKey",
        "in": "cookie",
        "name": "refreshToken",
    }
    for name, op in operations.items():
        assert op["security"] == SECURITY.get(name, []), name
    assert operations["login"]["security"] == []
    assert operations["getMe"]["security"] == [{"bearerAuth": []}]
    assert {} in operations["logout"]["security"]


def test_the_cookies_are_documented_where_they_are_read_and_set(tmp_path: Path) -> None:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path}/x.db", cookie_name="rt", strapi_cookie_name="st"
    )
    spec = create_app(settings).openapi()
    operations = {op["operationId"]: op for op in _operations(spec).values()}
    schemes = spec["components"]["securitySchemes"]
    assert schemes["refreshCookie"]["name"] == "rt"
    assert schemes["strapiRefreshCookie"]["name"] == "st"
    for name in ("refresh", "refreshPlugin", "logout"):
        cookies = [p for p in operations[name]["parameters"] if p["in"] == "cookie"]
        assert [c["name"] for c in cookies] == ["rt", "st"]  # read in this order, then the body
        assert not any(c["required"] for c in cookies)
    asked = {
        name
        for name, op in operations.items()
        if any(p["name"] == "x-strapi-refresh-cookie" for p in op.get("parameters", []))
    }
    assert asked == {"login", "register", "refresh", "refreshPlugin", "logout"}
    for name in (
        "login",
        "register",
        "refresh",
        "refreshPlugin",
        "changePassword",
        "resetPassword",
    ):
        assert "Set-Cookie" in operations[name]["responses"]["200"]["headers"], name
    cleared = operations["logout"]["responses"]["200"]["headers"]["Set-Cookie"]["$ref"]
    assert cleared.endswith("/ClearRefreshCookie")
    examples = spec["components"]["headers"]["SetRefreshCookie"]["schema"]["examples"]
    assert [example.split("=")[0] for example in examples] == ["rt", "st"]
    assert "Set-Cookie" not in operations["getMe"]["responses"]["200"].get("headers", {})


def test_every_error_status_has_its_own_examples(document: dict[str, Any]) -> None:
    seen_statuses: set[int] = set()
    for key, op in _operations(document).items():
        for status, response in op["responses"].items():
            media = response.get("content", {}).get("application/json", {})
            if media.get("schema", {}).get("$ref") != ENVELOPE:
                continue
            examples = media["examples"]
            assert examples, (key, status)
            for example in examples.values():
                error = example["value"]["error"]
                assert error["status"] == int(status), (key, status)
                assert error["name"] in ERROR_NAMES[int(status)], (key, status)
            seen_statuses.add(int(status))
    assert seen_statuses == set(ERROR_NAMES)


def test_every_details_code_is_listed(document: dict[str, Any]) -> None:
    """The codes in ErrorCode are exactly the ones the application can send."""
    sent = {problem.value for problem in TokenProblem} | {reason.value for reason in Rejection}
    for source in (ROOT / "app").rglob("*.py"):
        sent |= set(CODE_LITERAL.findall(source.read_text()))
    schemas = document["components"]["schemas"]
    listed = schemas["ErrorCode"]["enum"]
    assert set(listed) == sent
    for code in listed:
        assert f"`{code}`" in schemas["ErrorCode"]["description"]
    assert schemas["ErrorDetails"]["properties"]["code"] == {
        "$ref": "#/components/schemas/ErrorCode"
    }
    operations = {op["operationId"]: op for op in _operations(document).values()}
    refresh = operations["refresh"]["responses"]["401"]["content"]["application/json"]["examples"]
    codes = {example["value"]["error"]["details"].get("code") for example in refresh.values()}
    assert codes == {reason.value for reason in Rejection}
    me = operations["getMe"]["responses"]["401"]["content"]["application/json"]["examples"]
    codes = {example["value"]["error"]["details"].get("code") for example in me.values()}
    assert codes >= {problem.value for problem in TokenProblem}


def test_rate_limited_and_unavailable_answers_document_their_headers(
    document: dict[str, Any],
) -> None:
    refusal = Budget(limit=10, remaining=0, reset=1_795_000_000, retry_after=7).refusal()
    assert refusal.headers is not None
    rate_limited = 0
    for key, op in _operations(document).items():
        responses = op["responses"]
        if "429" in responses:
            rate_limited += 1
            assert set(responses["429"]["headers"]) == set(refusal.headers), key
            assert set(responses["200"]["headers"]) >= set(RATE_LIMIT_HEADERS), key
        if "503" in responses:
            assert set(responses["503"]["headers"]) == {"Retry-After"}, key
        assert "413" in responses, key  # MAX_BODY_SIZE applies to every request
    assert rate_limited == 6
    for name in refusal.headers:
        assert document["components"]["headers"][name]["schema"] == {"type": "integer"}


def test_email_confirmation_documents_its_redirect(document: dict[str, Any]) -> None:
    redirect = document["paths"]["/api/auth/email-confirmation"]["get"]["responses"]["302"]
    assert "content" not in redirect
    assert redirect["headers"] == {"Location": {"$ref": "#/components/headers/Location"}}


def test_success_examples_and_times(document: dict[str, Any]) -> None:
    for key, op in _operations(document).items():
        media = op["responses"].get("200", {}).get("content", {}).get("application/json")
        if media is not None:
            assert media.get("examples"), key
    schemas = document["components"]["schemas"]
    for model, fields in {
        "UserOut": ("createdAt", "updatedAt", "publishedAt"),
        "SessionOut": ("loginAt", "lastActiveAt"),
    }.items():
        for name in fields:
            assert schemas[model]["properties"][name]["format"] == "date-time", (model, name)


def test_info_servers_and_license(document: dict[str, Any]) -> None:
    assert document["info"]["license"] == {"name": "MIT", "identifier": "MIT"}
    assert document["servers"] == [
        {"url": "/", "description": document["servers"][0]["description"]}
    ]
    assert "ErrorCode" in document["info"]["description"]


async def test_the_served_document_is_the_built_one(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    served = (await client.get("/openapi.json")).json()
    assert served == document
