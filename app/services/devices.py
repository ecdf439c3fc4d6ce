"""A readable device name for the sessions list, from the User-Agent ("Chrome on macOS")."""

from __future__ import annotations

from functools import cache, lru_cache

from ua_parser import BasicResolver, Parser, load_builtins

_OS_NAMES = {"Mac OS X": "macOS", "Chrome OS": "ChromeOS"}
MAX_NAME = 128


@cache
def _parser() -> Parser:
    """Built on first use. The pure-Python resolver: a parse costs about a millisecond, once per login (and
    cached), where the native one costs some 27 MB of resident memory per worker."""
    return Parser(BasicResolver(load_builtins()))


@lru_cache(maxsize=2048)
def device_name(user_agent: str | None) -> str | None:
    if not user_agent:
        return None
    result = _parser().parse(user_agent[:512])
    browser = result.user_agent.family if result.user_agent else None
    system = result.os.family if result.os else None
    if browser and browser != "Other":
        name = browser
        if system and system != "Other":
            name = f"{browser} on {_OS_NAMES.get(system, system)}"
        return name[:MAX_NAME]
    # Not a browser (curl, an SDK): its product token says enough.
    product = user_agent.split()[0].split("/")[0]
    return product[:MAX_NAME] or None
