"""``parse_duration`` and ``format_duration``: the refresh-token plugin's duration spellings."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.durations import MAX_SECONDS, format_duration, parse_duration

MINUTE = 60
HOUR = 3600
DAY = 86400
WEEK = 7 * DAY


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2h", 2 * HOUR),
        ("30d", 30 * DAY),
        ("15m", 15 * MINUTE),
        ("600s", 600),
        ("600", 600),
        ("1w", WEEK),
        ("1s", 1),
        ("1", 1),
        (str(MAX_SECONDS), MAX_SECONDS),  # ten years: the longest duration accepted
        ("3660d", 3660 * DAY),
        ("000000015m", 15 * MINUTE),  # leading zeros are just digits
    ],
)
def test_parses_plugin_spellings(value: str, seconds: int) -> None:
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (" 2h", 2 * HOUR),
        ("2h ", 2 * HOUR),
        ("  30d  ", 30 * DAY),
        ("\t15m\n", 15 * MINUTE),
        ("15 m", 15 * MINUTE),
        (" 600 ", 600),
        ("2H", 2 * HOUR),
        ("30D", 30 * DAY),
        ("15M", 15 * MINUTE),
        ("600S", 600),
        ("1W", WEEK),
    ],
)
def test_whitespace_and_case_variants(value: str, seconds: int) -> None:
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize("value", [1, 15, 600, 86400, MAX_SECONDS])
def test_integers_are_seconds(value: int) -> None:
    assert parse_duration(value) == timedelta(seconds=value)


def test_whole_float_seconds() -> None:
    assert parse_duration(90.0) == timedelta(seconds=90)


@pytest.mark.parametrize(
    "value",
    [0.5, 1.5, 899.999, -0.5, float("nan"), float("inf"), float("-inf"), timedelta(seconds=1.5)],
    ids=[
        "half",
        "one-and-a-half",
        "almost-15m",
        "negative-half",
        "nan",
        "inf",
        "-inf",
        "timedelta",
    ],
)
def test_rejects_fractions_of_a_second(value: float | timedelta) -> None:
    """Token timestamps are whole seconds, and ``format_duration`` could not spell a fraction."""
    with pytest.raises(ValueError, match="whole number of seconds"):
        parse_duration(value)


@pytest.mark.parametrize("value", [timedelta(minutes=15), timedelta(days=30), timedelta(seconds=1)])
def test_timedelta_passes_through(value: timedelta) -> None:
    assert parse_duration(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "s",
        "h",
        "-5",
        "-5m",
        "+5m",
        "1y",
        "1ms",
        "1.5h",
        "1,5h",
        "2hh",
        "2h30m",
        "2 h m",
        "h2",
        "1e3",
        "0x10",
        "1234567890",  # ten digits: overly long
        "99999999999999999999d",
        "1_000",
    ],
)
def test_rejects_malformed_strings(value: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    "value",
    [
        "0",
        "0s",
        "0m",
        "0h",
        "0d",
        "0w",
        "000",
        0,
        -5,
        0.0,
        timedelta(0),
        timedelta(seconds=-1),
    ],
)
def test_rejects_zero_and_negative(value: str | int | float | timedelta) -> None:
    with pytest.raises(ValueError, match="greater than zero"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, False])
def test_rejects_booleans(value: bool) -> None:
    with pytest.raises(ValueError, match="duration must be a number"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "spelling"),
    [
        (1, "1s"),
        (59, "59s"),
        (61, "61s"),
        (600, "10m"),
        (15 * MINUTE, "15m"),
        (90 * MINUTE, "90m"),
        (HOUR, "1h"),
        (2 * HOUR, "2h"),
        (25 * HOUR, "25h"),
        (DAY, "1d"),
        (30 * DAY, "30d"),
        (90 * DAY, "90d"),
        (WEEK, "1w"),
        (14 * DAY, "2w"),
        (DAY + 1, "86401s"),
        (WEEK + HOUR, "169h"),
    ],
)
def test_format_duration_table(seconds: int, spelling: str) -> None:
    value = timedelta(seconds=seconds)
    assert format_duration(value) == spelling
    assert parse_duration(spelling) == value


@pytest.mark.parametrize(
    ("spelling", "shortest"),
    [("600s", "10m"), ("600", "10m"), ("120m", "2h"), ("48h", "2d"), ("7d", "1w"), (" 2H ", "2h")],
)
def test_format_gives_the_shortest_spelling(spelling: str, shortest: str) -> None:
    assert format_duration(parse_duration(spelling)) == shortest


def test_format_round_trips_a_dense_range_of_whole_seconds() -> None:
    samples = [
        *range(1, 10_000),
        *(n * MINUTE for n in range(1, 2_000)),
        *(n * HOUR for n in range(1, 2_000)),
        *(n * DAY for n in range(1, 2_000)),
        *(n * WEEK + k for n in range(1, 200) for k in (-1, 0, 1)),
        MAX_SECONDS,
    ]
    for seconds in samples:
        value = timedelta(seconds=seconds)
        spelling = format_duration(value)
        assert parse_duration(spelling) == value, (seconds, spelling)
        assert len(spelling) <= len(f"{seconds}s"), (seconds, spelling)


@pytest.mark.parametrize(
    "value",
    [
        MAX_SECONDS + 1,
        str(MAX_SECONDS + 1),
        "3661d",
        "523w",
        "999999999w",
        "999999999d",
        "999999999",
        10**10,
        10**20,
        timedelta(days=3661),
        timedelta.max,
    ],
)
def test_rejects_more_than_ten_years(value: str | int | timedelta) -> None:
    with pytest.raises(ValueError, match="at most ten years"):
        parse_duration(value)


def test_ten_years_is_leap_day_proof() -> None:
    assert MAX_SECONDS == 10 * 366 * DAY
    assert parse_duration("3660d") == timedelta(days=3660)
    assert parse_duration("522w") == timedelta(weeks=522)
