"""The URLs settings hold, normalised: the database driver, a site's origin, the refresh cookie's domain."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_HOST = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def normalize_database_url(url: str) -> str:
    """Accept the common spellings and pick the async driver this service runs on."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
    return url


def url_origin(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL; a bare host is taken as https."""
    parsed = urlsplit(url if "://" in url else f"https://{url}")
    if not parsed.hostname:
        return None
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme.lower()}://{parsed.hostname.lower()}{port}"


def domain_of(raw: str | None) -> str | None:
    """The host of ``raw`` (a URL or a bare host) as a cookie's Domain attribute.

    None for no value, localhost and IP addresses, where browsers refuse a Domain attribute; ValueError for
    anything that is not a host name.
    """
    if not raw:
        return None
    host = urlsplit(raw if "://" in raw else f"//{raw}").hostname or ""
    host = host.strip(".").lower()
    if host == "localhost" or _is_ip(host):
        return None
    if not _HOST.match(host):
        raise ValueError(f"cannot derive a cookie domain from {raw!r}")
    return host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
