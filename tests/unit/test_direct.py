"""``DirectRoute``: documented by FastAPI, called without its parameter machinery, and refused when an endpoint
declares anything it would ignore."""

from __future__ import annotations

from typing import Any

import fastapi
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.requests import HTTPConnection

from app.api.direct import DirectRoute, _check_fastapi


class Out(BaseModel):
    name: str


async def endpoint(request: Request) -> JSONResponse:
    if request.headers.get("x-fail"):
        raise HTTPException(status_code=418)
    return JSONResponse({"name": request.url.path})


def _app() -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/api")
    router.add_api_route("/thing", endpoint, response_model=Out, route_class_override=DirectRoute)
    app.include_router(router)
    return app


async def test_it_serves_documents_and_raises_like_any_route() -> None:
    app = _app()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        assert (await client.get("/api/thing")).json() == {"name": "/api/thing"}
        assert (await client.get("/api/thing", headers={"x-fail": "1"})).status_code == 418
        assert (await client.post("/api/thing")).status_code == 405
        spec = (await client.get("/openapi.json")).json()
    schema = spec["paths"]["/api/thing"]["get"]["responses"]["200"]["content"]["application/json"]
    assert schema["schema"] == {"$ref": "#/components/schemas/Out"}


def test_the_handler_is_the_endpoint_itself() -> None:
    assert DirectRoute("/x", endpoint).get_route_handler() is endpoint


async def _with_a_parameter(request: Request, limit: int) -> JSONResponse:
    return JSONResponse({})


async def _with_a_dependency(request: Request, value: str = Depends(lambda: "x")) -> JSONResponse:
    return JSONResponse({})


async def _without_the_request() -> JSONResponse:
    return JSONResponse({})


def _sync(request: Request) -> JSONResponse:
    return JSONResponse({})


async def _with_a_connection(request: Request, connection: HTTPConnection) -> JSONResponse:
    return JSONResponse({})


@pytest.mark.parametrize(
    "refused",
    [_with_a_parameter, _with_a_dependency, _without_the_request, _sync, _with_a_connection],
)
def test_endpoints_it_would_call_wrongly_are_refused(refused: object) -> None:
    with pytest.raises(TypeError, match="DirectRoute"):
        DirectRoute("/x", refused)  # type: ignore[arg-type]


def test_router_dependencies_are_refused_too() -> None:
    router = APIRouter(dependencies=[Depends(lambda: None)])
    with pytest.raises(TypeError, match="DirectRoute"):
        router.add_api_route("/x", endpoint, route_class_override=DirectRoute)


def _included(app: FastAPI, **include: Any) -> FastAPI:
    router = APIRouter()
    router.add_api_route("/x", endpoint, route_class_override=DirectRoute)
    app.include_router(router, **include)
    return app


def test_dependencies_given_at_include_time_are_refused() -> None:
    app = _included(FastAPI(), dependencies=[Depends(lambda: None)])
    with pytest.raises(TypeError, match="DirectRoute"):
        app.openapi()


async def test_app_wide_dependencies_are_refused_at_the_first_request_too() -> None:
    app = _included(FastAPI(dependencies=[Depends(lambda: None)]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        with pytest.raises(TypeError, match="DirectRoute"):
            await client.get("/x")


async def test_an_include_without_dependencies_is_served() -> None:
    app = _included(FastAPI(), prefix="/p", tags=["t"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        assert (await client.get("/p/x")).json() == {"name": "/p/x"}


def test_app_wide_dependencies_are_refused_on_the_apps_own_router() -> None:
    app = FastAPI(dependencies=[Depends(lambda: None)])
    with pytest.raises(TypeError, match="DirectRoute"):
        app.router.add_api_route("/x", endpoint, route_class_override=DirectRoute)


async def test_a_route_of_the_apps_own_is_served_and_documented() -> None:
    app = FastAPI()
    app.router.add_api_route("/x", endpoint, response_model=Out, route_class_override=DirectRoute)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        assert (await client.get("/x")).json() == {"name": "/x"}
        assert (await client.post("/x")).status_code == 405
        spec = (await client.get("/openapi.json")).json()
    assert "/x" in spec["paths"]


def test_the_fastapi_in_use_is_one_direct_route_was_checked_against() -> None:
    _check_fastapi(fastapi.__version__)  # the start would have failed otherwise
    _check_fastapi("0.165.9")


@pytest.mark.parametrize("version", ["0.164.2", "0.166.0", "1.0.0", "garbage"])
def test_another_fastapi_stops_the_start_naming_the_versions(version: str) -> None:
    with pytest.raises(RuntimeError, match=rf"checked on 0\.165\.x; this is FastAPI {version}"):
        _check_fastapi(version)
