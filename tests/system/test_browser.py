"""Cookie mode in a real browser (Chromium through Playwright) against a real server process.

The page (tests/system/browser/index.html) is served by this test, not by refreshd, from three origins:

- ``http://localhost:<page>``: the legitimate frontend, the only entry of ``CORS_ORIGINS``. Same *site* as refreshd
  (``http://localhost:<api>``: sites ignore ports), different *origin*, so its calls are credentialed CORS calls
  and the ``SameSite=Lax`` cookie travels with them;
- ``http://127.0.0.1:<attacker>``: an attacker on another site, whom the browser does not even give the cookie;
- ``http://localhost:<sibling>``: an attacker on the same site (another app on the same host), to whom the browser
  does give the cookie, so only refreshd's own check (``Origin`` not allowed → 403) stands in the way.

The page sits at ``/api/auth/page.html``, under the cookie's ``Path``, so that ``document.cookie`` would show the
refresh cookie if it were not ``HttpOnly`` (cookies do not separate ports).
"""

from __future__ import annotations

import http.server
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.servers import free_port, running_servers
from tests.support import ROOT, migrate

pytestmark = pytest.mark.slow

PAGE_FILE = Path(__file__).resolve().parent / "browser" / "index.html"
PAGE_PATH = "/api/auth/page.html"
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAUNCH_TIMEOUT_MS = 30_000
STEP_TIMEOUT_MS = 15_000
USERNAME = "browser-user"
EMAIL = "browser-user@example.com"
PASSWORD = "Browser-pass-123"
COOKIE = "refreshToken"


# --- the page's own little server ---------------------------------------------------------------------------


def _page_handler(body: bytes) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != PAGE_PATH:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output clean

    return Handler


@contextmanager
def serving_page(port: int) -> Iterator[None]:
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), _page_handler(PAGE_FILE.read_bytes())
    )
    thread = threading.Thread(target=server.serve_forever, name=f"page-{port}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


# --- the stack: refreshd, three page origins, one browser ---------------------------------------------------


@dataclass
class Stack:
    api: str  # http://localhost:<api port>
    page: str  # the legitimate frontend's origin
    cross_site: str  # an attacker on another site
    same_site: str  # an attacker on the same site, another origin
    database: Path
    browser: Browser

    def url(self, origin: str) -> str:
        query = urlencode({"api": self.api, "identifier": USERNAME, "password": PASSWORD})
        return f"{origin}{PAGE_PATH}?{query}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    workdir = tmp_path_factory.mktemp("browser")
    database = workdir / "browser.db"
    database_url = f"sqlite+aiosqlite:///{database}"
    migrate(database_url)
    page_port, cross_site_port, same_site_port = distinct_ports(3)
    page_origin = f"http://localhost:{page_port}"
    with (
        serving_page(page_port),
        serving_page(cross_site_port),
        serving_page(same_site_port),
        running_servers(
            database_url,
            1,
            workdir,
            COOKIE_RESPONSE="true",
            CORS_ORIGINS=page_origin,
            RATE_LIMIT_ENABLED="false",
        ) as [server],
    ):
        registered = httpx.post(
            f"{server.url}/api/auth/local/register",
            json={"username": USERNAME, "email": EMAIL, "password": PASSWORD},
            timeout=10,
        )
        assert registered.status_code == 200, registered.text
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=LAUNCH_TIMEOUT_MS
            )
            try:
                yield Stack(
                    api=f"http://localhost:{server.port}",
                    page=page_origin,
                    cross_site=f"http://127.0.0.1:{cross_site_port}",
                    same_site=f"http://localhost:{same_site_port}",
                    database=database,
                    browser=browser,
                )
            finally:
                browser.close()


@pytest.fixture
def context(stack: Stack) -> Iterator[BrowserContext]:
    """One browser profile (one cookie jar) per test: the victim's browser, where the attacker's pages run too."""
    context = stack.browser.new_context(viewport={"width": 1200, "height": 800})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


# --- driving the page ---------------------------------------------------------------------------------------


@dataclass
class Step:
    outcome: str  # "response" (JavaScript saw a status) or "network-error" (it saw nothing)
    result: dict[str, Any]

    @property
    def status(self) -> int | None:
        status = self.result.get("status")
        return status if isinstance(status, int) else None

    @property
    def error(self) -> dict[str, Any]:
        error = self.result.get("error")
        return error if isinstance(error, dict) else {}


class Tab:
    """A page of the test site; each click appends ``#step-N`` to the page's log, which is what we wait for."""

    def __init__(self, context: BrowserContext, url: str) -> None:
        self.page: Page = context.new_page()
        self.page.goto(url)
        self.page.locator("body[data-ready='true']").wait_for()
        self.steps = 0

    def run(self, name: str) -> Step:
        self.steps += 1
        self.page.click(f"#{name}")
        return self._result(name)

    def run_blocked_by_cors(self, name: str, path: str) -> Step:
        """A step whose fetch the browser must refuse for want of CORS (the reason, from the console)."""
        self.steps += 1
        with self.page.expect_console_message(
            lambda message: "blocked by CORS policy" in message.text and path in message.text
        ):
            self.page.click(f"#{name}")
        return self._result(name)

    def _result(self, name: str) -> Step:
        item = self.page.locator(f"#step-{self.steps}")
        item.wait_for(state="attached")
        assert item.get_attribute("data-step") == name
        return Step(
            outcome=item.get_attribute("data-outcome") or "",
            result=json.loads(item.get_attribute("data-result") or "{}"),
        )

    def navigate_by(self, name: str, api: str) -> tuple[int, dict[str, Any]]:
        """Click a control that makes the browser itself go to refreshd; what refreshd answered."""
        with self.page.expect_navigation(url=lambda url: url.startswith(api)) as navigation:
            self.page.click(f"#{name}")
        response = navigation.value
        assert response is not None
        return response.status, json.loads(response.text())

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path


def refresh_cookie(context: BrowserContext, api: str) -> dict[str, Any] | None:
    for cookie in context.cookies(f"{api}/api/auth/refresh"):
        if cookie["name"] == COOKIE:
            return dict(cookie)
    return None


# --- what the server itself recorded ------------------------------------------------------------------------


