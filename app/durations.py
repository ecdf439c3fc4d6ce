"""Durations in the refresh-token plugin's form: ``'2h'``, ``'30d'``, ``'15m'``, ``'600s'`` or plain seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Ten years: longer than any token or session should live, and far inside what timedelta can hold.
MAX_SECONDS = 10 * 366 * 86400
_PATTERN = re.compile(r"\s*(\d{1,9})\s*([smhdw]?)\s*", re.IGNORECASE)


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse a positive duration; raise ``ValueError`` with a readable message otherwise."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(
            "a duration must be a number of seconds or a string like '15m', '2h', '30d'"
        )
    elif isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")) or value != int(value):
            raise ValueError("a duration must be a whole number of seconds")
        seconds = float(value)
    else:
        match = _PATTERN.fullmatch(value)
        if match is None:
            raise ValueError(
                f"invalid duration {value!r}: use seconds or a number with s, m, h, d or w "
                "(e.g. '600s', '15m', '2h', '30d')"
            )
        seconds = float(int(match.group(1)) * _UNITS[(match.group(2) or "s").lower()])
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    if seconds > MAX_SECONDS or seconds != int(seconds):
        raise ValueError("a duration must be a whole number of seconds, at most ten years")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact plugin-style spelling of a duration (the inverse of ``parse_duration``)."""
    seconds = int(value.total_seconds())
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"  # pragma: no cover - 's' always divides


# A setting's duration: parsed from the plugin's spelling, written back in it.
Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
