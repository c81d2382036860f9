"""Instants: the integer-microsecond clock of the core and its RFC 3339 text at the edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from events.instants import format_instant, from_datetime, parse_instant

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


@given(instants)
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
