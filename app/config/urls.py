"""The URLs settings hold, normalised: the database driver, a site's origin, the refresh cookie's domain."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

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


DATABASE_FORMS = "sqlite:///path/to/file.db or postgresql://user:password@host:5432/database"
_DRIVERS = {"sqlite+aiosqlite": "sqlite", "postgresql+asyncpg": "postgresql"}


def check_database_url(url: str) -> str:
    """``url`` (normalised) if this service can run on it; otherwise ``ValueError`` saying why, in words that never
    repeat the URL (it may hold a password)."""
    scheme, separator, rest = url.partition("://")
    if not separator or not scheme:
        raise ValueError(f"not a database URL: use {DATABASE_FORMS}")
    if scheme not in _DRIVERS:
        raise ValueError(
            f"unsupported database {scheme!r}: refreshd runs on SQLite or PostgreSQL ({DATABASE_FORMS})"
        )
    if _DRIVERS[scheme] == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db: the path follows the third slash.
        path = unquote(rest.removeprefix("/").partition("?")[0])
        if not path or path == ":memory:":
            raise ValueError(
                "refreshd needs an SQLite database file, not an in-memory database "
                "(sqlite:///path/to/file.db)"
            )
        folder = Path(path).parent
        if not folder.is_dir():
            raise ValueError(
                f"the folder {str(folder)!r} of the SQLite file does not exist "
                "(SQLite creates the file, not its folder)"
            )
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        port = make_url(url).port
    except (ArgumentError, ValueError):
        raise ValueError(f"not a database URL: use {DATABASE_FORMS}") from None
    if port is not None and not 0 < port < 65536:
        raise ValueError("the port is not a number from 1 to 65535")
    return url


def check_redis_url(value: str) -> str:
    """A ``redis://`` or ``rediss://`` URL with a host; ``ValueError`` otherwise (never repeating it: it may hold
    a password)."""
    parsed = _split(value)
    if parsed is None or parsed.scheme.lower() not in ("redis", "rediss") or not parsed.hostname:
        raise ValueError("not a Redis URL: use redis://host:6379/0 (or rediss:// for TLS)")
    return value


def check_web_url(value: str, *, bare_host: bool = False) -> str:
    """An ``http(s)://host[:port][/path]`` URL (or, with ``bare_host``, a host name alone); ``ValueError``
    otherwise."""
    expected = "an http(s) URL" + (" or a host name" if bare_host else "")
    if any(character.isspace() for character in value):
        raise ValueError(f"{value!r} is not {expected} (it contains a space)")
    if "://" not in value and not bare_host:
        raise ValueError(f"{value!r} is not {expected}: it has no scheme (https://...)")
    parsed = _split(value if "://" in value else f"https://{value}")
    if parsed is None or parsed.scheme.lower() not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{value!r} is not {expected}")
    host = parsed.hostname.strip(".").lower()
    if host != "localhost" and not _is_ip(host) and not _HOST.match(host):
        raise ValueError(f"{value!r} is not {expected}: {host!r} is not a host name")
    return value


def _split(url: str) -> SplitResult | None:
    try:
        parsed = urlsplit(url)
        parsed.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        return None
    return parsed


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
