"""Clocks that measure SLA time: wall-clock time or business (open) hours.

Every instant is an ``int`` of microseconds since the Unix epoch (UTC) and every duration is an
``int`` of microseconds, so replay arithmetic is exact and cheap. Nothing here reads the wall
clock or does I/O (apart from the ``holidays`` package's built-in data).

Business time model
-------------------
A :class:`BusinessCalendar` is open on a local date when the date's weekday is listed and the
date is neither a public holiday nor a closure. Each open date contributes ONE half-open
interval ``[open_at, close_at)`` of UTC microseconds, where ``open_at`` / ``close_at`` are the
*first instant at which the local wall clock shows that date and time or later*:

* ordinary wall times map to their only instant;
* a wall time repeated by a DST fall-back (a fold) maps to its FIRST occurrence (zoneinfo
  ``fold=0``), so a day open 01:00-04:00 on a fall-back night is one hour longer in real time;
* a wall time skipped by a DST spring-forward (a gap) maps to the transition instant, i.e. it is
  shifted forward to the first wall time that exists; a day open 00:00-06:00 on a spring-forward
  night is one hour shorter, and a day whose hours lie entirely inside the gap is closed.

This mapping is non-decreasing in wall time, so the intervals of successive dates are ordered
and disjoint, which is what makes every law below hold. With ``P(t)`` = business microseconds
before ``t`` (counted from any fixed origin):

* ``between(a, b) = P(b) - P(a)`` = business microseconds inside ``[a, b)``; 0 when ``b <= a``.
* ``add(s, 0) == s``; for ``d > 0``, ``add(s, d)`` is the EARLIEST ``u`` with
  ``between(s, u) == d``. Because intervals are half-open, the result may be a closing instant
  (a 1h30 target from Friday 17:00 with 18:30 closing is due Friday 18:30, not Monday 08:00),
  but never lies further inside a closed period: the microsecond before it is always open.
* Hence ``between(s, add(s, d)) == d``, ``add`` is monotonic in ``s`` and ``d``, ``between`` is
  additive and ``<= b - a``, and ``add(add(s, d1), d2) == add(s, d1 + d2)``: adding from a
  closing instant continues at the next opening.
"""

from __future__ import annotations

import datetime as dt
import re
from bisect import bisect_left as _bisect_left
from bisect import bisect_right as _bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib

from base.errors import EscalatorError
from events.instants import DAY, SECOND, Micros

__all__ = [
    "WEEKDAY_NAMES",
    "BusinessCalendar",
    "Clock",
    "ElapsedClock",
    "Micros",
    "NoBusinessTimeError",
    "time_zone",
]

_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_AVG_YEAR: Final[Micros] = (
    31_556_952 * SECOND
)  # Gregorian mean year: a first guess of the local year
_MIN_YEAR: Final = 2  # keep Jan 1 of year-1 and year+1 representable as datetimes
_MAX_YEAR: Final = 9997
_MAX_EMPTY_YEARS: Final = (
    2  # add() gives up after this many whole local years without business time
)


WEEKDAY_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class NoBusinessTimeError(EscalatorError, ValueError):
    """The calendar has no open time for so long that a target can never be reached."""


class Clock(Protocol):
    """What the SLA core needs from a clock: move forward by a duration, measure a span."""

    def add(self, start: Micros, duration: Micros) -> Micros:
        """The earliest instant ``duration`` of this clock's time after ``start``."""
        ...

    def between(self, start: Micros, end: Micros) -> Micros:
        """This clock's time inside ``[start, end)``; 0 if ``end <= start``."""
        ...


class ElapsedClock:
    """Wall time: every microsecond counts (24x7 SLAs)."""

    __slots__ = ()

    day_length: Micros = DAY
    """A "day" on a 24x7 clock is 24 hours, so ``1bd`` durations still mean something."""

    def add(self, start: Micros, duration: Micros) -> Micros:
        """``start + duration``."""
        return start + duration

    def between(self, start: Micros, end: Micros) -> Micros:
        """``end - start``, never negative."""
        return end - start if end > start else 0

    def is_open(self, instant: Micros) -> bool:
        """Always open."""
        return True

    def __repr__(self) -> str:
        return "ElapsedClock()"


