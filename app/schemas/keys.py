"""The documents other services read: the public JWK Set and an introspection answer."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

INACTIVE: dict[str, Any] = {"active": False}
ACCESS_TOKEN: Final = "access_token"  # noqa: S105 - RFC 7662's name for the kind of token, not a secret


class JsonWebKey(BaseModel):
    """A public key (RFC 7517): `kty`, `kid`, `alg`, `use`, and `crv`/`x`/`y` (EC) or `n`/`e` (RSA)."""

    model_config = ConfigDict(extra="allow")

    kty: Literal["EC", "RSA"]
    kid: str
    alg: Literal["ES256", "RS256"]
    use: Literal["sig"]


class JsonWebKeySet(BaseModel):
    keys: list[JsonWebKey] = Field(
        description="The signing key first; the others still verify tokens they signed"
    )


class Introspection(BaseModel):
    """RFC 7662's answer. An inactive token gets exactly `{"active": false}`."""

    active: bool
    sub: str | None = Field(default=None, description="The user's id, as a string")
    sid: str | None = Field(default=None, description="The session's id")
    exp: int | None = Field(default=None, description="Expiry, Unix time in seconds")
    iat: int | None = Field(default=None, description="Issued at, Unix time in seconds")
    token_type: Literal["access_token"] | None = Field(
        default=None, description=f'Always "{ACCESS_TOKEN}" for an active token'
    )
    username: str | None = None
