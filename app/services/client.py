"""What the transport knows about the caller."""

from __future__ import annotations

from dataclasses import dataclass

USER_AGENT_MAX = 512


@dataclass(frozen=True)
class Client:
    ip: str | None
    user_agent: str | None

    @property
    def short_user_agent(self) -> str | None:
        """The user agent as stored: cut to ``USER_AGENT_MAX`` characters."""
        return self.user_agent[:USER_AGENT_MAX] if self.user_agent else None
