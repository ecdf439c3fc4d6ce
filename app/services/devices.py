"""A readable device name for the sessions list, from the User-Agent ("Chrome on macOS")."""

from __future__ import annotations

from functools import lru_cache

from ua_parser import parse

_OS_NAMES = {"Mac OS X": "macOS", "Chrome OS": "ChromeOS"}
MAX_NAME = 128


@lru_cache(maxsize=2048)
def device_name(user_agent: str | None) -> str | None:
    if not user_agent:
        return None
    result = parse(user_agent[:512])
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
