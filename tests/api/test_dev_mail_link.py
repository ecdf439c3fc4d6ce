"""Development's mail goes to the log, and its link must work from there: whole, with its code, in text and JSON
logs alike. Everything else keeps its secrets redacted, and production never writes a link to its log."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
import pytest

from app.settings import Settings
from tests.api.helpers import PASSWORD, register
from tests.conftest import Harness

NEW_PASSWORD = "Brand-new-pass-456"
LINK = re.compile(r"http://127\.0\.0\.1:8000/reset-password\?code=([A-Za-z0-9_-]{20,})")


async def _forgot(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/forgot-password", json={"email": "alice@example.com"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_the_logged_reset_link_is_whole_and_works(
    harness: Harness,
    settings_factory: Callable[..., Settings],
    capsys: pytest.CaptureFixture[str],
    log_format: str,
) -> None:
    client = await harness.client(settings_factory(log_format=log_format))
    await register(client)
    capsys.readouterr()
    await _forgot(client)
    logged = capsys.readouterr().err
    if log_format == "json":
        logged = "\n".join(json.loads(line)["message"] for line in logged.splitlines())
    match = LINK.search(logged)
    assert match is not None, logged
    reset = await client.post(
        "/api/auth/reset-password",
        json={
            "code": match.group(1),
            "password": NEW_PASSWORD,
            "passwordConfirmation": NEW_PASSWORD,
        },
    )
    assert reset.status_code == 200, reset.text
    # Any other line with a code in it is still redacted.
    bad = await client.post(
        "/api/auth/reset-password?code=secret-in-query",
        json={"code": "x", "password": PASSWORD, "passwordConfirmation": PASSWORD},
    )
    assert bad.status_code == 400
    assert "secret-in-query" not in capsys.readouterr().err


async def test_production_never_logs_a_link(
    harness: Harness,
    settings_factory: Callable[..., Settings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = await harness.client(settings_factory(environment="production", log_level="DEBUG"))
    await register(client)
    capsys.readouterr()
    await _forgot(client)
    logged = capsys.readouterr().err
    assert "reset-password?code=" not in logged
    assert "email delivery is not configured" in logged
