"""Whether the database can serve this build: migrated, and to this build's revision (``/readyz``, the CLI)."""

from __future__ import annotations

from app.migrations_info import expected_head

NOT_MIGRATED = "schema not migrated: run `refreshd migrate`"


def schema_problem(current: str | None) -> str | None:
    """Why a database at revision ``current`` (None: never migrated) cannot serve this build, or None."""
    if current is None:
        return NOT_MIGRATED
    expected = expected_head()
    if current != expected:
        return (
            f"schema at revision {current}, this build expects {expected}: run `refreshd migrate`"
        )
    return None
