"""What a session's state means, each rule written once as a SQL expression and used by every statement that needs
it: the API, the command line, the purge and the refresh verdict all import these.

- **live**: its access tokens work. Not revoked, not past its absolute end.
- **refreshable**: its current refresh token works. Live, the token not idle-expired, its user not blocked.
- **listed**: shown and counted as a user's session (the API's list, ``refreshd user show``, ``refreshd sessions
  list``). Live, and if its refresh token expired from idleness, not past its last access token.
- **dead**: can never be used again; what the purge deletes. Exactly the sessions that are not listed (revocation
  times are never in the future), as one condition per index (see ``dead``).
- **in reuse grace**: a refresh token of an older generation that was replaced less than
  ``REFRESH_TOKEN_REUSE_GRACE`` ago (``app.services.reuse.replaced_within_grace`` says the rule in Python; a
  property test holds the two to each other).

Parameters: ``NOW`` (``now_``), ``ACCESS_CUTOFF`` (now minus the access token's lifetime), ``GRACE_START`` (now minus
the grace) and ``PRESENTED`` (the generation a refresh token names).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Integer, and_, bindparam, case, exists, false, or_, true

from app.store.tables import ACCESS_CUTOFF, GRACE_START, NOW, SESSIONS, USERS

S = SESSIONS.c
PRESENTED = bindparam("gen", type_=Integer())

USER_ACTIVE = exists().where(USERS.c.id == S.user_id, USERS.c.blocked.is_(False))

SESSION_LIVE: ColumnElement[bool] = and_(S.revoked_at.is_(None), S.expires_at > NOW)

SESSION_REFRESHABLE: ColumnElement[bool] = and_(
    SESSION_LIVE, S.refresh_expires_at > NOW, USER_ACTIVE
)

SESSION_LISTED: ColumnElement[bool] = and_(
    SESSION_LIVE, or_(S.refresh_expires_at.is_(None), S.refresh_expires_at > ACCESS_CUTOFF)
)


def dead() -> list[ColumnElement[bool]]:
    """Not listed, as one condition per index, so that each purge batch is an index range scan (an OR of the three
    would scan the table on SQLite, or build a bitmap of every dead row per batch on PostgreSQL). ``revoked_at <=
    now`` is "revoked" as a range SQLite's planner takes through the index (it scans the table for ``IS NOT
    NULL``)."""
    return [S.revoked_at <= NOW, S.expires_at <= NOW, S.refresh_expires_at <= ACCESS_CUTOFF]


# When the presented generation was replaced: generation g was replaced when g + 1 was issued, and the row keeps
# the issue times of its last three generations.
_REPLACED_AT = case(
    (S.generation - PRESENTED == 1, S.rotated_at),
    (S.generation - PRESENTED == 2, S.previous_rotated_at),
    else_=S.earlier_rotated_at,
)

IN_REUSE_GRACE: ColumnElement[bool] = case(
    (or_(S.generation - PRESENTED < 1, S.grace_floor > PRESENTED), false()),
    (_REPLACED_AT.is_(None), false()),
    (_REPLACED_AT <= GRACE_START, false()),
    (S.generation - PRESENTED <= 3, true()),
    else_=S.burst_generation <= PRESENTED + 1,
)
