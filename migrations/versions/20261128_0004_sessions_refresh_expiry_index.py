"""index sessions by refresh expiry, for the purge

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

The purge deletes idle-expired sessions by ``refresh_expires_at``; without an index, each of its batches scanned
the whole table while holding SQLite's write lock.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_sessions_refresh_expires_at", "sessions", ["refresh_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_refresh_expires_at", table_name="sessions")
