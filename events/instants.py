"""Instants as integer microseconds since the Unix epoch (UTC).

The SLA core does all its arithmetic on plain ints: exact (no float drift), cheap to compare,
compact to store per ticket. Conversion to and from RFC 3339 text happens only at the edges.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from base.durations import DAY as DAY
from base.durations import HOUR as HOUR
from base.durations import MINUTE as MINUTE
from base.durations import SECOND as SECOND
from base.durations import Micros as Micros

# The units live on the ground floor (base.durations, which the duration grammar shares) and
# are part of this module's vocabulary too: `from events.instants import DAY, Micros`.

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)
_EPOCH_ORDINAL: Final = _EPOCH.toordinal()


def from_datetime(moment: datetime) -> Micros:
    """Microseconds since the epoch of an aware datetime."""
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("datetime must carry a UTC offset")
    # From the wall-clock fields: `moment - _EPOCH` would ask the tzinfo for the offset again
    # (twice the cost with pydantic's TzInfo).
    seconds = (moment.toordinal() - _EPOCH_ORDINAL) * 86_400
    seconds += moment.hour * 3_600 + moment.minute * 60 + moment.second
    return seconds * SECOND + moment.microsecond - offset // _ONE_MICROSECOND


MIN_INSTANT: Final[Micros] = 0
"""The earliest supported instant: 1970-01-01T00:00:00Z."""
MAX_INSTANT: Final[Micros] = 221_845_392_000 * SECOND - 1
"""The latest supported instant: 8999-12-31T23:59:59.999999Z.

