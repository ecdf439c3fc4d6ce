"""Who may read /metrics: production keeps it off unless it is behind METRICS_TOKEN or alone on METRICS_PORT."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import ValidationError as PydanticValidationError

from app.main import create_app
from app.settings import Settings
from tests.api.helpers import bearer, error_of
from tests.cli_support import run_cli
from tests.conftest import Harness
from tests.support import FakeClock

TOKEN = "metrics-scrape-token-" + "m" * 32


@asynccontextmanager
async def _production_client(
    settings_factory: Callable[..., Settings], **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A production app over HTTP. Its lifespan is not started (it would tune this process's garbage
    collector): /metrics and routing need no database."""
    settings = settings_factory(environment="production", log_format="text", **overrides)
    app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield client


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_production_serves_no_metrics_by_default(
    settings_factory: Callable[..., Settings],
) -> None:
    async with _production_client(settings_factory) as client:
        assert (await client.get("/metrics")).status_code == 404


async def test_production_serves_metrics_when_enabled_explicitly(
    settings_factory: Callable[..., Settings],
) -> None:
    async with _production_client(settings_factory, metrics_enabled=True) as client:
        assert (await client.get("/metrics")).status_code == 200


async def test_metrics_token_requires_that_bearer(
    settings_factory: Callable[..., Settings],
) -> None:
    async with _production_client(settings_factory, metrics_token=TOKEN) as client:
        refused = [
            await client.get("/metrics"),
            await client.get("/metrics", headers=bearer("x" * len(TOKEN))),
            await client.get("/metrics", headers=bearer(TOKEN[:-1])),
            await client.get("/metrics", headers=bearer(TOKEN + "x")),
            await client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}),
            await client.get(
                "/metrics", headers=[(b"authorization", "Bearer \u00e9\u00e8".encode("latin-1"))]
            ),
        ]
        for response in refused:
            assert response.status_code == 401
            assert error_of(response)["name"] == "UnauthorizedError"
            assert response.headers["www-authenticate"] == 'Bearer realm="metrics"'
            assert "refreshd_http_requests_total" not in response.text
        allowed = await client.get("/metrics", headers=bearer(TOKEN))
        assert allowed.status_code == 200
        # The refusals were counted like any other request.
        assert 'route="/metrics",status="401"' in allowed.text


async def test_metrics_port_serves_metrics_apart(
    harness: Harness, settings_factory: Callable[..., Settings], clock: FakeClock
) -> None:
    port = _free_port()
    settings = settings_factory(metrics_port=port, metrics_token=TOKEN)
    client = await harness.client(settings)
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/metrics", headers=bearer(TOKEN))).status_code == 404
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as scraper:
        assert (await scraper.get("/metrics")).status_code == 401
        scraped = await scraper.get("/metrics", headers=bearer(TOKEN))
        assert scraped.status_code == 200
        assert 'route="/healthz",status="200"' in scraped.text
        assert (await scraper.get("/api/users/me", headers=bearer(TOKEN))).status_code == 404
    await harness.close()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as late:
            await late.get(f"http://127.0.0.1:{port}/metrics")


async def test_a_metrics_port_in_use_stops_the_start(
    settings_factory: Callable[..., Settings],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        app = create_app(settings_factory(metrics_port=taken.getsockname()[1]))
        with pytest.raises(RuntimeError, match=r"METRICS_PORT: cannot listen on 127\.0\.0\.1"):
            async with app.router.lifespan_context(app):
                pass


def test_a_weak_metrics_token_is_refused_in_production(
    settings_factory: Callable[..., Settings],
) -> None:
    with pytest.raises(PydanticValidationError, match="METRICS_TOKEN is shorter than"):
        settings_factory(environment="production", metrics_token="short")


def test_serve_refuses_a_metrics_port_with_several_workers() -> None:
    result = run_cli(
        "sqlite+aiosqlite:///unused.db", "serve", "--workers", "2", METRICS_PORT="9464"
    )
    assert result.returncode == 1
    assert "METRICS_PORT is one process's listener" in result.stderr


def test_blank_metrics_settings_are_unset(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(metrics_token="  ", metrics_port="")
    assert (settings.metrics_token, settings.metrics_port) == (None, None)
