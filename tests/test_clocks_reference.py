"""BusinessCalendar against independent implementations, at minute resolution.

1. A deliberately naive reference written here with only ``datetime`` + ``zoneinfo``: each
   opening/closing instant is found by stepping UTC minute by minute until the local wall clock
   reaches the wall time (which is the documented "first instant reaching" rule, computed with
   none of the production code's fold/gap arithmetic), then days are walked one by one.
2. A minute-stepping check of ``is_open`` against the plain wall-clock predicate
   "open date and opens <= local time < closes" (valid except during a repeated hour).
3. The ``businesstimedelta`` package (pytz based) on calendars whose hours avoid DST edges.
4. For the week shapes (several intervals a day, night shifts, 24x7, partial closures, extra
   openings, closed spans): a plain set of open UTC minutes, built interval by interval with
   the same minute stepping.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import businesstimedelta
import holidays as holidays_lib
import pytz  # type: ignore[import-untyped, unused-ignore]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.sla.clocks import BusinessCalendar, Micros
from tests.calendar_shapes import Shape, build, shapes

SECOND: Micros = 1_000_000
MINUTE: Micros = 60 * SECOND
HOUR: Micros = 60 * MINUTE
DAY: Micros = 24 * HOUR
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

TIMEZONES = ["America/Toronto", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
# Windows around DST transitions of 2026 (and plain weeks) so that most examples hit them.
WINDOWS = [
    datetime(2026, 3, 6, tzinfo=UTC),  # Toronto spring forward (Sun 8th)
    datetime(2026, 10, 30, tzinfo=UTC),  # Toronto fall back (Sun Nov 1st), London Oct 25th
    datetime(2026, 3, 27, tzinfo=UTC),  # London spring forward (Sun 29th)
    datetime(2026, 4, 2, tzinfo=UTC),  # Lord Howe fall back (Sun Apr 5th), Good Friday
    datetime(2026, 10, 1, tzinfo=UTC),  # Lord Howe spring forward (Sun Oct 4th)
    datetime(2026, 12, 22, tzinfo=UTC),  # Christmas week, year boundary
    datetime(2027, 6, 10, tzinfo=UTC),  # nothing special
]


def to_micros(moment: datetime) -> Micros:
    return round((moment - EPOCH).total_seconds()) * SECOND


def to_datetime(instant: Micros) -> datetime:
    return EPOCH + timedelta(microseconds=instant)


class NaiveCalendar:
    """Obviously-correct, slow reference: minute stepping and a day-by-day walk."""

    def __init__(
        self,
        tz: str,
        opens: time,
        closes: time,
        weekdays: frozenset[int],
        holidays: str | None,
        closures: frozenset[date],
    ) -> None:
        self.tz = ZoneInfo(tz)
        self.opens, self.closes, self.weekdays, self.closures = opens, closes, weekdays, closures
        self.holidays: holidays_lib.HolidayBase | None = None
        if holidays is not None:
            country, _, subdiv = holidays.partition("-")
            self.holidays = holidays_lib.country_holidays(country, subdiv=subdiv or None)

    def is_open_day(self, day: date) -> bool:
        if day.weekday() not in self.weekdays or day in self.closures:
            return False
        return self.holidays is None or day not in self.holidays

    def first_reaching(self, day: date, wall: time) -> datetime:
        """The first whole UTC minute at which the local clock reads ``day wall`` or later."""
        target = datetime.combine(day, wall)
        moment = target.replace(tzinfo=UTC) - timedelta(hours=15)  # every offset is < 15h
        while moment.astimezone(self.tz).replace(tzinfo=None) < target:
            moment += timedelta(minutes=1)
        return moment

    @functools.cache  # noqa: B019 - the instances live for one example only
    def interval(self, day: date) -> tuple[Micros, Micros] | None:
        if not self.is_open_day(day):
            return None
        start = to_micros(self.first_reaching(day, self.opens))
        end = to_micros(self.first_reaching(day, self.closes))
        return (start, end) if end > start else None

    def intervals_from(self, instant: Micros) -> Iterator[tuple[Micros, Micros]]:
        day = to_datetime(instant).astimezone(self.tz).date() - timedelta(days=2)
        for _ in range(3 * 366):
            found = self.interval(day)
            if found is not None and found[1] > instant:
                yield found
            day += timedelta(days=1)

    def between(self, a: Micros, b: Micros) -> Micros:
        total = 0
        for start, end in self.intervals_from(a):
            if start >= b:
                break
            total += max(0, min(end, b) - max(start, a))
        return total

    def add(self, s: Micros, d: Micros) -> Micros:
        if d == 0:
            return s
        left = d
        for start, end in self.intervals_from(s):
            start = max(start, s)
            if left <= end - start:
                return start + left
            left -= end - start
        raise AssertionError("reference ran out of days")


@st.composite
def calendar_specs(
    draw: st.DrawFn,
) -> tuple[str, time, time, frozenset[int], str | None, frozenset[date]]:
    tz = draw(st.sampled_from(TIMEZONES))
    minutes = st.one_of(st.integers(0, 24 * 60 - 1), st.integers(0, 4 * 60))
    a, b = draw(st.tuples(minutes, minutes).filter(lambda p: p[0] != p[1]))
    lo, hi = sorted((a, b))
    weekdays = frozenset(draw(st.sets(st.integers(0, 6), min_size=1)))
    holidays = draw(st.sampled_from([None, "CA-ON", "GB-ENG", "AU-NSW"]))
    closures = frozenset(draw(st.lists(st.dates(date(2026, 1, 1), date(2027, 12, 31)), max_size=8)))
    return tz, time(lo // 60, lo % 60), time(hi // 60, hi % 60), weekdays, holidays, closures


minute_instants = st.builds(
    lambda window, minutes: to_micros(window) + minutes * MINUTE,
    st.sampled_from(WINDOWS),
    st.integers(-2 * 24 * 60, 12 * 24 * 60),
)


REFERENCE = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@REFERENCE
@given(st.data())
def test_between_and_add_match_naive_reference(data: st.DataObject) -> None:
    spec = data.draw(calendar_specs())
    cal = BusinessCalendar(*spec)
    ref = NaiveCalendar(*spec)
    a = data.draw(minute_instants)
    b = a + data.draw(st.integers(-60, 10 * 24 * 60)) * MINUTE
    assert cal.between(a, b) == ref.between(a, b)
    # Durations up to ~2 business days (capped so sparse calendars stay within a few months).
    d = data.draw(st.integers(0, min(2 * cal.day_length, 30 * HOUR) // MINUTE)) * MINUTE
    assert cal.add(a, d) == ref.add(a, d)
    assert list(cal.open_intervals(a, a + 10 * DAY)) == [
        (max(s, a), min(e, a + 10 * DAY)) for s, e in _clip(ref.intervals_from(a), a + 10 * DAY)
    ]


def _clip(
    intervals: Iterator[tuple[Micros, Micros]], end: Micros
) -> Iterator[tuple[Micros, Micros]]:
    for interval in intervals:
        if interval[0] >= end:
            return
        yield interval


@REFERENCE
@given(st.data())
def test_is_open_matches_wall_clock_predicate_minute_by_minute(data: st.DataObject) -> None:
    """Outside repeated (fold=1) wall times, open == open date and opens <= wall < closes."""
    spec = data.draw(calendar_specs())
    cal = BusinessCalendar(*spec)
    ref = NaiveCalendar(*spec)
    tz = ZoneInfo(spec[0])
    start = data.draw(minute_instants)
    checked = 0
    for step in range(0, 3 * 24 * 60, 7):  # every 7 minutes over 3 days
        t = start + step * MINUTE
        wall = to_datetime(t).astimezone(tz)
        if wall.fold:
            continue  # second pass of a repeated hour: governed by the first-occurrence rule
        expected = ref.is_open_day(wall.date()) and spec[1] <= wall.time() < spec[2]
        assert cal.is_open(t) == expected, (to_datetime(t), wall)
        checked += 1
    assert checked > 0


# --------------------------------------------------------------------------------------------
# businesstimedelta (an unrelated, pytz-based implementation)
# --------------------------------------------------------------------------------------------


class _ClosedDates:
    """Holidays plus closures, as the ``in`` container businesstimedelta's HolidayRule wants."""

    def __init__(self, table: holidays_lib.HolidayBase, closures: frozenset[date]) -> None:
        self.table, self.closures = table, closures

    def __contains__(self, day: object) -> bool:
        return day in self.closures or day in self.table


