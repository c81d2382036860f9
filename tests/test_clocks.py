"""Business-hours clock: hand-computed SLA cases and hypothesis proofs of the clock laws.

Hand cases use the Clevr help desk (seed SLA): America/Toronto, Mon-Fri 08:00-18:30, Ontario
public holidays. The comparison against independent implementations lives in
``test_clocks_reference.py``.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.sla.clocks import (
    BusinessCalendar,
    ElapsedClock,
    Micros,
    NoBusinessTimeError,
)
from tests.calendar_shapes import build, shapes

SECOND: Micros = 1_000_000
MINUTE: Micros = 60 * SECOND
HOUR: Micros = 60 * MINUTE
DAY: Micros = 24 * HOUR
TORONTO = ZoneInfo("America/Toronto")


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, tz: str = "America/Toronto"
) -> Micros:
    """Instant of a local wall time (fold=0)."""
    moment = datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz))
    return round(moment.timestamp()) * SECOND


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> Micros:
    return round(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * SECOND


def local(instant: Micros, tz: ZoneInfo = TORONTO) -> datetime:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=instant)).astimezone(tz)


def clevr(closures: tuple[date, ...] = ()) -> BusinessCalendar:
    return BusinessCalendar(
        "America/Toronto", time(8), time(18, 30), range(5), holidays="CA-ON", closures=closures
    )


def daily(tz: str, opens: time, closes: time) -> BusinessCalendar:
    return BusinessCalendar(tz, opens, closes, range(7))


# --------------------------------------------------------------------------------------------
# Hand-computed Clevr cases
# --------------------------------------------------------------------------------------------


def test_day_length_is_open_to_close() -> None:
    assert clevr().day_length == 10 * HOUR + 30 * MINUTE


def test_sev2_friday_evening_four_hours_lands_monday_1030() -> None:
    due = clevr().add(at(2026, 11, 27, 17), 4 * HOUR)
    assert due == at(2026, 11, 30, 10, 30)
    assert local(due).isoformat() == "2026-11-30T10:30:00-05:00"


def test_one_business_day_from_wednesday_noon_is_thursday_noon() -> None:
    cal = clevr()
    assert cal.add(at(2026, 11, 25, 12), cal.day_length) == at(2026, 11, 26, 12)


def test_saturday_report_counts_from_monday_0800() -> None:
    cal = clevr()
    saturday = at(2026, 11, 28, 10)
    assert cal.add(saturday, HOUR) == at(2026, 11, 30, 9)
    assert cal.between(saturday, at(2026, 11, 30, 8)) == 0
    assert cal.between(saturday, at(2026, 11, 30, 8, 30)) == 30 * MINUTE
    assert cal.add(saturday, 1) == at(2026, 11, 30, 8) + 1


def test_reported_before_opening_and_after_closing() -> None:
    cal = clevr()
    assert cal.add(at(2026, 11, 24, 6), HOUR) == at(2026, 11, 24, 9)
    assert cal.add(at(2026, 11, 24, 19), HOUR) == at(2026, 11, 25, 9)
    assert cal.between(at(2026, 11, 24, 6), at(2026, 11, 24, 7, 59)) == 0
    assert cal.between(at(2026, 11, 24, 18, 30), at(2026, 11, 25, 8)) == 0


def test_target_ending_at_closing_time_is_due_at_closing() -> None:
    """Half-open days: the due instant is 18:30 itself, and the next add continues Monday."""
    cal = clevr()
    due = cal.add(at(2026, 11, 27, 17), 90 * MINUTE)
    assert due == at(2026, 11, 27, 18, 30)
    assert not cal.is_open(due)
    assert cal.is_open(due - 1)
    assert cal.add(due, HOUR) == at(2026, 11, 30, 9)
    assert cal.add(due, 1) == at(2026, 11, 30, 8) + 1


def test_is_open_at_edges() -> None:
    cal = clevr()
    assert cal.is_open(at(2026, 11, 24, 8))
    assert not cal.is_open(at(2026, 11, 24, 8) - 1)
    assert cal.is_open(at(2026, 11, 24, 18, 30) - 1)
    assert not cal.is_open(at(2026, 11, 24, 18, 30))
    assert not cal.is_open(at(2026, 11, 28, 12))  # Saturday


def test_closure_date_is_skipped() -> None:
    cal = clevr(closures=(date(2026, 11, 30),))
    assert cal.add(at(2026, 11, 27, 17), 4 * HOUR) == at(2026, 12, 1, 10, 30)
    assert not cal.is_open(at(2026, 11, 30, 12))
    assert not cal.is_business_day(date(2026, 11, 30))


def test_good_friday_is_closed() -> None:
    cal = clevr()
    assert not cal.is_open(at(2026, 4, 3, 12))
    # Thursday 17:00 + 4h: 1h30 Thursday, Good Friday and the weekend closed, Monday 10:30.
    assert cal.add(at(2026, 4, 2, 17), 4 * HOUR) == at(2026, 4, 6, 10, 30)
    assert cal.between(at(2026, 4, 2, 18, 30), at(2026, 4, 6, 8)) == 0


def test_christmas_and_boxing_day_sequence() -> None:
    cal = clevr()
    # 2026: Christmas Fri 25, Boxing Day Sat 26 observed Mon 28 -> Tuesday 29.
    assert cal.add(at(2026, 12, 24, 17), 4 * HOUR) == at(2026, 12, 29, 10, 30)
    # 2027: Christmas Sat, Boxing Sun, both observed Mon 27 and Tue 28 -> Wednesday 29.
    assert cal.add(at(2027, 12, 24, 17), 4 * HOUR) == at(2027, 12, 29, 10, 30)


@pytest.mark.parametrize(
    ("day", "open_"),
    [
        (date(2026, 1, 1), False),  # New Year's Day
        (date(2026, 2, 16), False),  # Family Day
        (date(2026, 4, 3), False),  # Good Friday
        (date(2026, 4, 6), True),  # Easter Monday: not an Ontario public holiday
        (date(2026, 5, 18), False),  # Victoria Day
        (date(2026, 7, 1), False),  # Canada Day
        (date(2026, 8, 3), True),  # Civic Holiday: not a statutory holiday per the package
        (date(2026, 9, 7), False),  # Labour Day
        (date(2026, 10, 12), False),  # Thanksgiving
        (date(2026, 12, 25), False),  # Christmas
        (date(2026, 12, 28), False),  # Boxing Day (observed)
        (date(2026, 11, 27), True),  # an ordinary Friday
        (date(2026, 11, 28), False),  # Saturday
    ],
)
def test_ontario_holidays_2026(day: date, open_: bool) -> None:
    cal = clevr()
    assert cal.is_business_day(day) is open_
    noon = at(day.year, day.month, day.day, 12)
    assert cal.is_open(noon) is open_


def test_country_only_holiday_spec() -> None:
    cal = BusinessCalendar("America/New_York", time(9), time(17), range(5), holidays="US")
    assert not cal.is_open(at(2026, 7, 3, 12, tz="America/New_York"))  # Jul 4 observed
    assert cal.is_open(at(2026, 7, 2, 12, tz="America/New_York"))


def test_spring_forward_weekend_four_hours() -> None:
    """Friday is UTC-5, Monday UTC-4: due 10:30 local = 14:30Z, not 15:30Z."""
    start = at(2026, 3, 6, 17)
    assert start == utc(2026, 3, 6, 22)
    due = clevr().add(start, 4 * HOUR)
    assert due == utc(2026, 3, 9, 14, 30)
    assert local(due).isoformat() == "2026-03-09T10:30:00-04:00"


def test_fall_back_weekend_four_hours() -> None:
    start = at(2026, 10, 30, 17)
    assert start == utc(2026, 10, 30, 21)
    due = clevr().add(start, 4 * HOUR)
    assert due == utc(2026, 11, 2, 15, 30)


def test_long_spans_cross_years() -> None:
    cal = clevr()
    start = at(2026, 6, 1, 9)
    end = at(2029, 6, 1, 9)
    total = cal.between(start, end)
    middle = at(2027, 12, 31, 23)
    assert total == cal.between(start, middle) + cal.between(middle, end)
    assert cal.add(start, total) == end  # Friday 09:00: open just before, so exact
    sunday = at(2029, 6, 3, 12)
    assert cal.add(start, cal.between(start, sunday)) == at(2029, 6, 1, 18, 30)  # Friday close


def test_microsecond_precision() -> None:
    cal = clevr()
    opening = at(2026, 11, 24, 8)
    assert cal.add(opening, 1) == opening + 1
    assert cal.between(opening - 5, opening + 7) == 7
    assert cal.add(opening - 123, 1) == opening + 1


# --------------------------------------------------------------------------------------------
# DST edges: 7-day calendars whose hours straddle the 02:00 transition
# --------------------------------------------------------------------------------------------


def day_total(cal: BusinessCalendar, tz: str, d: date) -> Micros:
    return cal.between(at(d.year, d.month, d.day, tz=tz), at(d.year, d.month, d.day, 23, 59, tz=tz))


@pytest.mark.parametrize(
    ("opens", "closes", "spring", "normal", "fall"),
    [
        (time(0), time(6), 5 * HOUR, 6 * HOUR, 7 * HOUR),
        (time(1), time(4), 2 * HOUR, 3 * HOUR, 4 * HOUR),
        (time(1, 30), time(3, 30), 1 * HOUR, 2 * HOUR, 3 * HOUR),
    ],
)
def test_toronto_dst_days_are_shorter_and_longer(
    opens: time, closes: time, spring: Micros, normal: Micros, fall: Micros
) -> None:
    cal = daily("America/Toronto", opens, closes)
    tz = "America/Toronto"
    assert day_total(cal, tz, date(2026, 3, 8)) == spring
    assert day_total(cal, tz, date(2026, 3, 7)) == normal
    assert day_total(cal, tz, date(2026, 11, 1)) == fall
    assert day_total(cal, tz, date(2026, 11, 2)) == normal


def test_wall_time_in_spring_gap_shifts_forward_to_transition() -> None:
    """02:30 does not exist on 2026-03-08: opening and closing both happen at 03:00 EDT."""
    transition = utc(2026, 3, 8, 7)  # 02:00 EST -> 03:00 EDT
    opens_in_gap = daily("America/Toronto", time(2, 30), time(5))
    assert list(opens_in_gap.open_intervals(utc(2026, 3, 8), utc(2026, 3, 9))) == [
        (transition, utc(2026, 3, 8, 9))  # 03:00 EDT .. 05:00 EDT
    ]
    closes_in_gap = daily("America/Toronto", time(1), time(2, 30))
    assert list(closes_in_gap.open_intervals(utc(2026, 3, 8), utc(2026, 3, 9))) == [
        (utc(2026, 3, 8, 6), transition)  # 01:00 EST .. 03:00 EDT
    ]
    inside_gap = daily("America/Toronto", time(2, 10), time(2, 50))
    assert list(inside_gap.open_intervals(utc(2026, 3, 7), utc(2026, 3, 9, 12))) == [
        (utc(2026, 3, 8, 7, 10) - DAY, utc(2026, 3, 8, 7, 50) - DAY),  # Saturday, EST
        (utc(2026, 3, 9, 6, 10), utc(2026, 3, 9, 6, 50)),  # Monday, EDT; Sunday closed
    ]


def test_wall_time_in_fall_fold_uses_first_occurrence() -> None:
    """01:30 happens twice on 2026-11-01; both opening and closing use the EDT one."""
    first_0130 = utc(2026, 11, 1, 5, 30)
    closes_in_fold = daily("America/Toronto", time(0), time(1, 30))
    assert list(closes_in_fold.open_intervals(utc(2026, 11, 1), utc(2026, 11, 2))) == [
        (utc(2026, 11, 1, 4), first_0130)
    ]
    assert not closes_in_fold.is_open(first_0130 + HOUR)  # the second 01:30..., closed
    opens_in_fold = daily("America/Toronto", time(1, 30), time(3))
    assert list(opens_in_fold.open_intervals(utc(2026, 11, 1), utc(2026, 11, 2))) == [
        (first_0130, utc(2026, 11, 1, 8))  # 01:30 EDT .. 03:00 EST = 2h30
    ]


def test_lord_howe_half_hour_dst() -> None:
    tz = "Australia/Lord_Howe"
    cal = daily(tz, time(0), time(6))
    assert day_total(cal, tz, date(2026, 4, 5)) == 6 * HOUR + 30 * MINUTE  # fall back 30 min
    assert day_total(cal, tz, date(2026, 10, 4)) == 5 * HOUR + 30 * MINUTE  # spring forward
    assert day_total(cal, tz, date(2026, 6, 1)) == 6 * HOUR


def test_london_week_across_spring_forward() -> None:
    cal = BusinessCalendar("Europe/London", time(9), time(17), range(5), holidays="GB-ENG")
    # Friday 2026-03-27 16:00 GMT + 2h -> Monday 30th 10:00 BST = 09:00Z.
    assert cal.add(at(2026, 3, 27, 16, tz="Europe/London"), 2 * HOUR) == utc(2026, 3, 30, 9)


# --------------------------------------------------------------------------------------------
# Elapsed clock, protocol, validation, guards
# --------------------------------------------------------------------------------------------


def test_elapsed_clock() -> None:
    clock = ElapsedClock()
    assert clock.add(10, 5) == 15
    assert clock.add(10, 0) == 10
    assert clock.between(10, 15) == 5
    assert clock.between(15, 10) == 0
    assert clock.between(7, 7) == 0
    assert clock.is_open(123)
    saturday = at(2026, 11, 28, 10)
    assert clock.add(saturday, HOUR) == saturday + HOUR


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"opens": time(18), "closes": time(8)}, "before"),
        ({"opens": time(8), "closes": time(8)}, "before"),
        ({"weekdays": []}, "weekday"),
        ({"weekdays": [0, 7]}, "weekdays"),
        ({"timezone": "Mars/Olympus_Mons"}, "Mars/Olympus_Mons"),
        ({"holidays": "XX"}, "'XX'"),
        ({"holidays": "CA-ZZ"}, "'CA-ZZ'"),
        ({"holidays": ""}, "''"),
        ({"opens": time(8, tzinfo=UTC)}, "naive"),
        ({"closures": [datetime(2026, 11, 30)]}, "datetime.date"),
    ],
)
def test_invalid_calendars_raise_value_error(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "timezone": "America/Toronto",
        "opens": time(8),
        "closes": time(18, 30),
        "weekdays": range(5),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        BusinessCalendar(**args)  # type: ignore[arg-type]


def test_negative_duration_raises() -> None:
    with pytest.raises(ValueError, match="negative"):
        clevr().add(at(2026, 11, 24, 9), -1)


def test_years_of_closures_raise_instead_of_looping() -> None:
    first = date(2027, 1, 1)
    closed = tuple(first + timedelta(days=i) for i in range(3 * 366))
    cal = clevr(closures=closed)
    with pytest.raises(NoBusinessTimeError, match="no business time"):
        cal.add(at(2026, 12, 31, 17), 4 * HOUR)
    # A shorter shutdown (~1.5 years) is fine: counting resumes afterwards.
    short = clevr(closures=tuple(first + timedelta(days=i) for i in range(540)))
    due = short.add(at(2026, 12, 31, 18), HOUR)
    assert local(due).date() == first + timedelta(days=540 + 2)  # 2028-06-24 is a Saturday
    assert short.between(at(2026, 12, 31, 18), due) == HOUR


# --------------------------------------------------------------------------------------------
# Hypothesis: the laws, on random calendars and instants (incl. DST transitions)
# --------------------------------------------------------------------------------------------

TIMEZONES = ["America/Toronto", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
HOLIDAY_SPECS = [None, None, "CA-ON", "GB-ENG", "AU-NSW", "US"]
LO = utc(2025, 1, 1)
HI = utc(2028, 12, 31)


@functools.cache
def transitions(tz_name: str) -> tuple[Micros, ...]:
    """UTC instants where the zone's offset changes between LO and HI (hourly scan + bisect)."""
    tz = ZoneInfo(tz_name)

    def offset(t: Micros) -> timedelta | None:
        return local(t, tz).utcoffset()

    found = []
    t = LO
    while t < HI:
        if offset(t) != offset(t + HOUR):
            lo, hi = t, t + HOUR
            while hi - lo > SECOND:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if offset(mid) != offset(lo) else (mid, hi)
            found.append(hi)
        t += HOUR
    return tuple(found)


