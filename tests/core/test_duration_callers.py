"""Issue #21 item 1: one duration grammar, and each caller still accepts exactly what it did.

Written against the code before the move (policy durations, `--max-delay`, the query window
and time parameters, `sample --start` each had a grammar of their own): the policy language
takes decimals, compounds and business days (`1.5h`, `1h30m`, `1bd`); a bound takes seconds
or a policy duration; a query window takes one whole number and a unit, weeks included
(`1w`), ASCII digits only. Values are microseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from base.durations import parse_delay, parse_duration
from events.cli import _start
from events.instants import DAY, HOUR, MINUTE, SECOND
from events.when import check_when, parse_window
from projections.queries import BadParameter, resolve_when

BUSINESS_DAY = 10 * HOUR + 30 * MINUTE
"""An 08:00-18:30 calendar's business day."""
WEEK = 7 * DAY
POLICY_HINT = (
    "use a number and a unit: s, m, h, d (elapsed days) or bd (business days), e.g. '30m', "
    "'4h', '1bd', '1h30m'"
)


def refusal(call: Callable[[], object]) -> str:
    with pytest.raises(ValueError) as caught:
        call()
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "micros"),
    [("30m", 30 * MINUTE), ("4h", 4 * HOUR), ("2d", 2 * DAY), ("1bd", BUSINESS_DAY),
     ("1h30m", 90 * MINUTE), ("1.5h", 90 * MINUTE), ("1 h 30 m", 90 * MINUTE), ("2D", 2 * DAY),
     ("0.5bd", BUSINESS_DAY // 2), ("0.000001s", 1), ("1d1d", 2 * DAY),
     ("\u0663h", 3 * HOUR), ("1s" * 32, 32 * SECOND), ("36525d", 36_525 * DAY)],
)  # fmt: skip
def test_policy_durations_accept(text: str, micros: int) -> None:
    assert parse_duration(text, BUSINESS_DAY) == micros


@pytest.mark.parametrize(
    ("text", "business", "message"),
    [("", False, "empty duration"),
     ("1w", False, f"invalid duration '1w': {POLICY_HINT}"),
     ("-1h", False, f"invalid duration '-1h': {POLICY_HINT}"),
     (".5h", False, f"invalid duration '.5h': {POLICY_HINT}"),
     ("1.h", False, f"invalid duration '1.h': {POLICY_HINT}"),
     ("h", False, f"invalid duration 'h': {POLICY_HINT}"),
     ("1", False, f"invalid duration '1': {POLICY_HINT}"),
     ("1h\t", False, f"invalid duration '1h\\t': {POLICY_HINT}"),
     ("1s" * 33, False, f"invalid duration {('1s' * 33)[:64]!r}: {POLICY_HINT}"),
     ("0m", False, "duration '0m' must be positive (at least one microsecond)"),
     ("0.0000001s", False, "duration '0.0000001s' must be positive (at least one microsecond)"),
     ("36526d", False, "duration '36526d' is longer than 100 years (the most supported)"),
     ("26101bd", True, "duration '26101bd' is longer than 26100 business days (the most "
      "supported, 100 years of five-day weeks)")],
)  # fmt: skip
def test_policy_durations_refuse(text: str, business: bool, message: str) -> None:
    assert refusal(lambda: parse_duration(text, BUSINESS_DAY, business)) == message
    assert parse_duration("26100bd", BUSINESS_DAY, business=True) == 26_100 * BUSINESS_DAY


@pytest.mark.parametrize(
    ("text", "micros"),
    [("900", 900 * SECOND), ("0", 0), ("1.5", 1_500_000), ("1e3", 1000 * SECOND),
     ("15m", 15 * MINUTE), ("15 m", 15 * MINUTE), ("0.5s", 500_000), ("2h", 2 * HOUR),
     ("0s", 0), ("0m", 0), (" 0s ", 0), ("1bd", DAY)],
)  # fmt: skip
def test_bounds_accept_seconds_or_a_policy_duration(text: str, micros: int) -> None:
    """`--max-delay` / `--allowed-lateness` (engine settings, `escalator replay`)."""
    assert parse_delay(text) == micros


