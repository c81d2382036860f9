"""Closures read from an iCalendar file (RFC 5545), e.g. a company's holiday calendar export.

All-day events (``DTSTART;VALUE=DATE``) close whole local dates, ``DTEND`` exclusive (one day
when it is absent); timed events close the instants ``[DTSTART, DTEND)`` (``DURATION`` is also
read; a floating time is local time in the calendar's zone, its first occurrence in a fold
and, as RFC 5545 says, at the offset before a DST gap for a time the gap skips).
Cancelled events (``STATUS:CANCELLED``) close nothing. Parsed with the ``icalendar`` library;
recurring events (``RRULE``, ``RDATE``, ``EXDATE``, occurrences moved or cancelled by a
``RECURRENCE-ID``) are expanded with ``recurring-ical-events``, each occurrence closing as a
single event would, through `RECURRENCE_HORIZON` (an endless rule has to stop somewhere).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import icalendar

from events.instants import SECOND, Micros
from streams.sla.clocks import time_zone

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
RECURRENCE_HORIZON = dt.date(2100, 1, 1)
"""Occurrences of recurring events are read up to this date (exclusive): a yearly holiday
through the century, a weekly closure ~4,000 times, a daily one ~30,000 (a second or so)."""


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
    is not iCalendar, an event lacks a start, or ends before it starts."""
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except ValueError as exc:
        raise ValueError(f"{source}: not an iCalendar file: {exc}") from None
    zone = time_zone(timezone)  # the calendar's reading: `UTC-5` too
    dates: set[dt.date] = set()
    spans: list[tuple[Micros, Micros]] = []
    events = calendar.walk("VEVENT")
    recurring = {str(e.get("UID", "?")) for e in events if "RRULE" in e or "RDATE" in e}
    for event in events:
        if str(event.get("UID", "?")) not in recurring:  # with its moved occurrences: below
            _close(event, f"{source}: event {str(event.get('UID', '?'))!r}", zone, dates, spans)
    if recurring:
        import recurring_ical_events  # type: ignore[import-untyped]

        try:
            occurrences = recurring_ical_events.of(calendar).between(
                dt.date(1970, 1, 1), RECURRENCE_HORIZON
            )
        except Exception as exc:  # the library's own errors (bad RRULE, ...) name no field
            raise ValueError(f"{source}: recurring events: {exc}") from None
        for event in occurrences:
            uid = str(event.get("UID", "?"))
            if uid in recurring:
                _close(event, f"{source}: event {uid!r}", zone, dates, spans)
    return dates, spans


def _close(
    event: icalendar.Component,
    where: str,
    zone: ZoneInfo,
    dates: set[dt.date],
    spans: list[tuple[Micros, Micros]],
) -> None:
    """Add what one event (or one occurrence) closes to ``dates`` or ``spans``."""
    if str(event.get("STATUS", "")).upper() == "CANCELLED":
        return  # kept in exports, but called off (RFC 5545 3.8.1.11)
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
        return
    stop = start + dt.timedelta(days=1) if end is None else end
    if isinstance(stop, dt.datetime) or stop < start:
        raise ValueError(f"{where}: an all-day event needs a later all-day DTEND")
    day = start
    while day < stop or day == start:
        dates.add(day)
        day += dt.timedelta(days=1)
