from app.models.account_token import AccountToken
from app.models.session import Session
from app.models.user import User

__all__ = ["AccountToken", "Session", "User"]
