"""sessions remember when their two previous generations were issued

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

A refresh token replaced less than REFRESH_TOKEN_REUSE_GRACE ago must still refresh, even when its successor was
itself replaced meanwhile (a tab that won a race used its new token at once). Generation g was replaced when g + 1
was issued: with only the current generation's time, a token two generations behind could not be judged, and was
taken for a replay. Existing rows start with no earlier times (nothing is known of them): a token of theirs two or
more generations behind is judged as before, until the session's next rotations fill the times in.

Further behind than those three, a token is judged by the burst of rotations it belongs to (``burst_generation``:
where the current run of rotations, each within the window of the one before, began).

A password change rotates the session that asked on purpose, to cut off whoever else holds its token: the tokens
it retired get no grace (``grace_floor``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("previous_rotated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("earlier_rotated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("burst_generation", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(
            sa.Column("grace_floor", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("grace_floor")
        batch.drop_column("burst_generation")
        batch.drop_column("earlier_rotated_at")
        batch.drop_column("previous_rotated_at")
