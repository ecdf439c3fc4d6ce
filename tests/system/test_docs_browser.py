"""``/docs`` in a real browser (Chromium through Playwright) with every request outside the service refused, as on
a machine without internet access: Swagger UI renders every operation, and in cookie mode its own "Try it out"
logs in and refreshes with the HttpOnly cookie (the page's origin is PUBLIC_URL's, so it is not cross-site)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

from app.api.openapi import OPERATION_IDS
from tests.servers import Server, free_port, running_server_at
from tests.support import ROOT, migrate
from tests.system.test_browser import CHROMIUM, CHROMIUM_ARGS, LAUNCH_TIMEOUT_MS, STEP_TIMEOUT_MS

pytestmark = pytest.mark.slow

ARTIFACTS = ROOT / "artifacts" / "docs"
# The login example of the document: the account the page's own example signs in to.
EMAIL = "alice@example.com"
PASSWORD = "Secret-pass-123"


@dataclass
class Docs:
    server: Server
    browser: Browser
    outside: list[str] = field(default_factory=list)  # requests the page tried to send elsewhere


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docs]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    workdir = tmp_path_factory.mktemp("docs-browser")
    url = f"sqlite+aiosqlite:///{workdir}/refreshd.db"
    migrate(url)
    port = free_port()
    with running_server_at(
        port,
        url,
        workdir,
        # The page's origin is the service's own only as PUBLIC_URL names it (app.api.transport.trusted_origins).
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        COOKIE_RESPONSE="true",
        REQUEST_REFRESH_ON_ALL="true",
        RATE_LIMIT_ENABLED="false",
    ) as server:
        registered = httpx.post(
            f"{server.url}/api/auth/local/register",
            json={"username": "alice", "email": EMAIL, "password": PASSWORD},
            timeout=10,
        )
        assert registered.status_code == 200, registered.text
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=LAUNCH_TIMEOUT_MS
            )
            try:
                yield Docs(server, browser)
            finally:
                browser.close()


@pytest.fixture
def page(docs: Docs) -> Iterator[Page]:
    """A fresh profile whose every request to anywhere but the service is refused (and recorded)."""
    docs.outside.clear()

    def offline(route: Route) -> None:
        if route.request.url.startswith(f"{docs.server.url}/"):
            route.continue_()
        else:
            docs.outside.append(route.request.url)
            route.abort("internetdisconnected")

    context: BrowserContext = docs.browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.route("**/*", offline)
    try:
        yield context.new_page()
    finally:
        context.close()


def _open_docs(page: Page, docs: Docs) -> None:
    page.goto(f"{docs.server.url}/docs")
    page.locator(".opblock").first.wait_for()


def _try_it_out(page: Page, operation_id: str, body: str | None = None) -> str:
    """Expand an operation, press "Try it out", put ``body`` in, press "Execute"; the status Swagger UI shows."""
    block = page.locator(f"#operations-auth-{operation_id}")
    block.locator(".opblock-summary").click()
    block.locator(".try-out__btn").click()
    if body is not None:
        block.locator("textarea.body-param__text").fill(body)
    block.locator("button.execute").click()
    status = block.locator(".live-responses-table .response .response-col_status")
    status.wait_for()
    return status.inner_text().strip()


def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_swagger_ui_renders_every_operation_offline(page: Page, docs: Docs) -> None:
    _open_docs(page, docs)
    page.wait_for_load_state("networkidle")
    _screenshot(page, "docs-offline.png")
    assert page.locator(".opblock").count() == len(OPERATION_IDS)
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("refreshd")
    assert docs.outside == []


def test_try_it_out_refreshes_with_the_cookie(page: Page, docs: Docs) -> None:
    _open_docs(page, docs)
    login = f'{{"identifier": "{EMAIL}", "password": "{PASSWORD}"}}'
    assert _try_it_out(page, "login", login) == "200"
    cookies = page.context.cookies(f"{docs.server.url}/api/auth/refresh")
    assert [c["name"] for c in cookies] == ["refreshToken"]
    # Cookie mode reads the cookie first: the body's placeholder token is not used.
    status = _try_it_out(page, "refresh", '{"refreshToken": "unused"}')
    _screenshot(page, "docs-try-refresh.png")
    assert status == "200"
    assert docs.outside == []