class _Year:
    """The open intervals of one LOCAL calendar year, with prefix sums for O(log n) lookups.

    Covers the instants ``[lo, hi)`` = [local Jan 1 00:00 of ``year``, same of ``year + 1``).
    ``cum[i]`` is the business time in the intervals before interval ``i``; ``cum[-1]`` == total.
    """

    __slots__ = ("cum", "ends", "hi", "lo", "starts", "total", "year")

    def __init__(
        self, year: int, lo: Micros, hi: Micros, starts: list[Micros], ends: list[Micros]
    ) -> None:
        self.year = year
        self.lo = lo
        self.hi = hi
        self.starts = starts
        self.ends = ends
        cum = [0]
        running = 0
        for start, end in zip(starts, ends, strict=True):
            running += end - start
            cum.append(running)
        self.cum = cum
        self.total: Micros = running

    def before(self, t: Micros) -> Micros:
        """Business time in ``[lo, t)`` for ``lo <= t <= hi``."""
        i = _bisect_right(self.ends, t)
        if i < len(self.starts) and self.starts[i] < t:
            return self.cum[i] + t - self.starts[i]
        return self.cum[i]


_OFFSET_NAME = re.compile(r"^(?:UTC|GMT)([+-])(\d{1,2})(?::?00)?$")


def time_zone(name: str) -> ZoneInfo:
    """A calendar's zone: an IANA name; also ``UTC-5`` / ``GMT+2`` (whole hours), read as the
    fixed-offset zone ``Etc/GMT+5`` / ``Etc/GMT-2`` (whose POSIX signs are inverted).
    ValueError otherwise. Everything that reads a calendar's wall times uses this (the
    iCalendar reader, the projections' report days), so a name accepted here works there."""
    fixed = _OFFSET_NAME.match(name)
    key = name
    if fixed is not None:
        key = f"Etc/GMT{'-' if fixed[1] == '+' else '+'}{int(fixed[2])}"
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _time_micros(value: dt.time) -> Micros:
    return ((value.hour * 60 + value.minute) * 60 + value.second) * SECOND + value.microsecond


