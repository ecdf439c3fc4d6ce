"""The rules about a session's state are SQL expressions (``app.store.predicates``), evaluated by the database;
where code also reads them in Python (``replaced_within_grace``), the two must agree. Hypothesis generates session
and user states around every boundary (equal times included) and both databases answer for each."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, or_, select

from app.services.reuse import replaced_within_grace
from app.settings import Settings
from app.store import SessionRecord, Store
from app.store.predicates import (
    IN_REUSE_GRACE,
    SESSION_LISTED,
    SESSION_LIVE,
    SESSION_REFRESHABLE,
    dead,
)
from app.store.tables import SESSIONS, USERS

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
GRACE = timedelta(seconds=10)
ACCESS_TTL = timedelta(minutes=15)
# Times on and around every boundary the rules compare with: now, now - grace, now - the access token's life.
MOMENTS = sorted(
    {NOW + timedelta(seconds=s) for s in (-25, -15, -10, -5, 0, 5, 15)}
    | {NOW - ACCESS_TTL + timedelta(seconds=s) for s in (-5, 0, 5)}
)
PAST = [m for m in MOMENTS if m <= NOW]
# Issue times, mostly inside the grace window, where the rule has the most to decide.
ISSUED = [NOW - timedelta(seconds=s) for s in (15, 10, 5, 5, 0, 0)]
times = st.sampled_from(MOMENTS)
maybe_times = st.one_of(st.none(), times)


@st.composite
def session_states(draw: st.DrawFn) -> dict[str, Any]:
    generation = draw(st.integers(0, 8))
    # The presented generation, relative to the current one: ahead, current, or up to five behind.
    behind = draw(st.sampled_from([-1, 0, 1, 2, 3, 4, 5]))
    # Issue times as rotations leave them: the three most recent, oldest last (any may be unknown).
    issued = sorted(draw(st.lists(st.sampled_from(ISSUED), min_size=3, max_size=3)), reverse=True)
    known = draw(st.lists(st.sampled_from([True, True, True, False]), min_size=3, max_size=3))
    rotated, previous, earlier = (t if k else None for t, k in zip(issued, known, strict=True))
    return {
        "generation": generation,
        "rotated_at": rotated,
        "previous_rotated_at": previous,
        "earlier_rotated_at": earlier,
        "burst_generation": max(0, generation - draw(st.integers(-1, 5))),
        "grace_floor": max(0, generation - draw(st.integers(-1, 6))),
        "refresh_expires_at": draw(maybe_times),
        "expires_at": draw(times),
        # Revocation times are never in the future.
        "revoked_at": draw(st.one_of(st.none(), st.sampled_from(PAST))),
        "presented": max(0, generation - behind),
    }


def _expected(state: dict[str, Any], record: SessionRecord, blocked: bool) -> dict[str, bool]:
    """The rules as the module docstring of ``app.store.predicates`` states them, read in Python."""
    refresh = record.refresh_expires_at
    live = record.revoked_at is None and record.expires_at > NOW
    return {
        "live": live,
        "refreshable": live and refresh is not None and refresh > NOW and not blocked,
        "listed": live and (refresh is None or refresh > NOW - ACCESS_TTL),
        "dead": (
            (record.revoked_at is not None and record.revoked_at <= NOW)
            or record.expires_at <= NOW
            or (refresh is not None and refresh <= NOW - ACCESS_TTL)
        ),
        "in_grace": replaced_within_grace(record, state["presented"], now=NOW, grace=GRACE),
    }


ANSWERS = ("live", "refreshable", "listed", "dead", "in_grace")
_VERDICTS = select(
    SESSIONS,
    SESSION_LIVE.label("live"),
    SESSION_REFRESHABLE.label("refreshable"),
    SESSION_LISTED.label("listed"),
    or_(*dead()).label("dead"),
    IN_REUSE_GRACE.label("in_grace"),
).where(SESSIONS.c.id == "s" * 32)


async def _check(settings_: Settings, states: list[dict[str, Any]], blocked: bool) -> None:
    store = Store.open(settings_)
    try:
        await store.database.run(delete(SESSIONS))
        await store.database.run(delete(USERS))
        user = {
            "id": 1,
            "document_id": "a" * 24,
            "username": "prop",
            "email": "prop@example.com",
            "provider": "local",
            "password_hash": "x",
            "confirmed": True,
            "blocked": blocked,
            "created_at": NOW,
            "updated_at": NOW,
            "published_at": NOW,
        }
        await store.database.run(insert(USERS).values(**user))
        for state in states:
            await store.database.run(delete(SESSIONS))
            row = {k: v for k, v in state.items() if k != "presented"}
            row |= {"id": "s" * 32, "user_id": 1, "created_at": NOW, "last_active_at": NOW}
            await store.database.run(insert(SESSIONS).values(**row))
            values = {
                "now_": NOW,
                "access_cutoff": NOW - ACCESS_TTL,
                "grace_start": NOW - GRACE,
                "gen": state["presented"],
            }
            found = await store.database.one(_VERDICTS, values)
            assert found is not None
            answers = {name: bool(found.pop(name)) for name in ANSWERS}
            record = SessionRecord(**found)
            assert answers == _expected(state, record, blocked), state
            # The purge deletes exactly what the API does not list.
            assert answers["dead"] is not answers["listed"], state
    finally:
        await store.close()


def _ring(generation: int, presented: int, *, burst: int, floor: int = 0) -> dict[str, Any]:
    """A session whose last three generations were issued 0, 2 and 5 seconds ago (all in the grace window)."""
    seconds = (0, 2, 5)
    rotated, previous, earlier = (NOW - timedelta(seconds=s) for s in seconds)
    return {
        "generation": generation,
        "rotated_at": rotated,
        "previous_rotated_at": previous,
        "earlier_rotated_at": earlier,
        "burst_generation": burst,
        "grace_floor": floor,
        "refresh_expires_at": NOW + timedelta(seconds=15),
        "expires_at": NOW + timedelta(seconds=15),
        "revoked_at": None,
        "presented": presented,
    }


# The edges of the grace rule, always tried besides the generated states: three behind with a burst that began
# after it (exact, from the ring), four behind on each side of the burst's start, and the password change's floor.
@example(
    states=[
        _ring(6, 3, burst=6),
        _ring(6, 2, burst=3),
        _ring(6, 2, burst=4),
        _ring(6, 4, burst=1, floor=4),
        _ring(6, 4, burst=1, floor=5),
    ],
    blocked=False,
)
@hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(states=st.lists(session_states(), min_size=1, max_size=10), blocked=st.booleans())
def test_the_sql_rules_and_their_python_readings_agree(
    settings: Settings, states: list[dict[str, Any]], blocked: bool
) -> None:
    asyncio.run(_check(settings, states, blocked))
