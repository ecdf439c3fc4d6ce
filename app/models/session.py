from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class Session(Base):
    """One login: the unit that refresh tokens, logout and the sessions list act on.

    Refresh tokens are not stored. A refresh token names its session and generation and is signed with
    ``REFRESH_JWT_SECRET``; this row holds only the current generation and its times, so nothing here can
    be turned into a working token without the secret, and the table does not grow per rotation.
    """

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # Current refresh-token generation; 0 while no refresh token was issued.
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # When the current generation was issued, and the two before it: generation g was replaced when g + 1 was
    # issued, and a token replaced less than REFRESH_TOKEN_REUSE_GRACE ago still refreshes
    # (``app.services.reuse.replaced_within_grace``). Each rotation shifts them along, in its one UPDATE.
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    previous_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    earlier_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The first generation of the current burst: rotations each less than REFRESH_TOKEN_REUSE_GRACE after the one
    # before. A generation older than the burst was replaced at least a window before the burst began.
    burst_generation: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Generations below this one never get the grace: a password change retired them on purpose.
    grace_floor: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Idle expiry of the current refresh token; null when the session has none.
    refresh_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Absolute end of the session: rotation never moves it.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_active_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    device_name: Mapped[str | None] = mapped_column(String(128))
    # The client's own name for its device (Strapi core's ``deviceId``): logout can end every session of one device.
    device_id: Mapped[str | None] = mapped_column(String(255))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    ip: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_sessions_expires_at", "expires_at"),
        Index("ix_sessions_revoked_at", "revoked_at"),
        # The purge's idle-expired pass (app.services.purge).
        Index("ix_sessions_refresh_expires_at", "refresh_expires_at"),
    )
