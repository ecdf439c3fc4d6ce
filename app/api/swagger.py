"""``/docs``: Swagger UI, served whole by the service, so the page works without internet access.

Swagger UI's files come from the ``fastapi-swagger`` package, which republishes each Swagger UI release (its
bundle and stylesheet, unchanged) as a wheel: they are locked in ``uv.lock`` like any dependency, and no file is
copied into this repository by hand. Only the page's three files are served, from memory, under
``/docs/assets/<package version>/`` so that a new release is never mixed with a browser's cached old one.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata, resources

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from app.errors import NotFoundError

DOCS_PATH = "/docs"
ASSETS_PACKAGE = "fastapi_swagger"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
# Versioned URLs: a browser may keep them for a day without ever showing a stale page.
ASSET_CACHE_CONTROL = "public, max-age=86400"
SWAGGER_UI_PARAMETERS = {
    # Swagger UI would otherwise show a badge loaded from validator.swagger.io: an outside request.
    "validatorUrl": None,
    "displayRequestDuration": True,
    "defaultModelsExpandDepth": 0,
}


def assets_path() -> str:
    return f"{DOCS_PATH}/assets/{metadata.version('fastapi-swagger')}"


@cache
def _asset(name: str) -> bytes:
    """One file of the package, read on first use (the bundle is large: no app pays for it unless asked)."""
    return (resources.files(ASSETS_PACKAGE) / "resources" / name).read_bytes()


def add_docs_routes(app: FastAPI, openapi_url: str) -> None:
    """The page and its files. FastAPI's own docs routes stay off (``docs_url=None``): they load from a CDN."""
    assets = assets_path()

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{assets}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets}/favicon-32x32.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    async def asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise NotFoundError()
        return Response(
            _asset(name),
            media_type=media_type,
            headers={"Cache-Control": ASSET_CACHE_CONTROL, "X-Content-Type-Options": "nosniff"},
        )

    app.add_api_route(DOCS_PATH, swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(f"{assets}/{{name}}", asset, methods=["GET"], include_in_schema=False)
