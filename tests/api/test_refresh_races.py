"""Browser tabs racing to refresh one token must never log the user out.

Each trial: a fresh session; N tabs refresh the same token at the same moment, and every tab uses what it got at
once (it refreshes again, then calls ``/users/me``), so the tab that won has often rotated again before a loser's
verdict is taken. Nobody replayed anything: every answer must be a 200, no session revoked, the session alive
afterwards, and every generation handed out as one token only (a late copy gets the very token its rotation
issued, never a second branch). On SQLite and PostgreSQL in one process, and across two server processes on one
PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.security import tokens
from app.security.tokens import SigningKeys
from tests.api.helpers import PASSWORD, bearer, error_of, register, registered_with_refresh
from tests.conftest import Harness
from tests.servers import running_servers
from tests.support import REFRESH_SECRET, FakeClock, migrate, recreate_postgres_database

TRIALS = 50
TABS = [2, 3, 4]

# One HTTP call of a tab: method, path, JSON body, headers.
Call = Callable[[str, str, dict[str, Any] | None, dict[str, str]], Awaitable[httpx.Response]]


@dataclass
class Trial:
    """What the tabs of one trial saw."""

    answers: list[httpx.Response] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # every refresh token handed out


async def _tab(call: Call, token: str, trial: Trial) -> None:
    """Refresh, then use the answer at once: refresh again with the new token, and call the API."""
    first = await call("POST", "/api/auth/refresh", {"refreshToken": token}, {})
    trial.answers.append(first)
    if first.status_code != 200:
        return  # the trial's assertions report it
    trial.tokens.append(first.json()["refreshToken"])
    chained = await call(
        "POST", "/api/auth/refresh", {"refreshToken": first.json()["refreshToken"]}, {}
    )
    trial.answers.append(chained)
    if chained.status_code != 200:
        return
    trial.tokens.append(chained.json()["refreshToken"])
    me = await call("GET", "/api/users/me", None, bearer(chained.json()["jwt"]))
    trial.answers.append(me)


def _generation(token: str) -> int:
    claims = tokens.decode_refresh_token(
        token, keys=SigningKeys.hmac(REFRESH_SECRET, "HS256"), now=datetime.now(UTC)
    )
    return claims.generation


async def _run_trials(calls: list[Call], login: Callable[[], Awaitable[str]], tabs: int) -> None:
    """``TRIALS`` races of ``tabs`` tabs (tab i speaks to ``calls[i % len(calls)]``); fails with the count of
    trials that went wrong and the first of them."""
    failures: list[str] = []
    for number in range(TRIALS):
        token = await login()
        trial = Trial()
        await asyncio.gather(*(_tab(calls[i % len(calls)], token, trial) for i in range(tabs)))
        problems = [
            f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}"
            for r in trial.answers
            if r.status_code != 200
        ]
        if len(trial.answers) != 3 * tabs:
            problems.append(f"{len(trial.answers)} answers for {tabs} tabs")
        # One token per generation: late copies got the very token their rotation issued.
        by_generation: dict[int, set[str]] = defaultdict(set)
        for handed_out in trial.tokens:
            by_generation[_generation(handed_out)].add(handed_out)
        problems += [
            f"generation {g}: {len(values)} different tokens"
            for g, values in by_generation.items()
            if len(values) > 1
        ]
        # The session is alive: its newest token refreshes, and the access token it gets works.
        if trial.tokens:
            newest = by_generation[max(by_generation)].pop()
            alive = await calls[0]("POST", "/api/auth/refresh", {"refreshToken": newest}, {})
            if alive.status_code == 200:
                me = await calls[-1]("GET", "/api/users/me", None, bearer(alive.json()["jwt"]))
                if me.status_code != 200:
                    problems.append(f"after the race, /users/me: {me.status_code} {me.text}")
            else:
                problems.append(f"after the race, refresh: {alive.status_code} {alive.text}")
        if problems:
            failures.append(f"trial {number}: " + "; ".join(problems))
    assert failures == [], (
        f"{len(failures)} of {TRIALS} trials with {tabs} tabs failed: {failures[0]}"
    )


def _asgi_call(client: httpx.AsyncClient) -> Call:
    async def call(
        method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
    ) -> httpx.Response:
        return await client.request(method, path, json=body, headers=headers)

    return call


@pytest.mark.parametrize("tabs", TABS)
async def test_racing_tabs_that_chain_at_once_are_never_logged_out(
    harness: Harness, settings_factory: Callable[..., Any], tabs: int
) -> None:
    client = await harness.client(settings_factory(rate_limit_enabled=False))
    await register(client)

    async def login() -> str:
        response = await client.post(
            "/api/auth/local",
            json={"identifier": "alice", "password": PASSWORD, "requestRefresh": True},
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["refreshToken"]
        return token

    await _run_trials([_asgi_call(client)], login, tabs)


async def test_a_late_copy_two_generations_behind_within_grace_gets_the_current_token(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """The winner rotated twice before the loser's copy arrived, 9 s after the first rotation: still a 200, with
    the session's current token; a copy replaced more than the window ago still revokes."""
    first = (await registered_with_refresh(client))["refreshToken"]
    second = (await client.post("/api/auth/refresh", json={"refreshToken": first})).json()
    clock.advance(timedelta(seconds=4))
    third = (
        await client.post("/api/auth/refresh", json={"refreshToken": second["refreshToken"]})
    ).json()
    clock.advance(timedelta(seconds=5))
    late = await client.post("/api/auth/refresh", json={"refreshToken": first})
    assert late.status_code == 200, late.text
    assert late.json()["refreshToken"] == third["refreshToken"]
    # 10 s after ``first`` was replaced (and 6 s after ``second`` was): ``first`` is a replay, ``second`` not.
    clock.advance(timedelta(seconds=1))
    again = await client.post("/api/auth/refresh", json={"refreshToken": second["refreshToken"]})
    assert again.status_code == 200, again.text
    replay = await client.post("/api/auth/refresh", json={"refreshToken": first})
    assert replay.status_code == 401
    assert error_of(replay)["details"]["code"] == "REFRESH_TOKEN_REUSED"
    revoked = await client.post("/api/auth/refresh", json={"refreshToken": third["refreshToken"]})
    assert error_of(revoked)["details"]["code"] == "REFRESH_TOKEN_REUSED"  # why the session ended


