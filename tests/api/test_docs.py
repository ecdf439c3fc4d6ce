"""``/docs`` works without internet access (every file it loads is the service's own), and DOCS_ENABLED turns the
documentation off: by default in production."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api.swagger import ASSETS, assets_path
from app.main import create_app
from app.settings import Settings
from tests.api.helpers import PASSWORD, register
from tests.conftest import Harness
from tests.support import make_settings

# Where a page says what to load: attributes, and the document's URL in Swagger UI's set-up script.
LOADED = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|\burl\s*:\s*["']([^"']+)["']""")
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
    ".json": ("application/json",),
}


@pytest.fixture
def settings_of(tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        return make_settings(f"sqlite+aiosqlite:///{tmp_path}/docs.db", **overrides)

    return build


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app over HTTP; these routes need no database, so the lifespan is not started."""
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_the_page_loads_only_the_services_own_files(
    settings_of: Callable[..., Settings],
) -> None:
    async with served(settings_of()) as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "SwaggerUIBundle" in page.text
        # No CDN, no validator badge, no outside URL of any kind.
        assert "http://" not in page.text
        assert "https://" not in page.text
        urls = {a or b for a, b in LOADED.findall(page.text)}
        assert {Path(url).suffix for url in urls} == set(CONTENT_TYPES), urls
        for url in urls:
            assert url.startswith("/"), url
            assert not url.startswith("//"), url
            response = await client.get(url)
            assert response.status_code == 200, url
            content_type = response.headers["content-type"]
            assert content_type.startswith(CONTENT_TYPES[Path(url).suffix]), (url, content_type)
            assert response.content, url


async def test_the_files_are_swagger_ui_and_cached_by_version(
    settings_of: Callable[..., Settings],
) -> None:
    async with served(settings_of()) as client:
        bundle = await client.get(f"{assets_path()}/swagger-ui-bundle.js")
        assert b"SwaggerUIBundle" in bundle.content
        assert "max-age" in bundle.headers["cache-control"]
        assert bundle.headers["x-content-type-options"] == "nosniff"
        assert "swagger-ui" in (await client.get(f"{assets_path()}/swagger-ui.css")).text
        # Only the page's own files: nothing else of the package is reachable.
        for name in ("__init__.py", "../main.py", "index.html"):
            assert name not in ASSETS
            assert (await client.get(f"{assets_path()}/{name}")).status_code == 404


@pytest.mark.parametrize(
    ("environment", "enabled", "served_docs"),
    [
        ("development", None, True),
        ("test", None, True),
        ("production", None, False),
        ("production", True, True),
        ("development", False, False),
    ],
)
def test_docs_default_on_except_in_production(
    settings_of: Callable[..., Settings],
    environment: str,
    enabled: bool | None,
    served_docs: bool,
) -> None:
    # The production start checks are tested elsewhere; here only the default matters.
    settings = settings_of(docs_enabled=enabled).model_copy(update={"environment": environment})
    assert settings.docs_served is served_docs


def test_docs_enabled_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCS_ENABLED", "false")
    assert Settings(_env_file=None).docs_enabled is False
    assert "production" in (Settings.model_fields["docs_enabled"].description or "")


async def test_docs_enabled_false_hides_the_page_the_files_and_the_document(
    settings_of: Callable[..., Settings],
) -> None:
    async with served(settings_of(docs_enabled=False)) as client:
        for path in ("/docs", "/openapi.json", f"{assets_path()}/swagger-ui-bundle.js"):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["name"] == "NotFoundError"
        assert (await client.get("/healthz")).status_code == 200


async def test_no_page_loads_from_a_cdn(settings_of: Callable[..., Settings]) -> None:
    """FastAPI's own pages (ReDoc, the OAuth2 redirect) load their files from a CDN: they are not served."""
    async with served(settings_of()) as client:
        for path in ("/redoc", "/docs/oauth2-redirect"):
            assert (await client.get(path)).status_code == 404, path


# --- "Try it out" in cookie mode: the page's own origin ------------------------------------------------------

PUBLIC_URL = "http://127.0.0.1:8000"  # the setting's default: the service's own URL, as configured


@pytest.mark.parametrize(
    "browser_headers",
    [
        {"Origin": PUBLIC_URL, "Sec-Fetch-Site": "same-origin"},  # what Chromium sends from /docs
        {"Origin": PUBLIC_URL},  # a browser without Fetch Metadata
    ],
    ids=["fetch-metadata", "origin-only"],
)
async def test_swagger_try_it_out_may_refresh_with_the_cookie(
    harness: Harness, settings_factory: Callable[..., Settings], browser_headers: dict[str, str]
) -> None:
    """A same-origin request from /docs carries the service's own origin, and is not cross-site."""
    settings = settings_factory(cookie_response=True, cors_origins="https://app.example.com")
    client = await harness.client(settings)
    client.base_url = httpx.URL(PUBLIC_URL)
    await register(client)
    login = await client.post(
        "/api/auth/local",
        json={"identifier": "alice", "password": PASSWORD, "requestRefresh": True},
    )
    assert login.status_code == 200, login.text
    cookie = login.cookies["refreshToken"]
    refreshed = await client.post(
        "/api/auth/refresh",
        headers={**browser_headers, "Cookie": f"refreshToken={cookie}"},
    )
    assert refreshed.status_code == 200, refreshed.text


async def test_other_origins_stay_refused(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    """Only PUBLIC_URL's origin is the service's own: not another port or scheme, and not whatever name a request
    was addressed to. With a parent-domain cookie behind a proxy that answers any host, a sibling subdomain the
    attacker points at it would otherwise be "the service's own origin" and read the refreshed tokens."""
    settings = settings_factory(cookie_response=True)
    client = await harness.client(settings)
    sibling = "http://evil.example.test:8000"
    client.base_url = httpx.URL(sibling)
    await register(client)
    login = await client.post(
        "/api/auth/local",
        json={"identifier": "alice", "password": PASSWORD, "requestRefresh": True},
    )
    cookie = login.cookies["refreshToken"]
    for origin in (
        "http://127.0.0.1:9000",
        "https://127.0.0.1:8000",
        sibling,  # the very origin this request was addressed to (its Host)
        "http://evil.example",
    ):
        refused = await client.post(
            "/api/auth/refresh",
            headers={
                "Origin": origin,
                "Sec-Fetch-Site": "same-origin",
                "Cookie": f"refreshToken={cookie}",
            },
        )
        assert refused.status_code == 403, origin
        assert refused.json()["error"]["details"]["code"] == "CROSS_SITE_REQUEST"
