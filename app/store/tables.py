"""The tables, as SQLAlchemy Core sees them (the models declare them; Alembic creates them), and the parameters
every statement of the store shares."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table, bindparam

from app.db import UTCDateTime
from app.models import AccountToken, AuditEvent, Session, User

SESSIONS: Table = Session.__table__  # type: ignore[assignment]  # declared models map to Tables
USERS: Table = User.__table__  # type: ignore[assignment]
AUDIT: Table = AuditEvent.__table__  # type: ignore[assignment]
CODES: Table = AccountToken.__table__  # type: ignore[assignment]

# The request's time, and the start of the window of its reuse grace (now - REFRESH_TOKEN_REUSE_GRACE).
NOW = bindparam("now_", type_=UTCDateTime())
GRACE_START = bindparam("grace_start", type_=UTCDateTime())
# now - the access token's lifetime: an idle-expired session's last access token may still be live until then.
ACCESS_CUTOFF = bindparam("access_cutoff", type_=UTCDateTime())

# Alembic's own table, as far as readiness reads it (not part of the models' metadata: Alembic owns it).
ALEMBIC_VERSION = Table(
    "alembic_version", MetaData(), Column("version_num", String(32), primary_key=True)
)