@REFERENCE
@given(st.data())
def test_matches_businesstimedelta_away_from_dst_edges(data: st.DataObject) -> None:
    tz = data.draw(st.sampled_from(["America/Toronto", "Europe/London", "Asia/Kolkata", "UTC"]))
    lo = data.draw(st.integers(4 * 60, 22 * 60))  # keep clear of the 00:00-03:00 DST changes
    hi = data.draw(st.integers(lo + 1, 23 * 60))
    opens, closes = time(lo // 60, lo % 60), time(hi // 60, hi % 60)
    weekdays = frozenset(data.draw(st.sets(st.integers(0, 6), min_size=1)))
    closures = frozenset(data.draw(st.lists(st.dates(date(2026, 1, 1), date(2027, 12, 31)))))
    cal = BusinessCalendar(tz, opens, closes, weekdays, "CA-ON", closures)

    zone = pytz.timezone(tz)
    rule = businesstimedelta.Rules(
        [
            businesstimedelta.WorkDayRule(
                start_time=opens, end_time=closes, working_days=sorted(weekdays), tz=zone
            ),
            businesstimedelta.HolidayRule(
                _ClosedDates(holidays_lib.country_holidays("CA", subdiv="ON"), closures), tz=zone
            ),
        ]
    )
    a = data.draw(minute_instants)
    b = a + data.draw(st.integers(0, 10 * 24 * 60)) * MINUTE
    theirs = rule.difference(to_datetime(a), to_datetime(b)).timedelta
    assert cal.between(a, b) == round(theirs.total_seconds()) * SECOND

    d = data.draw(st.integers(1, min(2 * cal.day_length, 30 * HOUR) // MINUTE)) * MINUTE
    due = to_datetime(a) + businesstimedelta.BusinessTimeDelta(rule, seconds=d // SECOND)
    assert cal.add(a, d) == to_micros(due)


# --------------------------------------------------------------------------------------------
# The shapes of issue #8 (several intervals a day, night shifts, 24:00, 24x7, partial closures,
# extra openings, closed spans) against a minute-set reference
# --------------------------------------------------------------------------------------------


@functools.cache
def _reaching_minute(tz: str, day: date, minutes: int) -> int:
    """First whole UTC minute (since the epoch) whose local wall clock reads ``day`` plus
    ``minutes`` or later: stepped one minute at a time, no fold or gap arithmetic."""
    zone = ZoneInfo(tz)
    target = datetime.combine(day, time(0)) + timedelta(minutes=minutes)
    moment = target.replace(tzinfo=UTC) - timedelta(hours=15)
    while moment.astimezone(zone).replace(tzinfo=None) < target:
        moment += timedelta(minutes=1)
    return int((moment - EPOCH).total_seconds()) // 60


class MinuteSetCalendar:
    """The open UTC minutes of a window, as a plain set: a day's hours are its extra opening's,
    else none on a holiday or closed date, else its weekday's; partial closures and closed spans
    are removed minute by minute."""

    def __init__(self, shape: Shape, first: date, last: date) -> None:
        tz, week, holidays, closures, partial, spans, openings = shape
        table = None
        if holidays is not None:
            country, _, subdiv = holidays.partition("-")
            table = holidays_lib.country_holidays(country, subdiv=subdiv or None)
        extra = dict(openings)
        self.open: set[int] = set()
        day = first
        while day <= last:
            if day in extra:
                hours = extra[day]
            elif day in closures or (table is not None and day in table):
                hours = ()
            else:
                hours = week[day.weekday()]
            for s, e in hours:
                self.open.update(range(_reaching_minute(tz, day, s), _reaching_minute(tz, day, e)))
            day += timedelta(days=1)
        for day, s, e in partial:
            if first <= day <= last:
                self.open.difference_update(
                    range(_reaching_minute(tz, day, s), _reaching_minute(tz, day, e))
                )
        for s, e in spans:
            self.open.difference_update(range(s, e))

    def between(self, a: int, b: int) -> int:
        return sum(1 for m in range(a, b) if m in self.open)

    def add(self, s: int, d: int) -> int:
        if d == 0:
            return s
        m = s
        while True:
            if m in self.open:
                d -= 1
                if d == 0:
                    return m + 1
            m += 1


@REFERENCE
@given(st.data())
def test_week_shapes_match_minute_set_reference(data: st.DataObject) -> None:
    a = data.draw(minute_instants) // MINUTE
    shape = data.draw(shapes(near=to_datetime(a * MINUTE).date()))
    cal = build(shape)
    local_day = to_datetime(a * MINUTE).astimezone(ZoneInfo(shape[0])).date()
    # The window holds every interval reaching [a - 1 day, a + 12 days].
    ref = MinuteSetCalendar(shape, local_day - timedelta(days=3), local_day + timedelta(days=14))
    b = a + data.draw(st.integers(-60, 10 * 24 * 60))
    assert cal.between(a * MINUTE, b * MINUTE) == ref.between(a, b) * MINUTE
    horizon = a + 12 * 24 * 60
    available = ref.between(a, horizon)
    d = data.draw(st.integers(0, min(available, 3 * 24 * 60)))
    assert cal.add(a * MINUTE, d * MINUTE) == ref.add(a, d) * MINUTE
    got = set()
    for s, e in cal.open_intervals(a * MINUTE, horizon * MINUTE):
        got.update(range(s // MINUTE, e // MINUTE))
    assert got == {m for m in ref.open if a <= m < horizon}
    for m in range(a, a + 3 * 24 * 60, 13):
        assert cal.is_open(m * MINUTE) == (m in ref.open)


# --------------------------------------------------------------------------------------------
# Calendars chosen per ticket (issue 24): a ticket's clock counts each stretch of time on the
# calendar of its group or attribute then. The reference: a minute counts when it is open on
# the calendar in effect at that minute (the last change at or before it), stepped one by one.
# --------------------------------------------------------------------------------------------


class MinuteTimeline:
    def __init__(self, changes: list[tuple[int, MinuteSetCalendar]]) -> None:
        self.changes = changes  # (from minute, calendar); the first from before the window

    def open(self, m: int) -> bool:
        current = self.changes[0][1]
        for since, calendar in self.changes[1:]:
            if since <= m:
                current = calendar
        return m in current.open

    def between(self, a: int, b: int) -> int:
        return sum(1 for m in range(a, b) if self.open(m))

    def add(self, s: int, d: int) -> int:
        m = s
        while d:
            if self.open(m):
                d -= 1
            m += 1
        return m


@REFERENCE
@given(st.data())
def test_per_ticket_calendars_match_a_minute_timeline(data: st.DataObject) -> None:
    from streams.sla.ticket_calendars import TimelineClock

    a = data.draw(minute_instants) // MINUTE
    near = to_datetime(a * MINUTE).date()
    count = data.draw(st.integers(2, 4))
    shapes_drawn = [data.draw(shapes(near=near)) for _ in range(count)]
    days = (near - timedelta(days=4), near + timedelta(days=16))
    refs = [MinuteSetCalendar(shape, *days) for shape in shapes_drawn]
    offsets = sorted(
        data.draw(
            st.lists(
                st.integers(1, 6 * 24 * 60), min_size=count - 1, max_size=count - 1, unique=True
            )
        )
    )
    starts = [a - 24 * 60, *(a + offset for offset in offsets)]
    clock = TimelineClock(
        [
            (since * MINUTE, f"c{i}", build(shape))
            for i, (since, shape) in enumerate(zip(starts, shapes_drawn, strict=True))
        ]
    )
    ref = MinuteTimeline(list(zip(starts, refs, strict=True)))
    b = a + data.draw(st.integers(-60, 9 * 24 * 60))
    assert clock.between(a * MINUTE, b * MINUTE) == ref.between(a, b) * MINUTE
    available = ref.between(a, a + 10 * 24 * 60)
    d = data.draw(st.integers(0, min(available, 3 * 24 * 60)))
    assert clock.add(a * MINUTE, d * MINUTE) == ref.add(a, d) * MINUTE


@REFERENCE
@given(st.data())
def test_a_ticket_moved_between_groups_is_due_when_the_reference_says(
    data: st.DataObject,
) -> None:
    """Through the fold: the issue's `emea` (Warsaw) / `amer` (Toronto) desks, a Sev2 first
    response of 4h on the group's calendar, moves at random minutes: the breach is due when
    the naive per-minute reference has counted 4h, each minute on the group's calendar then."""
    from events.codec import ticket_event_from_obj
    from events.instants import format_instant
    from streams.sla.replay import Replayer
    from tests.clocks.policies import GROUPS, policy

    cals = {
        "emea": NaiveCalendar(
            "Europe/Warsaw", time(9), time(17), frozenset(range(5)), "PL", frozenset()
        ),
        "amer": NaiveCalendar(
            "America/Toronto", time(9), time(17), frozenset(range(5)), None, frozenset()
        ),
    }
    opened = data.draw(minute_instants)
    groups = data.draw(st.lists(st.sampled_from(["emea", "amer"]), min_size=1, max_size=4))
    gaps = data.draw(
        st.lists(st.integers(1, 2 * 24 * 60), min_size=len(groups) - 1, max_size=len(groups) - 1)
    )
    moves = [opened]
    for gap in gaps:
        moves.append(moves[-1] + gap * MINUTE)

    def body(kind: str, at: int, **fields: object) -> object:
        return ticket_event_from_obj(
            {
                "event_id": f"{kind}{at}",
                "ticket_id": "T",
                "type": f"ticket.{kind}",
                "occurred_at": format_instant(at),
                **fields,
            }
        )

    replayer = Replayer(policy(GROUPS))
    events = [body("opened", opened, severity=2, group=groups[0])]
    events += [body("assigned", at, group=g) for at, g in zip(moves[1:], groups[1:], strict=True)]
    out = []
    for item in events:
        emitted, rejected = replayer.feed(item)  # type: ignore[arg-type]
        assert rejected is None
        out += emitted
    out += replayer.advance(opened + 30 * DAY)
    due = [
        r["due_at"] for r in out if r["type"] == "sla.breached" and r["metric"] == "first_response"
    ]
    # The reference: minute by minute from the open, each on the group's calendar then.
    left, m = 4 * 60, opened
    while left:
        group = groups[0]
        for at, g in zip(moves[1:], groups[1:], strict=True):
            if at <= m:
                group = g
        if cals[group].between(m, m + MINUTE):
            left -= 1
        m += MINUTE
    assert due == [m]  # integer microseconds in the core (RFC 3339 text only at the edge)
