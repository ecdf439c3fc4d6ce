"""When a replaced refresh token still refreshes: ``replaced_within_grace``, from the times a session row keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.models import Session
from app.services.reuse import replaced_within_grace

GRACE = timedelta(seconds=10)
NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


def _row(
    generation: int,
    rotated: float | None,
    previous: float | None = None,
    earlier: float | None = None,
    *,
    burst: int = 0,
    grace_floor: int = 0,
) -> Session:
    """A session at ``generation`` whose last three generations were issued the given seconds before NOW."""

    def at(seconds: float | None) -> datetime | None:
        return None if seconds is None else NOW - timedelta(seconds=seconds)

    return Session(
        generation=generation,
        rotated_at=at(rotated),
        previous_rotated_at=at(previous),
        earlier_rotated_at=at(earlier),
        burst_generation=burst,
        grace_floor=grace_floor,
    )


@pytest.mark.parametrize(
    ("presented", "expected"),
    [
        (10, False),  # the current generation is not "replaced"
        (11, False),  # nor is a generation never issued
        (9, True),  # replaced 2 s ago, when 10 was issued
        (8, True),  # replaced 6 s ago, when 9 was issued
        (7, False),  # replaced 12 s ago, when 8 was issued
        (6, False),  # replaced before 8 was issued: longer ago than the window too
    ],
)
def test_each_generation_is_judged_by_when_it_was_replaced(presented: int, expected: bool) -> None:
    row = _row(10, rotated=2, previous=6, earlier=12)
    assert replaced_within_grace(row, presented, now=NOW, grace=GRACE) is expected


def test_the_window_is_open_below_its_end_and_closed_at_it() -> None:
    assert replaced_within_grace(_row(2, rotated=9.999), 1, now=NOW, grace=GRACE)
    assert not replaced_within_grace(_row(2, rotated=10), 1, now=NOW, grace=GRACE)


def test_further_behind_a_generation_is_judged_by_the_burst_it_was_replaced_in() -> None:
    """Further behind than the row remembers, while the session was rotated three times within the window: a
    generation replaced within the current burst cannot be placed exactly and is not taken for a replay; one
    replaced before the burst began was replaced at least a window before it."""
    row = _row(10, rotated=1, previous=2, earlier=3, burst=6)
    assert replaced_within_grace(
        row, 5, now=NOW, grace=GRACE
    )  # replaced when 6, the burst's first, was issued
    assert not replaced_within_grace(row, 4, now=NOW, grace=GRACE)  # replaced before the burst
    assert not replaced_within_grace(row, 1, now=NOW, grace=GRACE)


def test_a_token_replaced_an_hour_ago_is_a_replay_even_during_a_burst() -> None:
    """Replaced an hour ago (1 -> 2), then three quick rotations (3, 4, 5): the burst began at 3."""
    row = _row(5, rotated=1, previous=2, earlier=3, burst=3)
    assert not replaced_within_grace(row, 1, now=NOW, grace=GRACE)
    assert replaced_within_grace(row, 2, now=NOW, grace=GRACE)  # replaced 3 s ago: exact


def test_unknown_times_are_outside_the_window() -> None:
    """Rows from before the times were kept."""
    row = _row(10, rotated=1, previous=None, earlier=None)
    assert replaced_within_grace(row, 9, now=NOW, grace=GRACE)
    assert not replaced_within_grace(row, 8, now=NOW, grace=GRACE)
    assert not replaced_within_grace(row, 3, now=NOW, grace=GRACE)


def test_generations_retired_by_a_password_change_never_get_the_grace() -> None:
    row = _row(10, rotated=1, previous=2, earlier=3, grace_floor=10)
    assert not replaced_within_grace(row, 9, now=NOW, grace=GRACE)
    row = _row(12, rotated=1, previous=2, earlier=3, grace_floor=10)
    assert replaced_within_grace(row, 10, now=NOW, grace=GRACE)
    assert not replaced_within_grace(row, 9, now=NOW, grace=GRACE)
