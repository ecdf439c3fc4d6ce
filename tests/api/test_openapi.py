from __future__ import annotations

import httpx

from tests.api.test_register import USER_KEYS

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
