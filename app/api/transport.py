"""How tokens and client facts travel in HTTP (bearer header, JSON body, cookie); no business decisions here."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from app.errors import ForbiddenError
from app.schemas.common import user_payload
from app.services import tokens
from app.services.client import Client
from app.services.sessions import RefreshToken
from app.services.tokens import TokenKeys
from app.settings import Settings, cookie_domain, url_origin
from app.store import UserRecord

COOKIE_PATH = "/api/auth"
# Strapi core's session mode: a client asks, request by request, for its refresh token in an HttpOnly cookie.
STRAPI_COOKIE_HEADER = "x-strapi-refresh-cookie"
STRAPI_COOKIE_VALUE = "httpOnly"  # compared exactly, as Strapi does
# RFC 6749 §5.1: a response carrying a token or account data must not be kept by any cache (Pragma for HTTP/1.0
# ones). Raw and constant: the hottest routes add them by extending a list, with no header parsing per request.
NO_STORE_HEADERS = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))


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


def bearer_matches(request: Request, expected: SecretStr) -> bool:
    """Whether ``Authorization: Bearer`` carries exactly ``expected`` (an operator's shared secret: METRICS_TOKEN,
    INTROSPECTION_TOKEN). Their SHA-256 digests are compared in constant time: how long a refusal takes says
    nothing about how much of a guess was right, nor about the secret's length."""
    presented = bearer_token(request)
    return presented is not None and hmac.compare_digest(
        hashlib.sha256(presented.encode()).digest(),
        hashlib.sha256(expected.get_secret_value().encode()).digest(),
    )


Networks = list[ipaddress.IPv4Network | ipaddress.IPv6Network]


def _trusted(address: str, networks: Networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


@lru_cache(maxsize=4096)
def _address(value: str) -> str | None:
    """A canonical IP address, or None for anything else (a server in front may have put anything here).
    Cached: parsing is a visible share of a refresh, and a client's address repeats."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_ip(request: Request, trusted_proxies: Networks) -> str | None:
    """The caller's address. ``X-Forwarded-For`` counts only when the direct peer is a trusted proxy; then the
    right-most address that is not itself a trusted proxy is the client (anything left of it is client-written)."""
    peer = _address(request.client.host) if request.client else None
    if peer is None or not trusted_proxies or not _trusted(peer, trusted_proxies):
        return peer
    hops = [hop.strip() for hop in ",".join(request.headers.getlist("x-forwarded-for")).split(",")]
    for hop in reversed([h for h in hops if h]):
        try:
            address = str(ipaddress.ip_address(hop))
        except ValueError:
            return peer  # a garbled chain: trust nothing in it
        if not _trusted(address, trusted_proxies):
            return address
    return peer


def client_of(request: Request, trusted_proxies: Networks) -> Client:
    return Client(
        ip=client_ip(request, trusted_proxies),
        user_agent=request.headers.get("user-agent"),
    )


@dataclass(frozen=True, slots=True)
class RefreshCookie:
    """A cookie the refresh token travels in: ours in cookie mode, or Strapi core's (``strapi_up_refresh``)."""

    name: str
    path: str


def refresh_cookies(settings: Settings) -> tuple[RefreshCookie, ...]:
    """The cookies a refresh token is read from, in order: ours in cookie mode, then Strapi core's."""
    cookies = []
    if settings.cookie_response:
        cookies.append(RefreshCookie(settings.cookie_name, COOKIE_PATH))
    if settings.strapi_refresh_cookie_header:
        cookies.append(RefreshCookie(settings.strapi_cookie_name, settings.strapi_cookie_path))
    return tuple(cookies)


def refresh_token_of(
    request: Request, cookies: tuple[RefreshCookie, ...], body_token: object
) -> tuple[str | None, bool]:
    """The presented refresh token and whether it came from one of ``cookies`` (cookies first, then the body).
    Strapi core reads its cookie whether or not the request carries ``x-strapi-refresh-cookie``."""
    for cookie in cookies:
        value = request.cookies.get(cookie.name)
        if value:
            return value, True
    if isinstance(body_token, str) and body_token:
        return body_token, False
    return None, False


def trusted_origins(settings: Settings) -> frozenset[str]:
    """The origins that may use the refresh cookie: the configured ones, and this service's own as PUBLIC_URL
    names it (its Swagger UI). Not the request's Host: behind some proxies the client chooses it."""
    origins = {o.lower() for o in settings.allowed_origins}
    if own := url_origin(settings.public_url):
        origins.add(own)
    return frozenset(origins)


def refuse_cross_site(request: Request, trusted: frozenset[str]) -> None:
    """A request riding on the refresh cookie must come from one of our own origins (``trusted_origins``).

    Browsers send ``Origin`` on cross-origin POSTs and ``Sec-Fetch-Site`` on all requests; clients that send
    neither are not browsers, so no other site can be acting through them.
    """
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/").lower() not in trusted:
        raise ForbiddenError(code="CROSS_SITE_REQUEST")
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise ForbiddenError(code="CROSS_SITE_REQUEST")


def private_json(payload: Any) -> JSONResponse:
    """A JSON response no cache may store: for every body with a token or account data in it."""
    response = JSONResponse(payload)
    response.raw_headers.extend(NO_STORE_HEADERS)
    return response


def token_response(
    settings: Settings,
    payload: dict[str, Any],
    refresh: RefreshToken | None,
    *,
    now: datetime,
    cookie_allowed: bool = True,
    cookie: RefreshCookie | None = None,
) -> JSONResponse:
    """The body, with the refresh token in it, or in ``cookie`` (default: ours, in cookie mode)."""
    if cookie is None and settings.cookie_response and cookie_allowed:
        cookie = RefreshCookie(settings.cookie_name, COOKIE_PATH)
    if refresh is not None and cookie is None:
        payload = {**payload, "refreshToken": refresh.value}
    response = private_json(payload)
    if refresh is not None and cookie is not None:
        set_refresh_cookie(response, settings, refresh, now=now, cookie=cookie)
    return response


def set_refresh_cookie(
    response: JSONResponse,
    settings: Settings,
    refresh: RefreshToken,
    *,
    now: datetime,
    cookie: RefreshCookie | None = None,
) -> None:
    cookie = cookie or RefreshCookie(settings.cookie_name, COOKIE_PATH)
    response.set_cookie(
        cookie.name,
        refresh.value,
        max_age=max(0, int((refresh.expires_at - now).total_seconds())),
        path=cookie.path,
        domain=cookie_domain(settings),
        secure=settings.cookie_is_secure,
        httponly=True,
        samesite=settings.cookie_samesite,
    )


def clear_refresh_cookie(
    response: JSONResponse, settings: Settings, cookie: RefreshCookie | None = None
) -> None:
    cookie = cookie or RefreshCookie(settings.cookie_name, COOKIE_PATH)
    response.delete_cookie(
        cookie.name,
        path=cookie.path,
        domain=cookie_domain(settings),
        secure=settings.cookie_is_secure,
        httponly=True,
        samesite=settings.cookie_samesite,
    )


class TokenTransport:
    """How tokens travel, chosen once from the settings: the refresh token in the JSON body, or in cookie mode
    (``COOKIE_RESPONSE``) in an HttpOnly cookie, read back from it first. A request with Strapi core's
    ``x-strapi-refresh-cookie: httpOnly`` gets it in Strapi's cookie instead, whatever the mode. Access tokens
    always go in the body."""

    def __init__(self, settings: Settings, keys: TokenKeys) -> None:
        self.settings = settings
        self.keys = keys
        self.cookie = settings.cookie_response
        self.ours = RefreshCookie(settings.cookie_name, COOKIE_PATH)
        self.strapi = RefreshCookie(settings.strapi_cookie_name, settings.strapi_cookie_path)
        self.strapi_header = settings.strapi_refresh_cookie_header
        self.read_from = refresh_cookies(settings)
        self.trusted = trusted_origins(settings)

    def wants_strapi_cookie(self, request: Request) -> bool:
        """Whether the client asks, as Strapi core's session mode does, for its refresh token in an HttpOnly
        cookie."""
        return (
            self.strapi_header and request.headers.get(STRAPI_COOKIE_HEADER) == STRAPI_COOKIE_VALUE
        )

    def cookie_for(self, request: Request | None) -> RefreshCookie | None:
        """The cookie this request's refresh token goes in; None: the body."""
        if request is not None and self.wants_strapi_cookie(request):
            return self.strapi
        return self.ours if self.cookie else None

    def signed_in(
        self,
        user: UserRecord,
        session_id: str,
        refresh: RefreshToken | None,
        *,
        now: datetime,
        request: Request | None = None,
    ) -> JSONResponse:
        """``{jwt, user}`` for a session, with its refresh token in the body or a cookie (``request``: its
        ``x-strapi-refresh-cookie`` counts)."""
        jwt = tokens.issue_access_token(self.keys, user_id=user.id, session_id=session_id, now=now)
        return self.tokens(
            {"jwt": jwt, "user": user_payload(user)}, refresh, now=now, request=request
        )

    def tokens(
        self,
        payload: dict[str, Any],
        refresh: RefreshToken | None,
        *,
        now: datetime,
        request: Request | None = None,
    ) -> JSONResponse:
        cookie = self.cookie_for(request)
        if cookie is None:  # the body, whatever the mode
            return token_response(self.settings, payload, refresh, now=now, cookie_allowed=False)
        return token_response(self.settings, payload, refresh, now=now, cookie=cookie)

    def presented(self, request: Request, body_token: object) -> tuple[str | None, bool]:
        """The refresh token a request presents, and whether it came from a cookie (which must then come from
        one of our origins: checked here)."""
        token, from_cookie = refresh_token_of(request, self.read_from, body_token)
        if from_cookie:
            refuse_cross_site(request, self.trusted)
        return token, from_cookie

    def logged_out(self, *, clear: bool = True, request: Request | None = None) -> JSONResponse:
        """``{"ok": true}``, clearing our cookie in cookie mode, and Strapi's when the request asks for it."""
        response = JSONResponse({"ok": True})
        if clear:
            if self.cookie:
                clear_refresh_cookie(response, self.settings, self.ours)
            if request is not None and self.wants_strapi_cookie(request):
                clear_refresh_cookie(response, self.settings, self.strapi)
        return response
