"""Housekeeping: delete what can never be used again, in small batches.

Each batch is one DELETE committed on its own, chosen through an index (``app.store.housekeeping``), followed by a
pause twice as long as it took: the purge holds the database's write lock (SQLite) or its I/O (PostgreSQL) only
while a statement runs, at most a third of the time, so live traffic gets its turn between batches instead of
waiting behind one long delete, a run of back-to-back batches, or a transaction kept open across round trips.
Inside the server the pause is a sleep on a busy event loop, which lasts longer: under load the purge slows down and
leaves the requests their time (bench/results/2026-11-28-server-purge.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.sql.dml import UpdateBase

from app.store.database import Values
from app.store.housekeeping import AUDIT_PASSES, CODE_PASSES, SESSION_PASSES, Pass

# Commits one batch on its own and returns the rows it deleted: the store's ``write_alone`` (its database's),
# inside the server beside the requests (on SQLite, between their writes), or in the CLI's own process.
Writer = Callable[[UpdateBase, Values], Awaitable[int]]

# Pause after each batch, per second the batch took: the best trade between purge speed and request latency
# measured (bench/results/2026-11-28-fairness-nagle.md, "Purge pacing").
PAUSE_PER_BATCH_TIME = 2.0


async def _delete_in_batches(
    write: Writer,
    passes: Sequence[Pass],
    values: dict[str, Any],
    *,
    batch_size: int,
    max_batches: int | None = None,
) -> int:
    """Rows matching any pass's condition, deleted a pass at a time; ``max_batches`` caps the batches that deleted
    something, over all the passes."""
    total = 0
    batches = 0
    took = 0.0
    values = {**values, "batch": batch_size}
    for each in passes:
        while max_batches is None or batches < max_batches:
            # Pacing after the previous batch (see the module's docstring); 0 before the first.
            await asyncio.sleep(took * PAUSE_PER_BATCH_TIME)
            started = time.monotonic()
            deleted = await write(each.statement, values)
            took = time.monotonic() - started
            total += deleted
            batches += deleted > 0
            if deleted < batch_size:
                break
    return total


async def purge_sessions(
    write: Writer,
    *,
    now: datetime,
    access_ttl: timedelta,
    batch_size: int,
    max_batches: int | None = None,
) -> int:
    """Delete dead sessions (``app.store.predicates.dead``) batch by batch; returns how many rows went."""
    values = {"now_": now, "access_cutoff": now - access_ttl}
    return await _delete_in_batches(
        write, SESSION_PASSES, values, batch_size=batch_size, max_batches=max_batches
    )


async def purge_codes(write: Writer, *, now: datetime, batch_size: int) -> int:
    """Used or expired one-time codes."""
    return await _delete_in_batches(write, CODE_PASSES, {"now_": now}, batch_size=batch_size)


async def purge_audit(write: Writer, *, before: datetime, batch_size: int) -> int:
    """Audit events older than the retention."""
    values = {"audit_cutoff": before}
    return await _delete_in_batches(write, AUDIT_PASSES, values, batch_size=batch_size)


@dataclass(frozen=True)
class Purged:
    sessions: int
    codes: int
    audit_events: int


async def purge_all(
    write: Writer,
    *,
    now: datetime,
    access_ttl: timedelta,
    audit_retention: timedelta,
    batch_size: int,
) -> Purged:
    return Purged(
        sessions=await purge_sessions(write, now=now, access_ttl=access_ttl, batch_size=batch_size),
        codes=await purge_codes(write, now=now, batch_size=batch_size),
        audit_events=await purge_audit(write, before=now - audit_retention, batch_size=batch_size),
    )
