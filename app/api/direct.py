"""Routes FastAPI documents but does not call through its parameter machinery: for the hottest routes."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

import fastapi
from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

# DirectRoute leans on a private name of FastAPI, so FastAPI is pinned (pyproject.toml) to the minor versions it was
# checked against, and any other stops the start with this error rather than misrouting requests.
SUPPORTED_FASTAPI = ((0, 165),)


def _check_fastapi(version: str) -> None:
    major_minor = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if major_minor not in SUPPORTED_FASTAPI:
        supported = ", ".join(f"{major}.{minor}.x" for major, minor in SUPPORTED_FASTAPI)
        raise RuntimeError(
            f"refreshd's DirectRoute (app/api/direct.py) uses FastAPI internals checked on {supported}; "
            f"this is FastAPI {version}: install a supported version (`uv sync --frozen`), or check "
            "DirectRoute against this one and add it to SUPPORTED_FASTAPI"
        )


_check_fastapi(fastapi.__version__)

# FastAPI 0.165 builds an included route's handler (lazily: for the first request that reaches it, or the first
# OpenAPI document) with this set to the route as included, whose dependant then also carries the dependencies
# given to include_router() and FastAPI().
from fastapi.routing import _effective_route_context_var  # noqa: E402 - only after the version check


def _refuse_unless_request_only(dependant: Dependant, path: str) -> None:
    declares_more = (
        dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.dependencies
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
    )
    if declares_more or dependant.request_param_name is None:
        raise TypeError(f"{path}: a DirectRoute endpoint takes the Request and nothing else")


class DirectRoute(APIRoute):
    """A route whose endpoint takes only the ``Request`` and returns its own ``Response``.

    FastAPI documents it like any other (response model, errors, ``openapi_extra``), and its exception handlers
    and middleware apply as usual, but the endpoint is called directly: FastAPI's request handler would otherwise
    resolve parameters there are none of, build a sub-response for dependencies' headers and open telemetry
    contexts, on every request (bench/results/ab.md). An endpoint that declares anything besides the request is
    refused when the route is declared; dependencies given to ``include_router()`` or ``FastAPI()`` when FastAPI
    builds the included route (the first OpenAPI document or request: tests of the route then fail). Nothing is
    silently ignored.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The endpoint itself, once it is known to need nothing but the request. FastAPI asks for the handler when
        the route is declared (its own dependant) and again when it builds the route as included (the dependant
        with include_router()'s and the app's dependencies too)."""
        context = _effective_route_context_var.get()
        dependant: Dependant = self.dependant
        if context is not None and getattr(context, "original_route", None) is self:
            dependant = context.dependant
        _refuse_unless_request_only(dependant, self.path)
        if not inspect.iscoroutinefunction(self.endpoint):
            raise TypeError(f"{self.path}: a DirectRoute endpoint is an async function")
        handler: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return handler
