from app.models.session import Session
from app.models.user import User

__all__ = ["Session", "User"]
