"""Keys other services can trust: the ES256/RS256 key set, its JWK Set endpoint, and token introspection.

With ``JWT_ALGORITHM=ES256`` (or ``RS256``) access tokens are signed by the first private key of
``JWT_SIGNING_KEYS_FILE`` and anyone can verify them with ``/.well-known/jwks.json``; the key file itself is read
and checked when the service starts (``app.services.key_file``), not here, so that ``refreshd keys`` can create it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from app.durations import Duration


class SigningSettings(BaseSettings):
    """Mixed into ``app.settings.Settings``."""

    jwt_signing_keys_file: Path | None = Field(
        default=None,
        description="with JWT_ALGORITHM=ES256 or RS256: a JWK Set of private keys, each with a kid; the "
        "first signs, the others only verify (create it with `refreshd keys generate`; mode 0600)",
    )
    jwt_signing_keys_reload_interval: Duration = Field(
        default=timedelta(seconds=10),
        description="how often a running server looks for a changed JWT_SIGNING_KEYS_FILE (SIGHUP: at once)",
    )
    jwks_max_age: Duration = Field(
        default=timedelta(minutes=5),
        description="how long resource servers may cache /.well-known/jwks.json (Cache-Control max-age)",
    )
    introspection_token: SecretStr | None = Field(
        default=None,
        description="enables POST /api/auth/introspect (RFC 7662) for callers presenting "
        "`Authorization: Bearer <INTROSPECTION_TOKEN>`; at least 32 random bytes",
    )

    @property
    def asymmetric_tokens(self) -> bool:
        """Whether access tokens are signed by a key set rather than JWT_SECRET."""
        return getattr(self, "jwt_algorithm", "HS256") in ("ES256", "RS256")
