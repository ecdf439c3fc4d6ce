"""The use cases called directly, as the routers and the command line call them: on SQLite and PostgreSQL, with the
fake clock passed in as ``now``. Their HTTP rendering is tested in tests/api."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
import pytest

from app.errors import ApplicationError, UnauthorizedError, ValidationError
from app.runtime import Services, password_hasher
from app.services.accounts import create_account
from app.services.admin import UserRef
from app.services.client import Client
from app.services.mail import Message
from app.services.reuse import Rejection
from app.services.sessions import Identity, Refreshed, Refused
from app.services.users import Registration
from app.settings import Settings
from app.store import Store
from app.store.sqlite import SqliteDatabase
from tests.support import FakeClock, asyncpg_dsn

CLIENT = Client("203.0.113.9", "pytest")
ALICE = Registration("alice", "Alice@Example.com", "Secret-pass-123")


@dataclass
class Outbox:
    """Delivery into a list: the messages are what the use cases hand to a mailer."""

    sent: list[Message] = field(default_factory=list)

    async def send(self, message: Message) -> None:
        self.sent.append(message)


@pytest.fixture
async def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
async def services(settings: Settings, outbox: Outbox) -> AsyncIterator[Services]:
    built = Services.build(
        settings.model_copy(update={"refresh_token_rotation": True}),
        Store.open(settings),
        password_hasher(settings),
        outbox,
    )
    try:
        yield built
    finally:
        await built.close()


async def _signed_in(services: Services, clock: FakeClock) -> tuple[int, str, str]:
    await services.accounts.register(ALICE, CLIENT, now=clock.now)
    signed = await services.accounts.login(
        "alice", ALICE.password, CLIENT, now=clock.now, with_refresh=True
    )
    assert signed.refresh is not None
    return signed.user.id, signed.session_id, signed.refresh.value


async def test_a_refresh_rotates_and_a_late_duplicate_gets_the_same_successor(
    services: Services, clock: FakeClock
) -> None:
    _, session_id, token = await _signed_in(services, clock)
    clock.advance(timedelta(minutes=1))
    first = await services.sessions.refresh(token, CLIENT, now=clock.now)
    assert isinstance(first, Refreshed)
    assert first.refresh is not None
    assert not first.reissued
    clock.advance(timedelta(seconds=3))  # inside the 10 s grace
    duplicate = await services.sessions.refresh(token, CLIENT, now=clock.now)
    assert isinstance(duplicate, Refreshed)
    assert duplicate.reissued
    assert (
        duplicate.refresh == first.refresh
    )  # the very token the rotation issued: no second branch
    assert duplicate.session_id == session_id


async def test_a_replay_after_the_grace_revokes_the_session(
    services: Services, clock: FakeClock
) -> None:
    user_id, session_id, token = await _signed_in(services, clock)
    rotated = await services.sessions.refresh(token, CLIENT, now=clock.now)
    assert isinstance(rotated, Refreshed)
    assert rotated.refresh is not None
    clock.advance(timedelta(seconds=11))
    replay = await services.sessions.refresh(token, CLIENT, now=clock.now)
    assert replay == Refused(Rejection.REUSED, user_id, session_id)
    # The successor dies with its session, refused as revoked; its holder is told the session ended by a reuse.
    after = await services.sessions.refresh(rotated.refresh.value, CLIENT, now=clock.now)
    assert after == Refused(Rejection.REVOKED, ended_by_reuse=True)
    assert after.error().details["code"] == "REFRESH_TOKEN_REUSED"
    with pytest.raises(UnauthorizedError):
        await services.sessions.authenticated_user(
            user_id, session_id, now=clock.now, email_confirmation=False
        )


async def test_a_rotated_away_token_logs_out_only_its_own_session(
    services: Services, clock: FakeClock
) -> None:
    user_id, session_id, token = await _signed_in(services, clock)
    other = await services.accounts.login(
        "alice", ALICE.password, CLIENT, now=clock.now, with_refresh=True
    )
    await services.sessions.refresh(token, CLIENT, now=clock.now)
    clock.advance(
        timedelta(minutes=1)
    )  # the old token is out of its grace: no longer a live credential
    stale = services.sessions.identify(token, now=clock.now)
    assert stale == Identity(user_id, session_id, 1)
    assert await services.sessions.logout(stale, "all", CLIENT, now=clock.now) == 1
    listed = await services.sessions.listed(user_id, current=other.session_id, now=clock.now)
    ids = [view.id for view in listed]
    assert session_id not in ids
    assert ids[0] == other.session_id  # the caller's first
    assert len(ids) == 2  # and the registration's, still within its access token's life


async def test_a_login_refused_for_a_wrong_password_is_audited(
    services: Services, clock: FakeClock
) -> None:
    await services.accounts.register(ALICE, CLIENT, now=clock.now)
    with pytest.raises(ValidationError):
        await services.accounts.login(
            "alice", "wrong-pass-1", CLIENT, now=clock.now, with_refresh=False
        )
    trail = await services.admin.audit(user_id=None, limit=5)
    assert [event.event for event in trail] == ["login.failed", "user.registered"]
    assert trail[0].details == {"reason": "invalid_credentials"}


async def test_a_password_change_keeps_this_session_and_ends_the_others(
    services: Services, clock: FakeClock
) -> None:
    user_id, session_id, token = await _signed_in(services, clock)
    user = await services.admin.find(UserRef(id=user_id))
    changed = await services.accounts.change_password(
        user, session_id, ALICE.password, "Changed-pass-456", CLIENT, now=clock.now
    )
    assert changed.sessions_revoked == 1  # the registration's session
    assert changed.signed_in.refresh is not None
    # The token from before the change gets no grace, and the session lives on.
    assert await services.sessions.refresh(token, CLIENT, now=clock.now) == Refused(
        Rejection.REVOKED
    )
    renewed = await services.sessions.refresh(
        changed.signed_in.refresh.value, CLIENT, now=clock.now
    )
    assert isinstance(renewed, Refreshed)


async def test_a_reset_code_works_once_and_starts_a_new_session(
    services: Services, clock: FakeClock, outbox: Outbox
) -> None:
    user_id, session_id, _ = await _signed_in(services, clock)
    await services.recovery.request_reset("alice@example.com", now=clock.now)
    (message,) = outbox.sent
    code = message.text.split("?code=", 1)[1].split()[0]
    reset = await services.recovery.reset_password(code, "Brand-new-789", CLIENT, now=clock.now)
    assert reset.sessions_revoked == 2
    assert reset.started.session_id != session_id
    with pytest.raises(ValidationError):
        await services.recovery.reset_password(code, "Another-one-012", CLIENT, now=clock.now)
    signed = await services.accounts.login(
        "alice", "Brand-new-789", CLIENT, now=clock.now, with_refresh=False
    )
    assert signed.user.id == user_id


async def test_a_blocked_account_cannot_log_in_and_loses_its_sessions(
    services: Services, clock: FakeClock
) -> None:
    user_id, _, token = await _signed_in(services, clock)
    assert await services.admin.set_blocked(user_id, True, now=clock.now) == 2
    assert await services.sessions.refresh(token, CLIENT, now=clock.now) == Refused(
        Rejection.REVOKED
    )
    with pytest.raises(ApplicationError):
        await services.accounts.login(
            "alice", ALICE.password, CLIENT, now=clock.now, with_refresh=False
        )


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll for a state (not standing in for time), for up to ten seconds."""
    for _ in range(1000):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the state was never reached")


