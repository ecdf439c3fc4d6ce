"""Secrets out of logs: ``redact`` for text, ``RedactSecrets`` for whole log records (message and extras)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final

REDACTED: Final = "[REDACTED]"

# Key names whose values are secrets: anything naming a password, secret or token, and the account codes.
_SENSITIVE_KEY: Final = (
    r"(?:[A-Za-z0-9_-]*(?:password|passwd|secret|token|jwt)[A-Za-z0-9_-]*|code|confirmation)"
)
_SENSITIVE_KEY_NAME: Final = re.compile(_SENSITIVE_KEY, re.IGNORECASE)
_QUOTED_VALUE: Final = r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
# key=value, key="value" (also query strings: ?code=...&...).
_KEY_EQUALS: Final = re.compile(
    rf"(?<![A-Za-z0-9_-])(?P<key>{_SENSITIVE_KEY})(?P<sep>\s*=\s*)"
    rf"(?P<value>{_QUOTED_VALUE}|[^\s&#,;\"'<>()\[\]{{}}=][^\s&#,;\"'<>()\[\]{{}}]*)",
    re.IGNORECASE,
)
# "key": "value", 'key': 'value', "key": 123 (JSON and Python reprs); true, false, null and None are no secrets.
_QUOTED_KEY: Final = re.compile(
    rf"(?P<key>(?P<q>[\"']){_SENSITIVE_KEY}(?P=q))(?P<sep>\s*:\s*)"
    rf"(?P<value>{_QUOTED_VALUE}|(?!(?:true|false|null|True|False|None)\b)[^\s,\]}})]+)",
    re.IGNORECASE,
)
_BEARER: Final = re.compile(r"\b(?P<scheme>Bearer)\s+[A-Za-z0-9._~+/-]+=*", re.IGNORECASE)
_JWT: Final = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def _redact_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match['key']}{match['sep']}{quote}{REDACTED}{quote}"


def redact(text: str) -> str:
    """``text`` with secrets replaced by ``[REDACTED]``: values of secret-named keys, bearer credentials, JWTs."""
    text = _KEY_EQUALS.sub(_redact_value, text)
    text = _QUOTED_KEY.sub(_redact_value, text)
    text = _BEARER.sub(lambda m: f"{m['scheme']} {REDACTED}", text)
    return _JWT.sub(REDACTED, text)


def _scrub(value: Any, key: object = None, depth: int = 0) -> Any:
    """A copy of ``value`` with its strings redacted and the values of secret-named keys replaced."""
    if (
        isinstance(key, str)
        and _SENSITIVE_KEY_NAME.fullmatch(key)
        and isinstance(value, str | bytes)  # not flags or counts, such as refresh_token=True
    ):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if depth >= 6:
        return value
    if isinstance(value, Mapping):
        return {k: _scrub(v, k, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v, None, depth + 1) for v in value)
    return value


_RECORD_ATTRIBUTES: Final = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}


class RedactSecrets(logging.Filter):
    """Scrubs secrets from a record: its message (after the arguments are merged in) and its extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "redaction_exempt", False):
            return True  # the development mailer's link, on purpose (never used in production)
        if isinstance(record.msg, Mapping) and not record.args:
            record.msg = _scrub(record.msg)  # a dict message (JSON logs show it as fields)
        else:
            try:
                message = record.getMessage()
            except Exception:
                # A broken format string: keep what there is, scrubbed, instead of letting the handler's
                # error report print the raw arguments.
                message = f"{record.msg} {record.args!r}"
            record.msg, record.args = redact(message), None
        for key, value in list(record.__dict__.items()):
            if key not in _RECORD_ATTRIBUTES:
                record.__dict__[key] = _scrub(value, key)
        return True
