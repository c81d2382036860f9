"""Closures read from an iCalendar file (RFC 5545), e.g. a company's holiday calendar export.

All-day events (``DTSTART;VALUE=DATE``) close whole local dates, ``DTEND`` exclusive (one day
when it is absent); timed events close the instants ``[DTSTART, DTEND)`` (``DURATION`` is also
read; a floating time is local time in the calendar's zone, its first occurrence in a fold
and, as RFC 5545 says, at the offset before a DST gap for a time the gap skips).
Cancelled events (``STATUS:CANCELLED``) close nothing. Parsed with the ``icalendar`` library.
Recurring events (``RRULE``/``RDATE``) are refused with a clear error rather than silently
read as one occurrence.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import icalendar

from events.instants import SECOND, Micros
from streams.sla.clocks import time_zone

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _micros(moment: dt.datetime, zone: ZoneInfo) -> Micros:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * SECOND + delta.microseconds


def read_ical_closures(
    data: bytes, timezone: str, source: str
) -> tuple[set[dt.date], list[tuple[Micros, Micros]]]:
    """Closed whole dates and closed UTC spans ``[start, end)`` in microseconds from the
    iCalendar ``data``. Raises ValueError naming ``source`` (and the event's UID) when the file
    is not iCalendar, an event lacks a start, ends before it starts, or recurs."""
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except ValueError as exc:
        raise ValueError(f"{source}: not an iCalendar file: {exc}") from None
    zone = time_zone(timezone)  # the calendar's reading: `UTC-5` too
    dates: set[dt.date] = set()
    spans: list[tuple[Micros, Micros]] = []
    for event in calendar.walk("VEVENT"):
        uid = str(event.get("UID", "?"))
        where = f"{source}: event {uid!r}"
        if str(event.get("STATUS", "")).upper() == "CANCELLED":
            continue  # kept in exports, but called off (RFC 5545 3.8.1.11)
        if "RRULE" in event or "RDATE" in event:
            raise ValueError(f"{where}: recurring events are not supported; list each date")
        if "DTSTART" not in event:
            raise ValueError(f"{where}: no DTSTART")
        start = event.decoded("DTSTART")
        if "DTEND" in event:
            end = event.decoded("DTEND")
        elif "DURATION" in event:
            end = start + event.decoded("DURATION")
        else:
            end = None
        if isinstance(start, dt.datetime):
            if not isinstance(end, dt.datetime):
                raise ValueError(f"{where}: a timed event needs a timed DTEND or a DURATION")
            first, last = _micros(start, zone), _micros(end, zone)
            if last < first:
                raise ValueError(f"{where}: ends before it starts")
            spans.append((first, last))
            continue
        stop = start + dt.timedelta(days=1) if end is None else end
        if isinstance(stop, dt.datetime) or stop < start:
            raise ValueError(f"{where}: an all-day event needs a later all-day DTEND")
        day = start
        while day < stop or day == start:
            dates.add(day)
            day += dt.timedelta(days=1)
    return dates, spans
