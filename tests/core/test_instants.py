"""Instants: the integer-microsecond clock of the core and its RFC 3339 text at the edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import AwareDatetime, TypeAdapter

from events.instants import (
    MAX_INSTANT,
    MIN_INSTANT,
    format_instant,
    from_datetime,
    parse_instant,
    parse_rfc3339,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST = from_datetime(datetime(1, 1, 1, tzinfo=UTC))
_LAST = from_datetime(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
instants = st.integers(min_value=_FIRST, max_value=_LAST)


def _reference_format(instant: int) -> str:
    """The obvious way, through datetime: what integrators' parsers agree with."""
    moment = _EPOCH + timedelta(microseconds=instant)
    return moment.replace(tzinfo=None).isoformat() + "Z"


@given(instants)
def test_format_instant_matches_datetime_isoformat(instant: int) -> None:
    assert format_instant(instant) == _reference_format(instant)


@given(st.integers(min_value=MIN_INSTANT, max_value=MAX_INSTANT))
def test_parse_reads_back_what_format_writes(instant: int) -> None:
    assert parse_instant(format_instant(instant)) == instant


def test_format_instant_by_hand() -> None:
    assert format_instant(0) == "1970-01-01T00:00:00Z"
    assert format_instant(-1) == "1969-12-31T23:59:59.999999Z"
    assert format_instant(951_782_400_000_000) == "2000-02-29T00:00:00Z"  # leap day, 400-year rule
    assert format_instant(1_795_611_672_000_123) == "2026-11-25T13:01:12.000123Z"


@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))])))
def test_from_datetime_counts_microseconds_since_the_epoch(moment: datetime) -> None:
    assert from_datetime(moment) == (moment - _EPOCH) // timedelta(microseconds=1)


_VALIDATED = TypeAdapter(AwareDatetime)


@st.composite
def rfc3339_texts(draw: st.DrawFn) -> str:
    """Timestamps in the shape upstream systems send: optional fraction, `Z` or an offset."""
    moment = draw(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(8999, 12, 30)))
    text = moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0")
    places = draw(st.integers(0, 6))
    if places:
        text += "." + f"{moment.microsecond:06d}"[:places]
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    if minutes == 0 and draw(st.booleans()):
        return text + "Z"
    sign = "-" if minutes < 0 else "+"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@given(rfc3339_texts())
def test_parse_rfc3339_agrees_with_the_validated_datetime(text: str) -> None:
    assert parse_rfc3339(text) == from_datetime(_VALIDATED.validate_python(text))


@given(st.text(alphabet="0123456789-:TZ.+ tz", min_size=18, max_size=34))
def test_parse_rfc3339_never_disagrees_with_the_datetime_parser(text: str) -> None:
    """Whatever the strict parser accepts, a general parser reads as the same instant."""
    try:
        instant = parse_rfc3339(text)
    except ValueError:
        return
    assert ":60" not in text  # generated text never has a leap second
    assert instant == from_datetime(_VALIDATED.validate_python(text))


# Issue #10 section 2 and 6: inputs accepted before (or crashing the core), each rejected with a
# reason; the leap second is accepted.
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("9999-12-31T23:59:59Z", "outside the supported range"),
        ("0001-01-01T00:00:00+05:00", "outside the supported range"),
        ("1969-12-31T23:59:59.999999Z", "outside the supported range"),
        ("9000-01-01T00:00:00Z", "outside the supported range"),
        ("1767225600", "not an RFC 3339 date-time"),
        ("2026-01-01 00:00:00Z", "T between date and time"),
        ("2026-01-01T00:00:00", "not an RFC 3339 date-time"),
        ("2026-01-01T00:00:00+0100", "UTC offset"),
        ("2026-02-29T00:00:00Z", "not a leap year"),
        ("2026-04-31T00:00:00Z", "no such date"),
        ("2026-01-01T24:00:00Z", "no such time"),
        ("2026-01-01T00:00:00+24:00", "invalid UTC offset"),
        ("2026-01-01T00:00:00.Z", "empty fraction"),
        ("\u0662026-01-01T00:00:00Z", "not an RFC 3339 date-time"),
        ("2026-06-30T12:59:60Z", "leap second"),
    ],
)
def test_parse_rfc3339_rejects_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        parse_rfc3339(text)
    assert text not in str(caught.value)  # the reason never quotes the input


def test_parse_rfc3339_edges_and_leap_second() -> None:
    assert parse_rfc3339("1970-01-01T00:00:00Z") == MIN_INSTANT
    assert parse_rfc3339("8999-12-31T23:59:59.999999Z") == MAX_INSTANT
    assert format_instant(MAX_INSTANT) == "8999-12-31T23:59:59.999999Z"
    # RFC 3339 section 5.7: a leap second; read as the last microsecond of its UTC day.
    # Issue #27 item 11: `t` and `z` in lower case are RFC 3339 (section 5.6, note), as JSON
    # Schema's date-time format takes them.
    assert parse_rfc3339("2026-01-01t00:00:00z") == parse_rfc3339("2026-01-01T00:00:00Z")
    leap = parse_rfc3339("2016-12-31T23:59:60Z")
    assert leap == parse_rfc3339("2016-12-31T23:59:59.999999Z")
    assert leap < parse_rfc3339("2017-01-01T00:00:00Z")
    assert parse_rfc3339("2017-01-01T00:59:60+01:00") == leap
    assert parse_rfc3339("2016-12-31T23:59:60.5Z") == leap
    # RFC 3339 allows any number of fraction digits: beyond microseconds they are truncated.
    assert parse_rfc3339("2026-11-23T13:01:12.1234567Z") == parse_instant(
        "2026-11-23T13:01:12.123456Z"
    )
    assert parse_rfc3339("2026-11-23T13:01:12.5-05:00") == parse_instant("2026-11-23T18:01:12.5Z")
