"""Password reset and email confirmation against a real SMTP server; blocking from the command line."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.security.codes import derive_key, hash_code
from app.settings import Settings
from tests.api.helpers import PASSWORD, bearer, error_of, login, register
from tests.cli_support import run_cli
from tests.conftest import Harness
from tests.servers import free_port
from tests.smtp import SmtpServer, smtp_server
from tests.support import ACCESS_SECRET, FakeClock

NEW_PASSWORD = "Brand-new-pass-789"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def mail_settings(
    settings_factory: Callable[..., Settings], smtp: SmtpServer
) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "smtp_host": smtp.host,
            "smtp_port": smtp.port,
            "smtp_starttls": False,
            "mail_from": "Auth <auth@example.com>",
            "public_url": "https://auth.example.com",
            "reset_password_url": "https://app.example.com/reset",
            **overrides,
        }
        return settings_factory(**values)

    return build


def _link(message: EmailMessage) -> str:
    body = message.get_content()
    match = re.search(r"https?://\S+", body)
    assert match, body
    return match.group(0)


def _code(message: EmailMessage, name: str) -> str:
    return parse_qs(urlsplit(_link(message)).query)[name][0]


async def _rows(database_url: str, sql: str) -> list[Any]:
    engine = create_async_engine(database_url)
    async with engine.connect() as conn:
        rows = list((await conn.execute(text(sql))).all())
    await engine.dispose()
    return rows


async def _reset(
    client: httpx.AsyncClient, code: str, password: str = NEW_PASSWORD, **extra: Any
) -> httpx.Response:
    return await client.post(
        "/api/auth/reset-password",
        json={"code": code, "password": password, "passwordConfirmation": password, **extra},
    )


async def test_forgot_and_reset_password_end_to_end(
    harness: Harness, mail_settings: Callable[..., Settings], smtp: SmtpServer, database_url: str
) -> None:
    client = await harness.client(mail_settings())
    await register(client)
    devices = [(await login(client, requestRefresh=True)).json() for _ in range(2)]
    response = await client.post("/api/auth/forgot-password", json={"email": "ALICE@example.com"})
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    (message,) = await smtp.wait_for_async(1)
    assert message["To"] == "alice@example.com"
    assert message["From"] == "Auth <auth@example.com>"
    link = _link(message)
    assert link.startswith("https://app.example.com/reset?code=")
    code = _code(message, "code")
    assert len(code) >= 40
    # Stored only as a keyed hash.
    rows = await _rows(database_url, "SELECT * FROM account_tokens")
    assert len(rows) == 1
    assert code not in repr(rows)
    assert rows[0].token_hash == hash_code(derive_key(ACCESS_SECRET), code)

    reset = await _reset(client, code)
    assert reset.status_code == 200
    body = reset.json()
    assert list(body) == ["jwt", "user"]
    assert (await client.get("/api/users/me", headers=bearer(body["jwt"]))).status_code == 200
    # Every earlier session is gone, access and refresh alike.
    for device in devices:
        assert (await client.get("/api/users/me", headers=bearer(device["jwt"]))).status_code == 401
        refreshed = await client.post(
            "/api/auth/refresh", json={"refreshToken": device["refreshToken"]}
        )
        assert refreshed.status_code == 401
    assert (await login(client, password=PASSWORD)).status_code == 400
    assert (await login(client, password=NEW_PASSWORD)).status_code == 200
    # Single use.
    again = await _reset(client, code, "Yet-another-pass-1")
    assert error_of(again) == {
        "status": 400,
        "name": "ValidationError",
        "message": "Incorrect code provided",
        "details": {},
    }


async def test_forgot_password_reveals_nothing(
    harness: Harness,
    mail_settings: Callable[..., Settings],
    smtp: SmtpServer,
    database_url: str,
) -> None:
    client = await harness.client(mail_settings())
    await register(client)
    await register(client, "dave", "dave@example.com")
    await _rows(database_url, "SELECT 1")
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET blocked = :t WHERE username = 'dave'"), {"t": True}
        )
    await engine.dispose()
    answers = []
    for email in ("nobody@example.com", "dave@example.com", "alice@example.com"):
        response = await client.post("/api/auth/forgot-password", json={"email": email})
        answers.append(
            (response.status_code, response.headers.get("content-length"), response.text)
        )
    assert len(set(answers)) == 1
    # ... and that one answer is the success, not an error every address shares.
    assert (answers[0][0], json.loads(answers[0][2])) == (200, {"ok": True})
    messages = await smtp.wait_for_async(1)
    assert [m["To"] for m in messages] == [
        "alice@example.com"
    ]  # not the blocked one, not the unknown


async def test_expired_and_superseded_codes(
    harness: Harness, mail_settings: Callable[..., Settings], smtp: SmtpServer, clock: FakeClock
) -> None:
    client = await harness.client(mail_settings())
    await register(client)
    await client.post("/api/auth/forgot-password", json={"email": "alice@example.com"})
    await client.post("/api/auth/forgot-password", json={"email": "alice@example.com"})
    first, second = (_code(m, "code") for m in await smtp.wait_for_async(2))
    assert error_of(await _reset(client, first))["message"] == "Incorrect code provided"
    clock.advance(timedelta(minutes=59))
    await client.post("/api/auth/forgot-password", json={"email": "alice@example.com"})
    third = _code((await smtp.wait_for_async(3))[2], "code")
    clock.advance(timedelta(minutes=1))
    assert error_of(await _reset(client, second))["message"] == "Incorrect code provided"
    clock.advance(timedelta(minutes=58))  # the third code is 59 minutes old
    assert (await _reset(client, third)).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"code": "x", "password": "abcdefg", "passwordConfirmation": "abcdefh"},
            "Passwords do not match",
        ),
        (
            {"code": "x", "password": "x" * 73, "passwordConfirmation": "x" * 73},
            "Password must be less than 73 bytes",
        ),
        ({"password": "abcdefg", "passwordConfirmation": "abcdefg"}, "code is a required field"),
        (
            {"code": "x", "password": "abcdefg", "passwordConfirmation": "abcdefg", "extra": 1},
            "this field has unspecified keys: extra",
        ),
        (
            {"code": "unknown", "password": "abcdefg", "passwordConfirmation": "abcdefg"},
            "Incorrect code provided",
        ),
        (
            {"code": "unknown", "password": "abc", "passwordConfirmation": "abc"},
            "Incorrect code provided",
        ),
    ],
)
async def test_reset_password_validation(
    client: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    response = await client.post("/api/auth/reset-password", json=body)
    assert response.status_code == 400
    assert error_of(response)["message"] == message


async def test_reset_applies_the_password_policy_to_a_valid_code(
    harness: Harness, mail_settings: Callable[..., Settings], smtp: SmtpServer
) -> None:
    client = await harness.client(mail_settings())
    await register(client)
    await client.post("/api/auth/forgot-password", json={"email": "alice@example.com"})
    code = _code((await smtp.wait_for_async(1))[0], "code")
    response = await _reset(client, code, "short")
    assert error_of(response)["message"] == "password must be at least 6 characters"
    assert (await _reset(client, code)).status_code == 200  # the refused try did not spend it


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "email is a required field"),
        ({"email": "not-an-email"}, "email must be a valid email"),
        ({"email": "a@example.com", "x": 1}, "this field has unspecified keys: x"),
    ],
)
async def test_forgot_password_validation(
    client: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    response = await client.post("/api/auth/forgot-password", json=body)
    assert response.status_code == 400
    assert error_of(response)["message"] == message


async def test_forgot_password_with_smtp_down_keeps_the_code_and_logs(
    harness: Harness,
    settings_factory: Callable[..., Settings],
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await harness.client(
        settings_factory(
            smtp_host="127.0.0.1", smtp_port=free_port(), smtp_starttls=False, smtp_timeout=2
        )
    )
    await register(client)
    response = await client.post("/api/auth/forgot-password", json={"email": "alice@example.com"})
    assert response.json() == {"ok": True}
    assert "password-reset email not delivered" in caplog.text
    assert len(await _rows(database_url, "SELECT id FROM account_tokens")) == 1


async def test_development_mail_goes_to_the_log(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await register(client)
    await client.post("/api/auth/forgot-password", json={"email": "alice@example.com"})
    assert "/reset-password?code=" in caplog.text


async def test_email_confirmation_flow(
    harness: Harness, mail_settings: Callable[..., Settings], smtp: SmtpServer, clock: FakeClock
) -> None:
    client = await harness.client(
        mail_settings(
            email_confirmation=True, email_confirmation_redirect="https://app.example.com/welcome"
        )
    )
    response = await client.post(
        "/api/auth/local/register",
        json={"username": "alice", "email": "Alice@example.com", "password": PASSWORD},
    )
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["user"]
    assert body["user"]["confirmed"] is False
    refused = await login(client)
    assert (error_of(refused)["name"], error_of(refused)["message"]) == (
        "ApplicationError",
        "Your account email is not confirmed",
    )
    (message,) = await smtp.wait_for_async(1)
    link = _link(message)
    assert link.startswith("https://auth.example.com/api/auth/email-confirmation?confirmation=")
    code = _code(message, "confirmation")
    clock.advance(timedelta(days=2))
    confirmed = await client.get("/api/auth/email-confirmation", params={"confirmation": code})
    assert confirmed.status_code == 302
    assert confirmed.headers["location"] == "https://app.example.com/welcome"
    assert (await login(client)).json()["user"]["confirmed"] is True
    reused = await client.get("/api/auth/email-confirmation", params={"confirmation": code})
    assert error_of(reused) == {
        "status": 400,
        "name": "ValidationError",
        "message": "Invalid token",
        "details": {},
    }


async def test_confirmation_links_expire_and_resend_replaces_them(
    harness: Harness, mail_settings: Callable[..., Settings], smtp: SmtpServer, clock: FakeClock
) -> None:
    client = await harness.client(mail_settings(email_confirmation=True))
    await client.post(
        "/api/auth/local/register",
        json={"username": "alice", "email": "alice@example.com", "password": PASSWORD},
    )
    first = _code((await smtp.wait_for_async(1))[0], "confirmation")
    resent = await client.post(
        "/api/auth/send-email-confirmation", json={"email": "ALICE@example.com"}
    )
    assert resent.json() == {"email": "ALICE@example.com", "sent": True}
    second = _code((await smtp.wait_for_async(2))[1], "confirmation")
    response = await client.get("/api/auth/email-confirmation", params={"confirmation": first})
    assert error_of(response)["message"] == "Invalid token"
    clock.advance(timedelta(days=3))
    response = await client.get("/api/auth/email-confirmation", params={"confirmation": second})
    assert error_of(response)["message"] == "Invalid token"
    missing = await client.get("/api/auth/email-confirmation")
    assert error_of(missing)["message"] == "confirmation is a required field"


async def test_resend_says_the_same_for_every_address(
    harness: Harness, mail_settings: Callable[..., Settings], smtp: SmtpServer
) -> None:
    client = await harness.client(mail_settings())
    await register(client)  # confirmation off: the account is confirmed already
    for email in ("alice@example.com", "nobody@example.com"):
        response = await client.post("/api/auth/send-email-confirmation", json={"email": email})
        assert response.json() == {"email": email, "sent": True}
    assert smtp.messages == []


async def test_register_with_smtp_down_is_a_clear_error_and_keeps_the_account(
    harness: Harness, settings_factory: Callable[..., Settings], smtp: SmtpServer
) -> None:
    dead = settings_factory(
        email_confirmation=True,
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        smtp_starttls=False,
        smtp_timeout=2,
    )
    client = await harness.client(dead)
    response = await client.post(
        "/api/auth/local/register",
        json={"username": "alice", "email": "alice@example.com", "password": PASSWORD},
    )
    assert response.status_code == 400
    error = error_of(response)
    assert (error["name"], error["message"]) == (
        "ApplicationError",
        "Error sending confirmation email",
    )
    # The account exists; once mail works, a re-send confirms it.
    working = await harness.client(
        settings_factory(
            email_confirmation=True, smtp_host=smtp.host, smtp_port=smtp.port, smtp_starttls=False
        )
    )
    await working.post("/api/auth/send-email-confirmation", json={"email": "alice@example.com"})
    code = _code((await smtp.wait_for_async(1))[0], "confirmation")
    assert (
        await working.get("/api/auth/email-confirmation", params={"confirmation": code})
    ).status_code == 302
    assert (await login(working)).status_code == 200


async def test_blocking_from_the_command_line(client: httpx.AsyncClient, database_url: str) -> None:
    await register(client)
    device = (await login(client, requestRefresh=True)).json()
    result = run_cli(database_url, "user", "block", "--email", "alice@example.com")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "user 1 blocked (every session revoked)"
    me = await client.get("/api/users/me", headers=bearer(device["jwt"]))
    assert (me.status_code, error_of(me)["message"]) == (401, "Invalid credentials")
    refreshed = await client.post(
        "/api/auth/refresh", json={"refreshToken": device["refreshToken"]}
    )
    assert refreshed.status_code == 401
    # Revoked, as the command said, not merely refused for the block (which unblocking would undo).
    assert error_of(refreshed)["details"]["code"] == "REFRESH_TOKEN_REVOKED"
    assert (
        error_of(await login(client))["message"]
        == "Your account has been blocked by an administrator"
    )
    assert run_cli(database_url, "user", "unblock", "--id", "1").returncode == 0
    assert (await login(client)).status_code == 200
    missing = run_cli(database_url, "user", "block", "--username", "nobody")
    assert missing.returncode == 1
    assert "no user with username 'nobody'" in missing.stderr


async def test_email_confirmation_needs_smtp_in_production() -> None:
    with pytest.raises(ValueError, match="EMAIL_CONFIRMATION needs SMTP_HOST"):
        Settings(
            _env_file=None,
            environment="production",
            jwt_secret="p" * 40,
            refresh_jwt_secret="q" * 40,
            email_confirmation=True,
        )
