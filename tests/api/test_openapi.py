from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.routing import APIRoute
from starlette.routing import Route

from app.main import create_app
from tests.api.test_register import USER_KEYS
from tests.support import make_settings

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
    assert sections == ["auth", "account", "users", "sessions", "health"]
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
