"""How tokens and client facts travel in HTTP; no business decisions here."""

from __future__ import annotations

from fastapi import Request

from app.services.sessions import Client


def bearer_token(request: Request) -> str | None:
    """Strapi's reading of ``Authorization``: exactly two parts, the first ``bearer`` in any case.

    Anything else counts as no token at all.
    """
    header = request.headers.get("authorization")
    if not header:
        return None
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


def client_of(request: Request) -> Client:
    return Client(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )
