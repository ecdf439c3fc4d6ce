"""Audit rows after each security event; liveness and readiness; the API with its database down."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from jose import jwt as jose_jwt
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.migrations_info import expected_head
from app.models import AuditEvent
from app.settings import Settings
from tests.api.helpers import PASSWORD, bearer, error_of, login, register
from tests.conftest import Harness
from tests.servers import free_port
from tests.support import FakeClock, downgrade, make_settings

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


async def _events(database_url: str) -> list[Any]:
    engine = create_async_engine(database_url)
    async with engine.connect() as conn:
        columns = (AuditEvent.event, AuditEvent.user_id, AuditEvent.session_id, AuditEvent.ip)
        query = select(*columns, AuditEvent.user_agent, AuditEvent.details).order_by(AuditEvent.id)
        rows = (await conn.execute(query)).all()
    await engine.dispose()
    return list(rows)


async def test_every_security_event_leaves_an_audit_row(
    client: httpx.AsyncClient, database_url: str, clock: FakeClock
) -> None:
    headers = {"User-Agent": UA}
    await client.post(
        "/api/auth/local/register",
        json={"username": "alice", "email": "alice@example.com", "password": PASSWORD},
        headers=headers,
    )
    await client.post(
        "/api/auth/local", json={"identifier": "alice", "password": "wrong"}, headers=headers
    )
    await client.post(
        "/api/auth/local", json={"identifier": "ghost", "password": "wrong"}, headers=headers
    )
    first = (await login(client, requestRefresh=True)).json()
    sid = jose_jwt.get_unverified_claims(first["jwt"])["sid"]
    rotated = (
        await client.post("/api/auth/refresh", json={"refreshToken": first["refreshToken"]})
    ).json()
    clock.advance(timedelta(minutes=1))
    await client.post("/api/auth/refresh", json={"refreshToken": first["refreshToken"]})  # reuse
    second = (await login(client, requestRefresh=True)).json()
    third = (await login(client, requestRefresh=True)).json()
    third_sid = jose_jwt.get_unverified_claims(third["jwt"])["sid"]
    await client.delete(f"/api/auth/sessions/{third_sid}", headers=bearer(second["jwt"]))
    await client.post(
        "/api/auth/change-password",
        json={
            "currentPassword": PASSWORD,
            "password": "Changed-pass-1",
            "passwordConfirmation": "Changed-pass-1",
        },
        headers=bearer(second["jwt"]),
    )
    await client.post("/api/auth/logout", headers=bearer(second["jwt"]))
    rows = await _events(database_url)
    assert [r.event for r in rows] == [
        "user.registered",
        "login.failed",
        "login.failed",
        "login.succeeded",
        "token.refreshed",
        "token.reuse_detected",
        "login.succeeded",
        "login.succeeded",
        "session.revoked",
        "password.changed",
        "session.logout",
    ]
    assert rows[0].user_agent == UA
    assert rows[1].user_id == 1
    assert rows[1].details == {"reason": "invalid_credentials"}
    assert rows[2].user_id is None  # an unknown identifier names nobody
    assert rows[3].session_id == sid
    assert rows[4].details == {"rotated": True}
    assert rows[5].session_id == sid
    assert rows[8].session_id == third_sid
    assert rows[9].details == {"sessions_revoked": 1}  # the first one was revoked for reuse already
    assert rows[10].details == {"scope": "local", "revoked": 1}
    assert {r.ip for r in rows} == {"203.0.113.7"}
    text_of_rows = repr(rows)
    for secret in (PASSWORD, "Changed-pass-1", first["refreshToken"], rotated["jwt"]):
        assert secret not in text_of_rows


async def test_blocked_login_is_audited_with_its_reason(
    client: httpx.AsyncClient, database_url: str
) -> None:
    await register(client)
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET blocked = :t"), {"t": True})
    await engine.dispose()
    await login(client)
    rows = await _events(database_url)
    assert (rows[-1].event, rows[-1].details) == ("login.failed", {"reason": "blocked"})


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok", "migrations": expected_head()}


async def test_readyz_fails_when_the_database_is_down(harness: Harness) -> None:
    client = await harness.client(
        make_settings(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x")
    )
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"
    assert (await client.get("/healthz")).status_code == 200


async def test_an_unreachable_database_is_a_503(harness: Harness) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    client = await harness.client(make_settings(url))
    response = await login(client)
    assert response.status_code == 503
    assert error_of(response) == {
        "status": 503,
        "name": "ServiceUnavailableError",
        "message": "Service Unavailable",
        "details": {},
    }
    assert response.headers["retry-after"] == "1"


async def test_readyz_fails_when_migrations_are_behind(
    harness: Harness,
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    sqlite_template: Path,
) -> None:
    path = tmp_path / "behind.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(downgrade, url, "0002")
    client = await harness.client(make_settings(url))
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["migrations"] == f"at 0002, expected {expected_head()}"