@pytest.fixture(scope="module")
def race_postgres() -> str:
    url = recreate_postgres_database("races")
    migrate(url)
    return url


@pytest.mark.slow
@pytest.mark.parametrize("tabs", TABS)
async def test_racing_tabs_across_two_server_processes_are_never_logged_out(
    race_postgres: str, tmp_path: Path, tabs: int
) -> None:
    with running_servers(race_postgres, 2, tmp_path, RATE_LIMIT_ENABLED="false") as servers:
        async with httpx.AsyncClient(timeout=30) as http:
            calls: list[Call] = []
            for server in servers:

                def bind(base: str) -> Call:
                    async def call(
                        method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
                    ) -> httpx.Response:
                        return await http.request(method, base + path, json=body, headers=headers)

                    return call

                calls.append(bind(server.url))
            username = f"racer{tabs}"
            created = await calls[0](
                "POST",
                "/api/auth/local/register",
                {"username": username, "email": f"{username}@example.com", "password": PASSWORD},
                {},
            )
            assert created.status_code == 200, created.text

            async def login() -> str:
                response = await calls[1](
                    "POST",
                    "/api/auth/local",
                    {"identifier": username, "password": PASSWORD, "requestRefresh": True},
                    {},
                )
                assert response.status_code == 200, response.text
                token: str = response.json()["refreshToken"]
                return token

            await _run_trials(calls, login, tabs)


async def test_a_token_replaced_long_ago_is_a_replay_during_a_burst_of_rotations(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Replaced an hour ago, then the session rotated three times in quick succession: the old token is four
    generations behind, further than the row's times reach, and still judged a replay."""
    first = (await registered_with_refresh(client))["refreshToken"]
    token = (await client.post("/api/auth/refresh", json={"refreshToken": first})).json()
    clock.advance(timedelta(hours=1))
    for _ in range(3):
        clock.advance(timedelta(seconds=1))
        token = (
            await client.post("/api/auth/refresh", json={"refreshToken": token["refreshToken"]})
        ).json()
    replay = await client.post("/api/auth/refresh", json={"refreshToken": first})
    assert replay.status_code == 401
    assert error_of(replay)["details"]["code"] == "REFRESH_TOKEN_REUSED"
    revoked = await client.post("/api/auth/refresh", json={"refreshToken": token["refreshToken"]})
    assert error_of(revoked)["details"]["code"] == "REFRESH_TOKEN_REUSED"  # why the session ended


async def test_tokens_retired_by_a_password_change_get_no_grace(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A password change rotates the session that asked to cut off whoever else holds its token: that token is
    refused at once, not re-issued within the window; the session itself lives on (revoking it would let the
    token's holder end the owner's new session)."""
    jwt = (await register(client))["jwt"]
    login = await client.post(
        "/api/auth/local",
        json={"identifier": "alice", "password": PASSWORD, "requestRefresh": True},
    )
    before = login.json()
    changed = await client.post(
        "/api/auth/change-password",
        json={
            "currentPassword": PASSWORD,
            "password": "New-pass-456",
            "passwordConfirmation": "New-pass-456",
        },
        headers=bearer(before["jwt"]),
    )
    assert changed.status_code == 200, changed.text
    assert jwt != before["jwt"]
    clock.advance(timedelta(seconds=1))
    stale = await client.post("/api/auth/refresh", json={"refreshToken": before["refreshToken"]})
    assert stale.status_code == 401
    assert error_of(stale)["details"]["code"] == "REFRESH_TOKEN_REVOKED"
    fresh = await client.post(
        "/api/auth/refresh", json={"refreshToken": changed.json()["refreshToken"]}
    )
    assert fresh.status_code == 200, fresh.text