@functools.cache
def calendar(
    tz: str,
    opens: time,
    closes: time,
    weekdays: frozenset[int],
    holidays: str | None,
    closures: frozenset[date],
) -> BusinessCalendar:
    """Cached so hypothesis's shrinking does not rebuild the year tables over and over."""
    return BusinessCalendar(tz, opens, closes, weekdays, holidays, closures)


minute_of_day = st.integers(0, 24 * 60 - 1)
around_two_am = st.integers(0, 4 * 60)  # straddles the 01:00-03:00 DST transitions


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    if draw(st.booleans()):  # the week shapes: several intervals, night shifts, closures, ...
        return build(draw(shapes()))
    tz = draw(st.sampled_from(TIMEZONES))
    pair = st.one_of(
        st.tuples(minute_of_day, minute_of_day), st.tuples(around_two_am, around_two_am)
    )
    a, b = draw(pair.filter(lambda p: p[0] != p[1]))
    lo_min, hi_min = sorted((a, b))
    opens = time(lo_min // 60, lo_min % 60)
    closes = time(hi_min // 60, hi_min % 60)
    weekdays = frozenset(draw(st.sets(st.integers(0, 6), min_size=1)))
    holidays = draw(st.sampled_from(HOLIDAY_SPECS))
    closures = frozenset(
        draw(st.lists(st.dates(date(2025, 1, 1), date(2028, 12, 31)), max_size=30))
    )
    return calendar(tz, opens, closes, weekdays, holidays, closures)


@st.composite
def instants(draw: st.DrawFn, cal: BusinessCalendar) -> Micros:
    """Uniform, near a DST transition, or on/next to an opening or closing instant."""
    kind = draw(st.sampled_from(["uniform", "transition", "edge", "edge"]))
    base = draw(st.integers(LO, HI - 60 * DAY))
    if kind == "transition" and transitions(cal.timezone):
        t = draw(st.sampled_from(transitions(cal.timezone)))
        return t + draw(st.integers(-3 * DAY, 3 * DAY))
    if kind in ("transition", "edge"):
        first = next(cal.open_intervals(base, base + 60 * DAY), None)
        if first is not None:
            edge = draw(st.sampled_from(first))
            return edge + draw(st.sampled_from([0, 0, 1, -1, MINUTE, -MINUTE]))
    return base


def durations(cal: BusinessCalendar) -> st.SearchStrategy[Micros]:
    """Up to a few business days mostly, sometimes ~100; always a bounded calendar span."""
    return st.one_of(
        st.integers(0, 5 * cal.day_length),
        st.sampled_from([0, 1, MINUTE, cal.day_length, 2 * cal.day_length]),
        st.integers(0, 100 * cal.day_length),
    )


LAWS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@LAWS
@given(st.data())
def test_law_between_is_nonnegative_bounded_and_zero_when_reversed(data: st.DataObject) -> None:
    cal = data.draw(calendars())
    a = data.draw(instants(cal))
    b = data.draw(instants(cal))
    assert 0 <= cal.between(a, b) <= max(0, b - a)
    if b <= a:
        assert cal.between(a, b) == 0


@LAWS
@given(st.data())
def test_law_between_is_additive(data: st.DataObject) -> None:
    cal = data.draw(calendars())
    a, b, c = sorted(data.draw(instants(cal)) for _ in range(3))
    assert cal.between(a, b) + cal.between(b, c) == cal.between(a, c)


@LAWS
@given(st.data())
def test_law_between_counts_open_intervals(data: st.DataObject) -> None:
    cal = data.draw(calendars())
    a = data.draw(instants(cal))
    b = a + data.draw(st.integers(0, 30 * DAY))
    intervals = list(cal.open_intervals(a, b))
    assert cal.between(a, b) == sum(end - start for start, end in intervals)
    previous_end = a
    for start, end in intervals:
        assert previous_end <= start < end <= b
        assert cal.is_open(start) and cal.is_open(end - 1)
        assert start == a or not cal.is_open(start - 1)
        assert end == b or not cal.is_open(end)
        previous_end = end


@LAWS
@given(st.data())
def test_law_is_open_matches_one_microsecond_of_between(data: st.DataObject) -> None:
    cal = data.draw(calendars())
    t = data.draw(instants(cal))
    assert cal.is_open(t) == (cal.between(t, t + 1) == 1)


@LAWS
@given(st.data())
def test_law_add_is_earliest_instant_reaching_duration(data: st.DataObject) -> None:
    cal = data.draw(calendars())
    d = data.draw(durations(cal))
    s = data.draw(instants(cal))
    u = cal.add(s, d)
    if d == 0:
        assert u == s
        return
    assert u > s
    assert cal.between(s, u) == d
    assert cal.between(s, u - 1) == d - 1  # so no earlier instant reaches d
    assert cal.is_open(u - 1)  # never lands strictly inside a closed period


@LAWS
@given(st.data())
def test_law_add_is_monotonic(data: st.DataObject) -> None:
    cal = data.draw(calendars())
    d1, d2 = data.draw(durations(cal)), data.draw(durations(cal))
    s1, s2 = sorted((data.draw(instants(cal)), data.draw(instants(cal))))
    assert cal.add(s1, d1) <= cal.add(s2, d1)
    lo, hi = sorted((d1, d2))
    assert cal.add(s1, lo) <= cal.add(s1, hi)


@LAWS
@given(st.data())
def test_law_add_composes(data: st.DataObject) -> None:
    cal = data.draw(calendars())
    d1, d2 = data.draw(durations(cal)), data.draw(durations(cal))
    s = data.draw(instants(cal))
    assert cal.add(cal.add(s, d1), d2) == cal.add(s, d1 + d2)


@LAWS
@given(st.data())
def test_law_add_of_between_returns_at_most_the_end(data: st.DataObject) -> None:
    """Galois connection: add(s, between(s, t)) <= t, with equality when t-1 is open."""
    cal = data.draw(calendars())
    s, t = sorted((data.draw(instants(cal)), data.draw(instants(cal))))
    u = cal.add(s, cal.between(s, t))
    assert u <= t
    if t > s and cal.is_open(t - 1):
        assert u == t
