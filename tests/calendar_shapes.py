"""Hypothesis strategies for the calendar shapes of issue #8: several intervals per weekday
(overlapping ones too), night shifts crossing midnight, `24:00` closes, 24x7, partial-day
closures, extra opening days and closed UTC spans (timed iCalendar events). Shared by the law
tests (test_clocks.py) and the independent reference (test_clocks_reference.py).

Every wall time and span is a whole minute, so the minute-resolution reference can check them.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta

from hypothesis import strategies as st

from streams.sla.clocks import BusinessCalendar, Micros

MINUTE: Micros = 60_000_000
DAY_MINUTES = 24 * 60
TIMEZONES = ["America/Toronto", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]

Span = tuple[int, int]  # minutes
Shape = tuple[
    str,  # time zone
    tuple[tuple[Span, ...], ...],  # week: 7 days of (start, end) minutes after local midnight
    str | None,  # holidays spec
    frozenset[date],  # closed dates
    tuple[tuple[date, int, int], ...],  # partial closures: date, from, to (minutes)
    tuple[Span, ...],  # closed spans: UTC minutes since the epoch
    tuple[tuple[date, tuple[Span, ...]], ...],  # extra openings
]

# Near 01:00-03:00 (DST changes) often; anywhere otherwise.
_start = st.one_of(st.integers(0, DAY_MINUTES - 1), st.integers(0, 4 * 60))
_length = st.one_of(
    st.integers(1, DAY_MINUTES), st.integers(1, 4 * 60), st.just(DAY_MINUTES), st.just(8 * 60)
)


@st.composite
def _interval(draw: st.DrawFn) -> Span:
    start = draw(_start)
    if draw(st.booleans()):
        return (start, DAY_MINUTES)  # a 24:00 close
    return (start, start + draw(_length))


_day = st.lists(_interval(), max_size=3).map(lambda spans: tuple(sorted(spans)))
_2026 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) // 60


@st.composite
def shapes(draw: st.DrawFn, near: date | None = None) -> Shape:
    """A calendar shape; with ``near``, its dated exceptions fall within two weeks of it."""
    _dates = st.dates(date(2025, 12, 1), date(2027, 12, 31))
    origin = _2026
    if near is not None:
        _dates = st.dates(near - timedelta(days=3), near + timedelta(days=14))
        origin = int(datetime.combine(near, time(0), UTC).timestamp()) // 60 - 3 * DAY_MINUTES
    tz = draw(st.sampled_from(TIMEZONES))
    if draw(st.integers(0, 9)) == 0:
        week: tuple[tuple[Span, ...], ...] = tuple(((0, DAY_MINUTES),) for _ in range(7))
    else:
        week = tuple(draw(_day) for _ in range(7))
        if not any(week):
            week = (((9 * 60, 17 * 60),), *week[1:])
    holidays = draw(st.sampled_from([None, "CA-ON", "GB-ENG"]))
    closures = frozenset(draw(st.lists(_dates, max_size=6)))
    partial = tuple(
        draw(
            st.lists(
                st.tuples(_dates, st.integers(0, DAY_MINUTES - 1), st.integers(1, DAY_MINUTES))
                .map(lambda p: (p[0], min(p[1], p[2] - 1), p[2]))
                .filter(lambda p: p[1] < p[2]),
                max_size=4,
            )
        )
    )
    spans = tuple(
        draw(
            st.lists(
                st.tuples(st.integers(0, 17 * DAY_MINUTES), st.integers(1, 3 * DAY_MINUTES)).map(
                    lambda p: (origin + p[0], origin + p[0] + p[1])
                ),
                max_size=4,
            )
        )
    )
    openings = tuple(sorted(draw(st.dictionaries(_dates, _day.filter(bool), max_size=4)).items()))
    return tz, week, holidays, closures, partial, spans, openings


@functools.cache
def build(shape: Shape) -> BusinessCalendar:
    """The calendar of a shape (cached: hypothesis's shrinking would rebuild year tables)."""
    tz, week, holidays, closures, partial, spans, openings = shape
    return BusinessCalendar(
        tz,
        week=[[(s * MINUTE, e * MINUTE) for s, e in day] for day in week],
        holidays=holidays,
        closures=closures,
        partial_closures=[(d, a * MINUTE, b * MINUTE) for d, a, b in partial],
        closed_spans=[(a * MINUTE, b * MINUTE) for a, b in spans],
        openings={d: [(s * MINUTE, e * MINUTE) for s, e in hours] for d, hours in openings},
    )