def session_state(database: Path, session_id: str) -> tuple[int, str | None]:
    """The session's rotation generation and revocation time, read from refreshd's own database file."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        row = conn.execute(
            "SELECT generation, revoked_at FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
    assert row is not None, session_id
    return int(row[0]), row[1]


def audit_counts(database: Path, session_id: str) -> Counter[str]:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT event FROM audit_events WHERE session_id = ?", (session_id,)
        ).fetchall()
    return Counter(str(event) for (event,) in rows)


def log_in(tab: Tab) -> str:
    """Log in from the page and return the id of the session it started."""
    login = tab.run("login")
    assert (login.outcome, login.status) == ("response", 200), login
    sessions = tab.run("sessions")
    assert (sessions.outcome, sessions.status) == ("response", 200), sessions
    current = sessions.result["current"]
    assert isinstance(current, list)
    assert len(current) == 1
    return str(current[0])


# --- the tests ----------------------------------------------------------------------------------------------


def test_the_refresh_cookie_is_invisible_to_javascript_and_enough_to_refresh(
    stack: Stack, context: BrowserContext
) -> None:
    tab = Tab(context, stack.url(stack.page))

    login = tab.run("login")
    assert (login.outcome, login.status) == ("response", 200), login
    assert login.result["jwt"] is True
    assert login.result["refreshTokenInBody"] is False  # cookie mode: never in the body
    assert login.result["username"] == USERNAME
    sessions = tab.run("sessions")
    assert (sessions.outcome, sessions.status) == ("response", 200), sessions
    (session_id,) = sessions.result["current"]
    generation, revoked_at = session_state(stack.database, session_id)
    assert revoked_at is None

    # The browser holds the cookie, as refreshd set it...
    cookie = refresh_cookie(context, stack.api)
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/api/auth"
    assert cookie["domain"] == "localhost"  # host-only: no Domain attribute for localhost
    # ...and JavaScript on a page of that host and path cannot read it, though it reads the page's own cookie.
    cookies = tab.run("cookies")
    assert cookies.result["names"] == ["probe"], cookies
    assert cookies.result["refreshTokenVisible"] is False
    assert str(cookie["value"]) not in tab.page.content()

    # (2) The cookie alone refreshes: the request has no body and no header; rotation re-sets the cookie.
    refresh = tab.run("refresh")
    assert (refresh.outcome, refresh.status) == ("response", 200), refresh
    assert refresh.result["jwt"] is True
    assert refresh.result["refreshTokenInBody"] is False
    rotated = refresh_cookie(context, stack.api)
    assert rotated is not None
    assert rotated["value"] != cookie["value"]
    assert rotated["httpOnly"] is True

    # The refreshed access token works (credentialed CORS with an Authorization header, preflighted).
    sessions = tab.run("sessions")
    assert (sessions.outcome, sessions.status) == ("response", 200), sessions
    assert sessions.result["current"] == [session_id]
    assert session_state(stack.database, session_id) == (generation + 1, None)  # rotated once

    # Log out with the cookie alone: the session ends and the cookie is cleared.
    logout = tab.run("logout")
    assert (logout.outcome, logout.status) == ("response", 200), logout
    assert logout.result["ok"] is True
    assert refresh_cookie(context, stack.api) is None
    assert session_state(stack.database, session_id)[1] is not None

    after = tab.run("refresh")
    assert (after.outcome, after.status) == ("response", 400), after
    assert after.error["message"] == "Missing refresh token"

    tab.screenshot("cookie-mode.png")


def test_another_origin_cannot_refresh_or_log_out_with_the_cookie(
    stack: Stack, context: BrowserContext
) -> None:
    legit = Tab(context, stack.url(stack.page))
    session_id = log_in(legit)
    cookie = refresh_cookie(context, stack.api)
    assert cookie is not None
    before = session_state(stack.database, session_id)
    events_before = audit_counts(stack.database, session_id)

    # Another site, running in the victim's browser. Its fetches are not allowed to read refreshd's answers
    # (no CORS for its origin), and the browser does not attach the Lax cookie to its requests anyway.
    cross_site = Tab(context, stack.url(stack.cross_site))
    for name in ("refresh", "logout"):
        step = cross_site.run_blocked_by_cors(name, f"/api/auth/{name}")
        assert step.outcome == "network-error", (name, step)
    cross_site.screenshot("attacker-cross-site.png")

    # A top-level form POST (classic CSRF) shows what refreshd answered: the cookie never arrived.
    status, body = Tab(context, stack.url(stack.cross_site)).navigate_by("form-refresh", stack.api)
    assert (status, body["error"]["message"]) == (400, "Missing refresh token")
    status, body = Tab(context, stack.url(stack.cross_site)).navigate_by("form-logout", stack.api)
    assert (status, body["error"]["name"]) == (403, "ForbiddenError")
    # Lax cookies do go with a top-level GET, but the cookie routes do not answer GET.
    status, body = Tab(context, stack.url(stack.cross_site)).navigate_by("link-refresh", stack.api)
    assert status == 405

    # A page on the same site but another origin gets the cookie sent along: refreshd's own check refuses it.
    same_site = Tab(context, stack.url(stack.same_site))
    for name in ("refresh", "logout"):
        step = same_site.run_blocked_by_cors(name, f"/api/auth/{name}")
        assert step.outcome == "network-error", (name, step)
    for name in ("form-refresh", "form-logout"):
        status, body = Tab(context, stack.url(stack.same_site)).navigate_by(name, stack.api)
        assert status == 403, (name, body)
        assert body["error"]["details"]["code"] == "CROSS_SITE_REQUEST", (name, body)

    # Server side, nothing happened to the session: not rotated, not revoked, no refresh or logout recorded.
    assert session_state(stack.database, session_id) == before
    assert before[1] is None
    assert audit_counts(stack.database, session_id) == events_before
    after_cookie = refresh_cookie(context, stack.api)
    assert after_cookie is not None
    assert after_cookie["value"] == cookie["value"]

    # And the legitimate page still refreshes with the very same cookie.
    refresh = legit.run("refresh")
    assert (refresh.outcome, refresh.status) == ("response", 200), refresh
    assert session_state(stack.database, session_id) == (before[0] + 1, None)
    sessions = legit.run("sessions")
    assert (sessions.outcome, sessions.status) == ("response", 200), sessions
    assert sessions.result["current"] == [session_id]

    legit.screenshot("legitimate-after-attacks.png")
