from app.models.account_token import AccountToken
from app.models.audit import AuditEvent
from app.models.session import Session
from app.models.user import User

__all__ = ["AccountToken", "AuditEvent", "Session", "User"]