@pytest.mark.parametrize(
    ("text", "message"),
    [("-1", "'-1' must be a number of seconds from 0, or a duration"),
     ("1e12", "'1e12' must be a number of seconds from 0, or a duration"),
     ("inf", "'inf' must be a number of seconds from 0, or a duration"),
     ("nan", "'nan' must be a number of seconds from 0, or a duration"),
     ("0h", "duration '0h' must be positive (at least one microsecond)"),
     ("1w", f"invalid duration '1w': {POLICY_HINT}"),
     ("abc", f"invalid duration 'abc': {POLICY_HINT}")],
)  # fmt: skip
def test_bounds_refuse(text: str, message: str) -> None:
    assert refusal(lambda: parse_delay(text)) == message


@pytest.mark.parametrize(
    ("text", "micros"),
    [("90s", 90 * SECOND), ("15m", 15 * MINUTE), ("1h", HOUR), ("2d", 2 * DAY), ("1w", WEEK),
     (" 2D ", 2 * DAY), ("01h", HOUR), ("366800w", 366_800 * WEEK)],
)  # fmt: skip
def test_query_windows_accept_whole_units_weeks_included(text: str, micros: int) -> None:
    """`breaching_within` (API and `escalator query`), and `since`/`sample --start` durations."""
    assert parse_window(text) == micros
    assert check_when(text) == text.strip()


@pytest.mark.parametrize(
    "text", ["0h", "1.5h", "1bd", "1h30m", "1 h", "\u0663h", "", "h", "-1h"]
)  # fmt: skip
def test_query_windows_refuse_decimals_compounds_and_business_days(text: str) -> None:
    expected = f"expected a duration such as 30m, 1h or 2d, got {text!a}"
    assert refusal(lambda: parse_window(text)) == expected
    if text != "0h":  # not even duration-shaped: the time parameter says what it takes
        expected = f"expected an RFC 3339 time with offset or a duration such as 24h, got {text!a}"
    assert refusal(lambda: check_when(text)) == expected
    longest = "'1000000w' is longer than the supported time range"
    assert refusal(lambda: parse_window("1000000w")) == longest


def test_time_parameters_are_an_instant_or_a_duration_before_now() -> None:
    now = 1_800_000_000_000_000
    assert resolve_when("since", "30d", now) == now - 30 * DAY
    assert resolve_when("since", " 1w ", now) == now - WEEK
    assert resolve_when("from", "2026-01-05T09:00:00+01:00", now) == 1_767_600_000_000_000
    with pytest.raises(BadParameter) as caught:
        resolve_when("since", "1w", 10)
    assert caught.value.parameter == "since"
    assert caught.value.message == (
        "'1w' is outside the supported range, 1970-01-01T00:00:00Z to 8999-12-31T23:59:59.999999Z"
    )
    for text in ["24", "yesterday", "now"]:
        assert refusal(lambda t=text: check_when(t)).startswith("expected an RFC 3339 time")


@pytest.mark.parametrize(
    ("text", "back"), [("7d", 7 * DAY), ("1w", WEEK), ("90s", 90 * SECOND), ("now", 0), ("NOW ", 0)]
)  # fmt: skip
def test_sample_start_takes_a_window_before_now(text: str, back: int) -> None:
    before = datetime.now(UTC).timestamp()
    start = _start(text).timestamp()
    after = datetime.now(UTC).timestamp()
    assert before - back / SECOND - 1 <= start <= after - back / SECOND + 1


@pytest.mark.parametrize("text", ["1bd", "1.5h", "30", "1h30m"])
def test_sample_start_refuses_what_a_window_refuses(text: str) -> None:
    expected = f"expected an RFC 3339 time with offset or a duration such as 24h, got {text!r}"
    assert refusal(lambda: _start(text)) == expected
    assert _start("2026-01-05T09:00:00+01:00") == datetime(2026, 1, 5, 8, tzinfo=UTC)