async def test_racing_account_creations_give_one_account_and_one_taken(
    services: Services, clock: FakeClock, settings: Settings
) -> None:
    """The second creation cannot see the first's uncommitted row: on PostgreSQL its INSERT waits on the unique
    index and then fails, which must come out as "taken", not as a crash."""
    store = services.store
    created = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with store.transaction() as tx:
            await create_account(tx, ALICE, "hash", confirmed=True, now=clock.now)
            created.set()
            await release.wait()

    async def second() -> None:
        await created.wait()
        async with store.transaction() as tx:
            await create_account(tx, ALICE, "hash", confirmed=True, now=clock.now)

    winner = asyncio.create_task(first())
    loser = asyncio.create_task(second())
    await created.wait()
    if settings.is_sqlite:
        database = store.database
        assert isinstance(database, SqliteDatabase)
        await _until(lambda: _true(database.gate.locked() and not loser.done()))
    else:
        admin = await asyncpg.connect(asyncpg_dsn(settings.database_url))
        try:
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            await _until(lambda: _positive(admin.fetchval(waiting)))
        finally:
            await admin.close()
    release.set()
    await winner
    with pytest.raises(ApplicationError) as refused:
        await loser
    assert refused.value.message == "Email or Username are already taken"
    assert [name for _, name, _ in await store.users.names()] == ["alice"]


async def _true(value: bool) -> bool:
    return value


async def _positive(count: Awaitable[int]) -> bool:
    return await count > 0
