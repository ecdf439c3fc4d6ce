"""sessions keep the device id a client names

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

Clients written for Strapi core's session mode send a ``deviceId`` of their own choosing with the login, and log
out "this device" by naming it again. The column holds it as sent (Strapi's column is 255 characters too). Existing
sessions have none, as Strapi's logins without one have none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("device_id", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("device_id")
