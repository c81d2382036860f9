"""Instants as integer microseconds since the Unix epoch (UTC).

The SLA core does all its arithmetic on plain ints: exact (no float drift), cheap to compare,
compact to store per ticket. Conversion to and from RFC 3339 text happens only at the edges.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

Micros = int
"""An instant (microseconds since 1970-01-01T00:00:00Z) or a duration in microseconds."""

SECOND: Micros = 1_000_000
MINUTE: Micros = 60 * SECOND
HOUR: Micros = 60 * MINUTE
DAY: Micros = 24 * HOUR

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_ONE_MICROSECOND = timedelta(microseconds=1)
_EPOCH_ORDINAL = _EPOCH.toordinal()


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


def to_datetime(instant: Micros) -> datetime:
    """The aware UTC datetime of an instant."""
    return _EPOCH + timedelta(microseconds=instant)


def format_instant(instant: Micros) -> str:
    """RFC 3339 in UTC with a `Z`, with fractional seconds only when there are any."""
    return (_NAIVE_EPOCH + _ONE_MICROSECOND * instant).isoformat() + "Z"


def parse_instant(text: str) -> Micros:
    """An RFC 3339 timestamp with an offset (`Z` or `+hh:mm`) as an instant."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return from_datetime(moment)


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