def _micros_time(offset: Micros) -> dt.time:
    """Wall time of ``offset`` microseconds after local midnight (``0 <= offset < DAY``)."""
    seconds, micros = divmod(offset, SECOND)
    minutes, second = divmod(seconds, 60)
    return dt.time(minutes // 60, minutes % 60, second, micros)


Interval = tuple[Micros, Micros]
"""Opening hours of one local day: wall-time offsets from its local midnight, microseconds.

``0 <= start < DAY`` and ``start < end <= start + DAY``: an end past ``DAY`` is on the next local
day (a 22:00-06:00 night shift is ``(22h, 30h)`` and belongs to the day it starts); ``DAY``
itself is the ``24:00`` close.
"""


def _check_hours(hours: Iterable[Interval], where: str) -> tuple[Interval, ...]:
    checked = tuple(sorted((int(start), int(end)) for start, end in hours))
    for start, end in checked:
        if not (0 <= start < DAY and start < end <= start + DAY):
            raise ValueError(
                f"{where}: bad interval {start}-{end}: the start must be in the day and the end "
                "after it, at most 24 hours later"
            )
    return checked


HolidaySpec = tuple[str, str | None, tuple[str, ...]]
"""Country, subdivision or None, holiday categories (empty: the package's default, public)."""


def _parse_holiday_spec(spec: str, categories: Iterable[str] = ()) -> HolidaySpec:
    """``"CA-ON"`` -> Canada, Ontario; ``"US"`` -> whole country. ValueError names a bad spec.

    The subdivision is spelled as the ``holidays`` package does, whatever the case written:
    most are upper-case codes (``ON``), some are names (DE ``Augsburg``, FR ``Zone A``) and
    codes have aliases (``Ontario``); the package itself is case-sensitive."""
    country, _, subdiv = spec.strip().partition("-")
    country = country.upper()
    parsed = (country, _subdivision(country, subdiv.strip()), tuple(categories))
    if not country:
        raise ValueError(f"bad holiday spec {spec!r}: expected COUNTRY or COUNTRY-SUBDIVISION")
    try:
        _holiday_dates(parsed, 2000)
    except (NotImplementedError, KeyError, ValueError) as exc:
        raise ValueError(f"bad holiday spec {spec!r}: {exc}") from exc
    return parsed


def _subdivision(country: str, written: str) -> str | None:
    """``written`` as the ``holidays`` package spells one of ``country``'s subdivisions or their
    aliases (compared without case), else as written (the package then names it unknown)."""
    if not written:
        return None
    codes: list[str] = list(holidays_lib.list_supported_countries().get(country, ()))
    try:
        aliases = holidays_lib.country_holidays(country).get_subdivision_aliases()
    except (NotImplementedError, KeyError, AttributeError):
        aliases = {}
    for code in codes + [name for names in aliases.values() for name in names]:
        if code.casefold() == written.casefold():
            return str(code)
    return written


def _holiday_dates(spec: HolidaySpec, year: int) -> set[dt.date]:
    """Holidays (with "observed" substitute days) of one year, per the ``holidays`` package."""
    if spec[2]:
        table = holidays_lib.country_holidays(
            spec[0], subdiv=spec[1], years=year, categories=spec[2]
        )
    else:
        table = holidays_lib.country_holidays(spec[0], subdiv=spec[1], years=year)
    return {day for day in table if day.year == year}


def _union(spans: list[Interval]) -> list[Interval]:
    """Sorted, merged (overlapping or touching spans joined), empty spans dropped."""
    merged: list[Interval] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _subtract(spans: list[Interval], holes: list[Interval]) -> list[Interval]:
    """``spans`` minus ``holes``; both sorted and merged (see :func:`_union`)."""
    if not holes:
        return spans
    result: list[Interval] = []
    i = 0
    for start, end in spans:
        while i < len(holes) and holes[i][1] <= start:
            i += 1
        j = i
        while j < len(holes) and holes[j][0] < end:
            if holes[j][0] > start:
                result.append((start, holes[j][0]))
            start = max(start, holes[j][1])
            j += 1
        if start < end:
            result.append((start, end))
    return result


class BusinessCalendar:
    """Business hours in a time zone: weekly opening hours, holidays, closures, extra openings.

    Two ways to give the week: ``opens``-``closes`` on ``weekdays`` (0 = Monday; the original
    one-range form), or ``week``: seven tuples (Monday first) of :data:`Interval` wall-time
    offsets, zero or more per day (a lunch break is two intervals, a night shift crosses
    midnight, ``(0, DAY)`` every day is 24x7).

    Closed: dates of ``holidays`` (a ``holidays`` package spec such as ``"CA-ON"`` or ``"US"``,
    with optional ``holiday_categories`` such as ``("public", "optional")``) and ``closures``
    lose their weekly hours (a night shift starting on a holiday is closed; one starting the
    evening before runs into it). ``partial_closures`` close ``(date, from, to)`` wall offsets
    of a day (``to <= DAY``) and ``closed_spans`` close UTC instants ``[start, end)`` (timed
    iCalendar events); both cut any hours they overlap. ``openings`` maps a date to the hours
    it is open instead of its weekly hours, even on a holiday (a Saturday worked before one).
    Overlapping hours count once.

    See the module docstring for the laws and how DST gaps and folds are resolved. Open
    intervals are computed lazily one local year at a time and cached with prefix sums, so
    ``add``/``between``/``is_open`` cost a couple of binary searches regardless of the span.
    """

    day_length: Micros
    """Nominal length of a business day, ``1bd``: open-to-close (10h30 for 08:00-18:30); for a
    ``week``, the most common length of an open weekday (the longer on a tie)."""

    def __init__(
        self,
        timezone: str,
        opens: dt.time | None = None,
        closes: dt.time | None = None,
        weekdays: Iterable[int] = (),
        holidays: str | None = None,
        closures: Iterable[dt.date] = (),
        *,
        week: Sequence[Iterable[Interval]] | None = None,
        holiday_categories: Iterable[str] = (),
        partial_closures: Iterable[tuple[dt.date, Micros, Micros]] = (),
        closed_spans: Iterable[Interval] = (),
        openings: Mapping[dt.date, Iterable[Interval]] | None = None,
    ) -> None:
        self._tz = time_zone(timezone)
        self.zone: ZoneInfo = self._tz
        """The zone of :func:`time_zone` (local days, wall times)."""
        if week is None:
            if opens is None or closes is None:
                raise ValueError("give either opens, closes and weekdays, or a week of hours")
            if opens.tzinfo is not None or closes.tzinfo is not None:
                raise ValueError("opens/closes are local wall times and must be naive")
            if not opens < closes:
                raise ValueError(f"opens ({opens}) must be before closes ({closes})")
            days = frozenset(weekdays)
            if not days:
                raise ValueError("a business calendar needs at least one weekday")
            if not days <= frozenset(range(7)):
                raise ValueError(f"weekdays must be 0 (Monday) .. 6 (Sunday), got {sorted(days)}")
            span = (_time_micros(opens), _time_micros(closes))
            week = [[span] if day in days else [] for day in range(7)]
        if len(week) != 7:
            raise ValueError(f"a week has 7 days of hours, got {len(week)}")
        self.week: tuple[tuple[Interval, ...], ...] = tuple(
            _check_hours(hours, WEEKDAY_NAMES[day]) for day, hours in enumerate(week)
        )
        if not any(self.week):
            raise ValueError("a business calendar needs open hours on at least one weekday")
        self.timezone = timezone
        self.weekdays = frozenset(day for day in range(7) if self.week[day])
        self.holidays = holidays
        self.closures = frozenset(closures)
        if any(isinstance(day, dt.datetime) for day in self.closures):
            # A datetime never equals a date, so it would silently close nothing.
            raise ValueError("closures must be datetime.date values, not datetimes")
        self.partial_closures: tuple[tuple[dt.date, Micros, Micros], ...] = tuple(
            sorted(partial_closures)
        )
        for day, start, end in self.partial_closures:
            if not 0 <= start < end <= DAY:
                raise ValueError(f"closure on {day}: bad hours {start}-{end}")
        self.closed_spans: list[Interval] = _union(list(closed_spans))
        self.openings: dict[dt.date, tuple[Interval, ...]] = {
            day: _check_hours(hours, f"opening on {day}") for day, hours in (openings or {}).items()
        }
        lengths = [sum(end - start for start, end in hours) for hours in self.week if hours]
        self.day_length = max(lengths, key=lambda length: (lengths.count(length), length))
        self._holiday_spec: HolidaySpec | None = (
            _parse_holiday_spec(holidays, holiday_categories) if holidays is not None else None
        )
        self.holiday_categories: tuple[str, ...] = tuple(holiday_categories)
        """The ``holidays`` package's categories closed on (empty: its default, public)."""
        self._holiday_cache: dict[int, frozenset[dt.date]] = {}
        self._years: dict[int, _Year] = {}
        self._last: _Year | None = None

    def __repr__(self) -> str:
        return (
            f"BusinessCalendar({self.timezone!r}, week={self.week!r}, "
            f"holidays={self.holidays!r}, closures=<{len(self.closures)} dates>)"
        )

    def hours_on(self, day: dt.date) -> tuple[Interval, ...]:
        """The hours ``day`` (a local date) opens, before partial closures: its extra opening,
        else nothing on a holiday or closure, else its weekday's hours."""
        found = self.openings.get(day)
        if found is not None:
            return found
        if day in self.closures or day in self._holidays_in(day.year):
            return ()
        return self.week[day.weekday()]

    # -- public API ---------------------------------------------------------------------------

    def is_open(self, instant: Micros) -> bool:
        """Whether ``instant`` lies inside an open interval (closing instants are closed)."""
        y = self._last
        if y is None or not y.lo <= instant < y.hi:
            y = self._year_at(instant)
        i = _bisect_right(y.ends, instant)
        return i < len(y.starts) and y.starts[i] <= instant

    def between(self, start: Micros, end: Micros) -> Micros:
        """Business microseconds inside ``[start, end)``; 0 if ``end <= start``."""
        if end <= start:
            return 0
        a = self._last
        if a is None or not a.lo <= start < a.hi:
            a = self._year_at(start)
        if end < a.hi:  # hot path: same local year, inlined ``before(end) - before(start)``
            starts, ends, cum = a.starts, a.ends, a.cum
            n = len(starts)
            i = _bisect_right(ends, end)
            j = _bisect_right(ends, start, 0, i)
            total = cum[i] - cum[j]
            if i < n and starts[i] < end:
                total += end - starts[i]
            if j < n and starts[j] < start:
                total -= start - starts[j]
            return total
        total = a.total - a.before(start)
        year = a.year + 1
        y = self._year(year)
        while end >= y.hi:
            total += y.total
            year += 1
            y = self._year(year)
        self._last = y
        return total + y.before(end)

    def add(self, start: Micros, duration: Micros) -> Micros:
        """The earliest instant ``u`` with ``between(start, u) == duration``; ``start`` if 0.

        Raises ValueError for a negative duration and :class:`NoBusinessTimeError` when the
        target lies beyond two whole local years without any business time.
        """
        if duration <= 0:
            if duration == 0:
                return start
            raise ValueError(f"negative business duration {duration}")
        y = self._last
        if y is None or not y.lo <= start < y.hi:
            y = self._year_at(start)
        target = y.before(start) + duration
        empty = 0
        while target > y.total:
            target -= y.total
            y = self._year(y.year + 1)
            if y.total:
                empty = 0
            else:
                empty += 1
                if empty >= _MAX_EMPTY_YEARS:
                    raise NoBusinessTimeError(
                        f"{self!r} has no business time in local years "
                        f"{y.year - empty + 1}..{y.year}"
                    )
        self._last = y
        cum = y.cum
        j = _bisect_left(cum, target) - 1
        return y.starts[j] + target - cum[j]

    def open_intervals(self, start: Micros, end: Micros) -> Iterator[tuple[Micros, Micros]]:
        """The open intervals clipped to ``[start, end)``, in order (for tests and debugging)."""
        if end <= start:
            return
        y = self._year_at(start)
        while y.lo < end:
            i = _bisect_right(y.ends, start)
            for s, e in zip(y.starts[i:], y.ends[i:], strict=True):
                if s >= end:
                    return
                yield max(s, start), min(e, end)
            y = self._year(y.year + 1)

    def is_business_day(self, day: dt.date) -> bool:
        """Whether ``day`` (a local date) has opening hours (weekly or extra), before partial
        closures."""
        return bool(self.hours_on(day))

    def closed_reason(self, day: dt.date) -> str | None:
        """Why ``day`` (a local date) lost its weekly hours: ``holiday: <its name>`` or
        ``closure``; None when it has its weekly hours or an extra opening."""
        if day in self.openings or not self.week[day.weekday()]:
            return None
        if day in self.closures:
            return "closure"
        if day in self._holidays_in(day.year):
            spec = self._holiday_spec
            assert spec is not None
            table = holidays_lib.country_holidays(
                spec[0], subdiv=spec[1], years=day.year, categories=spec[2] or None
            )
            return f"holiday: {table.get(day) or 'holiday'}"
        return None

    def wall_instant(self, day: dt.date, offset: Micros) -> Micros:
        """The first instant whose local wall clock reads ``offset`` after midnight of ``day``
        (a wall time a DST gap skips: the transition), as the calendar's hours are placed."""
        return self._at(day, offset)

    def local_date(self, instant: Micros) -> dt.date:
        """The local date of ``instant`` in the calendar's zone."""
        return (_EPOCH_UTC + dt.timedelta(microseconds=instant)).astimezone(self._tz).date()

    # -- internals ----------------------------------------------------------------------------

    def _holidays_in(self, year: int) -> frozenset[dt.date]:
        if self._holiday_spec is None:
            return frozenset()
        found = self._holiday_cache.get(year)
        if found is None:
            found = self._holiday_cache[year] = frozenset(_holiday_dates(self._holiday_spec, year))
        return found

    def _year_at(self, t: Micros) -> _Year:
        """The cached local year containing instant ``t``."""
        y = self._last
        if y is not None and y.lo <= t < y.hi:
            return y
        year = 1970 + t // _AVG_YEAR
        y = self._year(year)
        while t < y.lo:
            year -= 1
            y = self._year(year)
        while t >= y.hi:
            year += 1
            y = self._year(year)
        self._last = y
        return y

    def _year(self, year: int) -> _Year:
        y = self._years.get(year)
        if y is None:
            y = self._years[year] = self._build_year(year)
        return y

    def _build_year(self, year: int) -> _Year:
        if not _MIN_YEAR <= year <= _MAX_YEAR:
            raise ValueError(f"instant outside the supported local years {_MIN_YEAR}..{_MAX_YEAR}")
        lo = self._at(dt.date(year, 1, 1), 0)
        hi = self._at(dt.date(year + 1, 1, 1), 0)
        opened: list[Interval] = []
        holes: list[Interval] = [(start, end) for start, end in self.closed_spans]
        first = dt.date(year - 1, 12, 31)  # its hours may cross into 1 January
        for day, start, end in self.partial_closures:
            if first <= day and day.year <= year:
                holes.append((self._at(day, start), self._at(day, end)))
        day = first
        one = dt.timedelta(days=1)
        while day.year <= year:
            for start, end in self.hours_on(day):
                o = self._at(day, start)
                c = self._at(day, end)
                if c > o:  # empty only when both ends fall into the same DST gap
                    opened.append((o, c))
            day += one
        starts: list[Micros] = []
        ends: list[Micros] = []
        for start, end in _subtract(_union(opened), _union(holes)):
            start, end = max(start, lo), min(end, hi)
            if start < end:
                starts.append(start)
                ends.append(end)
        return _Year(year, lo, hi, starts, ends)

    def _at(self, day: dt.date, offset: Micros) -> Micros:
        """First instant reaching wall time ``offset`` after local midnight of ``day``."""
        days, wall = divmod(offset, DAY)
        if days:
            day += dt.timedelta(days=days)
        return self._first_reaching(day, _micros_time(wall))

    def _first_reaching(self, day: dt.date, wall: dt.time) -> Micros:
        """First instant whose local wall clock reads ``day wall`` or later.

        That is the fold=0 (first) occurrence of a repeated wall time and, for a wall time
        skipped by a DST gap, the transition instant (shift forward to the first existing time).
        """
        naive = dt.datetime.combine(day, wall)
        wall_us = _naive_micros(naive)
        first = naive.replace(tzinfo=self._tz)  # fold=0
        second = first.replace(fold=1)
        guess = wall_us - _offset_micros(first)
        if first.utcoffset() == second.utcoffset() or self._wall_micros(guess) == wall_us:
            return guess  # unambiguous, or the first occurrence of a repeated wall time
        # In a gap: fold=0 used the pre-transition offset, so ``guess`` is past the transition
        # and the fold=1 reading (post-transition offset) lies before it. Bisect for it.
        before = wall_us - _offset_micros(second)
        lo, hi = min(before, guess), max(before, guess)
        while hi - lo > 1:  # invariant: wall(lo) < wall_us <= wall(hi)
            mid = (lo + hi) // 2
            if self._wall_micros(mid) >= wall_us:
                hi = mid
            else:
                lo = mid
        return hi

    def _wall_micros(self, t: Micros) -> Micros:
        """Local wall time of instant ``t`` as naive microseconds since 1970-01-01 00:00."""
        moment = _EPOCH_UTC + dt.timedelta(microseconds=t)
        return t + _offset_micros(moment.astimezone(self._tz))


def _naive_micros(naive: dt.datetime) -> Micros:
    delta = naive - _EPOCH_NAIVE
    return (delta.days * 86_400 + delta.seconds) * SECOND + delta.microseconds


def _offset_micros(aware: dt.datetime) -> Micros:
    offset = aware.utcoffset()
    assert offset is not None
    return (offset.days * 86_400 + offset.seconds) * SECOND + offset.microseconds
