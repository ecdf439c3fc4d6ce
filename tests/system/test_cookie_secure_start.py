"""Production in cookie mode refuses to start without a Secure cookie, unless COOKIE_SECURE=false says so."""

from __future__ import annotations

from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError as PydanticValidationError

from app.settings import Settings
from tests.api.helpers import PASSWORD
from tests.servers import running_servers
from tests.support import ACCESS_SECRET, REFRESH_SECRET

PRODUCTION_COOKIES = {"ENVIRONMENT": "production", "COOKIE_RESPONSE": "true"}


def _production(**values: Any) -> Settings:
    return Settings(
        _env_file=None,
        environment="production",
        jwt_secret=ACCESS_SECRET,
        refresh_jwt_secret=REFRESH_SECRET,
        **values,
    )


def test_production_cookie_mode_without_secure_does_not_start(
    database_url: str, tmp_path: Path
) -> None:
    with (
        pytest.raises(RuntimeError, match="server exited early") as refused,
        running_servers(
            database_url, 1, tmp_path, PRODUCTION_URL="http://app.example.com", **PRODUCTION_COOKIES
        ),
    ):
        pass
    assert "COOKIE_RESPONSE needs a Secure cookie" in str(refused.value)
    assert "COOKIE_SECURE=true" in str(refused.value)


def test_explicit_cookie_secure_false_starts_and_says_so_in_the_cookie(
    database_url: str, tmp_path: Path
) -> None:
    with running_servers(
        database_url, 1, tmp_path, COOKIE_SECURE="false", **PRODUCTION_COOKIES
    ) as [server]:
        registered = httpx.post(
            f"{server.url}/api/auth/local/register",
            json={"username": "alice", "email": "alice@example.com", "password": PASSWORD},
            timeout=30,
        )
        assert registered.status_code == 200, registered.text
        logged_in = httpx.post(
            f"{server.url}/api/auth/local",
            json={"identifier": "alice", "password": PASSWORD, "requestRefresh": True},
            timeout=30,
        )
        assert logged_in.status_code == 200, logged_in.text
        jar: SimpleCookie = SimpleCookie()
        jar.load(logged_in.headers["set-cookie"])
        assert jar["refreshToken"].value
        assert not jar["refreshToken"]["secure"]


def test_what_production_cookie_mode_accepts() -> None:
    with pytest.raises(PydanticValidationError, match="COOKIE_RESPONSE needs a Secure cookie"):
        _production(cookie_response=True)
    assert _production(cookie_response=True, production_url="https://app.example.com")
    assert _production(cookie_response=True, cookie_secure=True).cookie_is_secure
    assert not _production(cookie_response=True, cookie_secure=False).cookie_is_secure
    assert not _production(cookie_response=False).cookie_is_secure  # body mode: no cookie at all