Every deadline is an event time plus policy durations, and the core turns deadlines into
local dates (datetime, zoneinfo), which end at 9999-12-31. Policy durations are capped at 100
years (`base.durations`), so any event in range keeps every deadline representable with
a margin of about 900 years.
"""
SUPPORTED_RANGE: Final = "1970-01-01T00:00:00Z to 8999-12-31T23:59:59.999999Z"

_DAYS_IN_MONTH: Final[list[int]] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def parse_rfc3339(text: str) -> Micros:
    """The instant of a strict RFC 3339 `date-time`; ValueError saying what is wrong otherwise.

    Accepted: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`, `T` and `Z` in either case
    (RFC 3339 section 5.6 and its note, as JSON Schema's `date-time` format takes them); a
    space for `T`, which the note lets applications choose, is refused (JSON Schema's format
    refuses it too). Fractions beyond microseconds are truncated. A leap second
    (`:60`, RFC 3339 section 5.7) is accepted when it falls at 23:59:60 UTC and read as
    23:59:59.999999 of that day, so it sorts before the next day (the table of actual leap
    seconds is not checked). The instant must lie in `SUPPORTED_RANGE`. Messages never quote
    the text (it may be anything), only which part is wrong.
    """
    data = text.encode()
    size = len(data)
    if size < 20 or size > 64:
        raise ValueError("not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SSZ)")
    if data[4] != 45 or data[7] != 45 or data[13] != 58 or data[16] != 58:
        raise ValueError("not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SSZ)")
    if data[10] != 84 and data[10] != 116:  # 'T' or 't'
        raise ValueError(
            "not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SSZ, T between date and time)"
        )
    year = _number(data, 0, 4)
    month = _number(data, 5, 2)
    day = _number(data, 8, 2)
    hour = _number(data, 11, 2)
    minute = _number(data, 14, 2)
    second = _number(data, 17, 2)
    if year < 0 or month < 0 or day < 0 or hour < 0 or minute < 0 or second < 0:
        raise ValueError("not an RFC 3339 date-time (ASCII digits only)")
    if month < 1 or month > 12 or day < 1 or day > _DAYS_IN_MONTH[month]:
        raise ValueError("no such date")
    if month == 2 and day == 29 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        raise ValueError("no such date (not a leap year)")
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError("no such time of day")
    index = 19
    micros = 0
    if data[index] == 46:  # '.'
        index += 1
        start = index
        while index < size and 48 <= data[index] <= 57:
            index += 1
        places = index - start
        if places == 0:
            raise ValueError("not an RFC 3339 date-time (empty fraction)")
        micros = _number(data, start, min(places, 6))
        for _ in range(6 - places):
            micros *= 10
    if index == size - 1 and (data[index] == 90 or data[index] == 122):  # 'Z' or 'z'
        offset = 0
    elif index == size - 6 and (data[index] == 43 or data[index] == 45) and data[index + 3] == 58:
        offset_hours = _number(data, index + 1, 2)
        offset_minutes = _number(data, index + 4, 2)
        if offset_hours < 0 or offset_minutes < 0 or offset_hours > 23 or offset_minutes > 59:
            raise ValueError("invalid UTC offset")
        offset = (offset_hours * 60 + offset_minutes) * MINUTE
        if data[index] == 45:
            offset = -offset
    else:
        raise ValueError("not an RFC 3339 date-time (needs a UTC offset: Z or +HH:MM)")
    seconds = _days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second
    instant = seconds * SECOND + micros - offset
    if second == 60:
        instant -= SECOND
        if instant // SECOND % 86_400 != 86_399:
            raise ValueError("a leap second (:60) is only accepted at 23:59:60 UTC")
        instant = instant - instant % SECOND + SECOND - 1
    if instant < MIN_INSTANT or instant > MAX_INSTANT:
        raise ValueError(f"outside the supported range {SUPPORTED_RANGE}")
    return instant


def _number(data: bytes, start: int, count: int) -> int:
    """The decimal number in data[start:start+count]; -1 if any of it is not a digit."""
    value = 0
    for index in range(start, start + count):
        digit = data[index] - 48
        if digit < 0 or digit > 9:
            return -1
        value = value * 10 + digit
    return value


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's `days_from_civil`)."""
    year -= 1 if month <= 2 else 0
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def to_datetime(instant: Micros) -> datetime:
    """The aware UTC datetime of an instant."""
    return _EPOCH + timedelta(microseconds=instant)


def format_instant(instant: Micros) -> str:
    """RFC 3339 in UTC with a `Z`, with fractional seconds only when there are any.

    The same text as `datetime.isoformat() + "Z"` (a test holds them equal), from integer
    arithmetic: every SLA event carries two or three of these, and building datetimes to
    format them cost a microsecond each.
    """
    seconds = instant // SECOND
    micros = instant - seconds * SECOND
    days = seconds // 86_400
    second_of_day = seconds - days * 86_400
    year, month, day = _civil_from_days(days)
    hour = second_of_day // 3_600
    minute = second_of_day // 60 % 60
    second = second_of_day % 60
    two = _TWO_DIGITS
    year_text = str(year) if year >= 1000 else str(10_000 + year)[1:]
    text = f"{year_text}-{two[month]}-{two[day]}T{two[hour]}:{two[minute]}:{two[second]}"
    return f"{text}.{str(SECOND + micros)[1:]}Z" if micros else f"{text}Z"


_TWO_DIGITS: Final[list[str]] = [f"{n:02d}" for n in range(100)]


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01, proleptic Gregorian.

    Howard Hinnant's `civil_from_days` (http://howardhinnant.github.io/date_algorithms.html).
    """
    days += 719_468
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1_460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + 3 if month_index < 10 else month_index - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def parse_instant(text: str) -> Micros:
    """An RFC 3339 timestamp with an offset (`Z` or `+hh:mm`) as an instant; see `parse_rfc3339`."""
    return parse_rfc3339(text)


def format_duration(duration: Micros) -> str:
    """A duration for people: `1h30m`, `45s`, `2d3h`."""
    sign = "-" if duration < 0 else ""
    seconds = abs(duration) // SECOND
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n
    ]
    return sign + ("".join(parts) or "0s")
