"""The reuse verdict: when a refresh token that no longer matches its session is re-issued, refused, or taken as
a replay that revokes the session. Pure functions of the session row and the time."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from app.store.sessions import Verdict


class Rejection(StrEnum):
    """Why a refresh token was refused; sent to clients as ``details.code``."""

    INVALID = "REFRESH_TOKEN_INVALID"
    EXPIRED = "REFRESH_TOKEN_EXPIRED"
    REVOKED = "REFRESH_TOKEN_REVOKED"
    REUSED = "REFRESH_TOKEN_REUSED"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    USER_BLOCKED = "USER_BLOCKED"


class GraceTimes(Protocol):
    """What ``replaced_within_grace`` reads of a session row."""

    @property
    def generation(self) -> int: ...
    @property
    def rotated_at(self) -> datetime | None: ...
    @property
    def previous_rotated_at(self) -> datetime | None: ...
    @property
    def earlier_rotated_at(self) -> datetime | None: ...
    @property
    def burst_generation(self) -> int: ...
    @property
    def grace_floor(self) -> int: ...


def replaced_within_grace(
    row: GraceTimes, generation: int, *, now: datetime, grace: timedelta
) -> bool:
    """Whether the refresh token of ``generation``, older than the row's current one, was replaced less than
    ``grace`` before ``now``. The rule in Python; the store's statements use its SQL form
    (``app.store.predicates.IN_REUSE_GRACE``), and a property test holds the two to each other.

    Generation g was replaced when g + 1 was issued. The row knows when its last three generations were issued
    (``rotated_at``, ``previous_rotated_at``, ``earlier_rotated_at``), so up to three generations behind the
    answer is exact. Further behind, g was replaced before the oldest of those three was issued: if that one is
    outside the window, so is g's replacement. If it is inside, the row also knows where the current burst began
    (``burst_generation``: the first of a run of rotations each less than the window after the one before). A
    generation replaced before the burst began was replaced at least a window before it: outside. One replaced
    within the burst (three or more rotations in quick succession, the last inside the window) cannot be placed
    exactly, and is taken as within the grace rather than risk revoking a racing client. A time not known (rows
    from before these columns) is taken as outside the window, and so are the generations a password change
    retired (below ``grace_floor``).
    """
    behind = row.generation - generation
    if behind < 1 or generation < row.grace_floor:
        return False
    times = (row.rotated_at, row.previous_rotated_at, row.earlier_rotated_at)
    replaced_at = times[min(behind, len(times)) - 1]
    if replaced_at is None or now - replaced_at >= grace:
        return False
    return behind <= len(times) or generation + 1 >= row.burst_generation


def explain_miss(verdict: Verdict | None, generation: int, now: datetime) -> Rejection | None:
    """Why a refresh whose UPDATE missed is refused; None if its token is within the reuse grace (re-issue) and
    REUSED is decided by the caller, for a replaced token outside it."""
    if verdict is None:
        return Rejection.INVALID
    row = verdict.row
    if row.revoked_at is not None:
        return Rejection.REVOKED
    if verdict.user_blocked:
        return Rejection.USER_BLOCKED
    if row.expires_at <= now:
        return Rejection.SESSION_EXPIRED
    if generation > row.generation or row.rotated_at is None or row.refresh_expires_at is None:
        return Rejection.INVALID  # never issued by us
    if generation == row.generation:
        return Rejection.EXPIRED
    if generation < row.grace_floor:
        # Retired by a password change: refused, but the session lives on. Revoking it would gain nothing (the
        # rotation already cut this token off) and would let whoever holds it end the owner's new session.
        return Rejection.REVOKED
    if verdict.in_grace and row.refresh_expires_at <= now:
        return Rejection.EXPIRED
    return None if verdict.in_grace else Rejection.REUSED
