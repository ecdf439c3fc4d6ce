"""Metrics after a known sequence of requests; request ids; no secret in any log line of a full flow."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.settings import Settings
from tests.api.helpers import PASSWORD, bearer, login, register
from tests.conftest import Harness
from tests.smtp import SmtpServer, smtp_server
from tests.support import FakeClock


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_after_a_known_sequence(client: httpx.AsyncClient, clock: FakeClock) -> None:
    await register(client)
    await login(client, password="wrong")
    await login(client, password="wrong")
    device = (await login(client, requestRefresh=True)).json()
    first = device["refreshToken"]
    second = (await client.post("/api/auth/refresh", json={"refreshToken": first})).json()
    await client.post("/api/auth/refresh", json={"refreshToken": first})  # within grace: re-issued
    clock.advance(timedelta(minutes=1))
    await client.post("/api/auth/refresh", json={"refreshToken": first})  # reuse: session revoked
    await client.post("/api/auth/refresh", json={"refreshToken": "garbage"})
    other = (await login(client, requestRefresh=True)).json()
    await client.get("/api/users/me", headers=bearer(other["jwt"]))
    await client.delete(f"/api/auth/sessions/{'0' * 32}", headers=bearer(other["jwt"]))
    await client.post("/api/auth/logout", json={"scope": "all"}, headers=bearer(other["jwt"]))
    await client.get("/nowhere")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    total = "refreshd_http_requests_total"
    assert _value(samples, total, method="POST", route="/api/auth/local", status="200") == 2
    assert _value(samples, total, method="POST", route="/api/auth/local", status="400") == 2
    assert _value(samples, total, method="POST", route="/api/auth/refresh", status="200") == 2
    assert _value(samples, total, method="POST", route="/api/auth/refresh", status="401") == 2
    assert _value(samples, total, method="GET", route="/api/users/me", status="200") == 1
    route = "/api/auth/sessions/{session_id}"
    assert _value(samples, total, method="DELETE", route=route, status="404") == 1
    assert _value(samples, total, method="GET", route="<unmatched>", status="404") == 1
    logins = "refreshd_logins_total"
    assert _value(samples, logins, outcome="success") == 2
    assert _value(samples, logins, outcome="invalid_credentials") == 2
    refreshes = "refreshd_refreshes_total"
    assert _value(samples, refreshes, outcome="rotated") == 1
    assert _value(samples, refreshes, outcome="reissued_in_grace") == 1
    assert _value(samples, refreshes, outcome="reused") == 1
    assert _value(samples, refreshes, outcome="invalid") == 1
    revoked = "refreshd_sessions_revoked_total"
    assert _value(samples, revoked, reason="reuse_detected") == 1
    # Registration's session and the other login's.
    assert _value(samples, revoked, reason="logout_all") == 2
    hashes = "refreshd_password_hash_seconds_count"
    assert _value(samples, hashes, operation="hash") == 1
    assert _value(samples, hashes, operation="verify") == 4
    duration = "refreshd_http_request_duration_seconds_count"
    assert _value(samples, duration, method="POST", route="/api/auth/local") == 4
    assert second


async def test_rate_limited_logins_are_counted(client: httpx.AsyncClient) -> None:
    # Other accounts each time: the address's budget refuses, not an account's.
    for attempt in range(11):
        await login(client, f"nobody{attempt}", "x")
    samples = _samples((await client.get("/metrics")).text)
    assert _value(samples, "refreshd_logins_total", outcome="rate_limited") == 1


async def test_metrics_can_be_switched_off(
    harness: Harness, settings_factory: Callable[..., Settings]
) -> None:
    client = await harness.client(settings_factory(metrics_enabled=False))
    assert (await client.get("/metrics")).status_code == 404


async def test_request_ids_are_returned_and_accepted(client: httpx.AsyncClient) -> None:
    generated = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) >= 16
    given = await client.get("/healthz", headers={"X-Request-ID": "trace-123.abc"})
    assert given.headers["x-request-id"] == "trace-123.abc"
    insane = await client.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert insane.headers["x-request-id"] != "x" * 500
    error = await client.get("/api/users/me", headers={"X-Request-ID": "trace-err"})
    assert error.status_code == 403
    assert error.headers["x-request-id"] == "trace-err"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


async def test_no_secret_in_any_log_line_of_a_full_flow(
    harness: Harness,
    settings_factory: Callable[..., Settings],
    smtp: SmtpServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every log line (JSON, DEBUG level, access lines included) of register, login, refresh, reset and
    logout is searched for each password, token and code the flow used."""
    settings = settings_factory(
        log_format="json",
        log_level="DEBUG",
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_starttls=False,
    )
    client = await harness.client(settings)
    capsys.readouterr()
    secrets: list[str] = [PASSWORD, "Brand-new-pass-1", "Changed-pass-2"]
    registered = await register(client)
    secrets.append(registered["jwt"])
    device = (await login(client, requestRefresh=True)).json()
    secrets += [device["jwt"], device["refreshToken"]]
    # Each step must do what it is there for: a step that failed early would log none of its secrets.
    assert (await login(client, password="Wrong-guess-99")).status_code == 400
    secrets.append("Wrong-guess-99")
    rotated = (
        await client.post("/api/auth/refresh", json={"refreshToken": device["refreshToken"]})
    ).json()
    secrets += [rotated["jwt"], rotated["refreshToken"]]
    assert (await client.get("/api/users/me", headers=bearer(rotated["jwt"]))).status_code == 200
    changed = await client.post(
        "/api/auth/change-password",
        json={
            "currentPassword": PASSWORD,
            "password": "Changed-pass-2",
            "passwordConfirmation": "Changed-pass-2",
        },
        headers=bearer(rotated["jwt"]),
    )
    assert changed.status_code == 200, changed.text
    forgot = await client.post("/api/auth/forgot-password", json={"email": "alice@example.com"})
    assert forgot.status_code == 200, forgot.text
    (message,) = await smtp.wait_for_async(1)
    code = message.get_content().split("code=")[1].split()[0]
    secrets.append(code)
    reset = await client.post(
        "/api/auth/reset-password",
        json={
            "code": code,
            "password": "Brand-new-pass-1",
            "passwordConfirmation": "Brand-new-pass-1",
        },
    )
    assert reset.status_code == 200, reset.text
    secrets.append(reset.json()["jwt"])
    await client.get(f"/api/auth/email-confirmation?confirmation={code}")  # a code in a URL
    logout = await client.post("/api/auth/logout", headers=bearer(reset.json()["jwt"]))
    assert logout.json() == {"ok": True}
    logging.getLogger("refreshd.test").info(
        "a careless line", extra={"password": PASSWORD, "refreshToken": device["refreshToken"]}
    )
    output = capsys.readouterr().err
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) >= 10  # the flow was logged (access lines at least)
    records = [json.loads(line) for line in lines]
    assert {"request_id", "message", "level"} <= set(records[0])
    assert any(r.get("logger") == "refreshd.access" for r in records)
    for secret in secrets:
        assert secret not in output, f"a secret reached the logs: {secret[:12]}..."
    for settings_secret in (
        settings.jwt_secret.get_secret_value(),
        settings.refresh_jwt_secret.get_secret_value(),
    ):
        assert settings_secret not in output
