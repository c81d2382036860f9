"""Instants: the integer-microsecond clock of the core and its RFC 3339 text at the edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from events.instants import format_instant, from_datetime, from_rfc3339, parse_instant

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


_VALIDATED = TypeAdapter(AwareDatetime)


@st.composite
def rfc3339_texts(draw: st.DrawFn) -> str:
    """Timestamps in the shape upstream systems send: optional fraction, `Z` or an offset."""
    moment = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
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
def test_from_rfc3339_agrees_with_the_validated_datetime(text: str) -> None:
    assert from_rfc3339(text) == from_datetime(_VALIDATED.validate_python(text))


@given(st.text(alphabet="0123456789-:TZ.+ tz", min_size=18, max_size=34))
def test_from_rfc3339_never_disagrees_on_text_the_validator_accepts(text: str) -> None:
    try:
        expected = from_datetime(_VALIDATED.validate_python(text))
    except ValidationError:
        return  # rejected before the instant is read
    assert from_rfc3339(text) in (None, expected)


def test_from_rfc3339_leaves_other_shapes_to_the_datetime_path() -> None:
    assert from_rfc3339("2026-11-23T13:01:12Z") == parse_instant("2026-11-23T13:01:12Z")
    assert from_rfc3339("2026-11-23T13:01:12.5-05:00") == parse_instant("2026-11-23T18:01:12.5Z")
    for other in ["2026-11-23 13:01:12Z", "2026-11-23T13:01:12", "2026-11-23T13:01:12.1234567Z",
                  "2026-11-23T13:01:12+0100", "2026-11-23t13:01:12z", "1700000000"]:  # fmt: skip
        assert from_rfc3339(other) is None
