"""Named business calendars in a policy file: weekly hours with several intervals, night shifts,
24:00 and 24x7, holidays with categories, whole-day and partial closures, extra openings,
iCalendar closures. Hand-computed values (the three inputs of issue #8 among them); the laws
and the comparison with an independent implementation are in test_clocks*.py.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from events.instants import HOUR, MINUTE, Micros, format_instant, parse_instant
from streams.sla.clocks import DAY, BusinessCalendar
from streams.sla.policy import PolicyError, check_policy, load_policy, parse_policy
from streams.sla.rules import Policy

ALL_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def policy_with(calendar_toml: str, head: str = "") -> Policy:
    text = (
        f'name = "t"\n{head}\n{calendar_toml}\n[severity.1]\nfirst_response = {{ target = "1h" }}\n'
    )
    return parse_policy(text, "t.toml")


def calendar(body: str) -> BusinessCalendar:
    return policy_with(f'[calendars.c]\ntimezone = "America/Toronto"\n{body}').calendar


def due(cal: BusinessCalendar, start: str, amount: Micros) -> str:
    return format_instant(cal.add(parse_instant(start), amount))


def week(interval: str, days: tuple[str, ...] = ALL_DAYS) -> str:
    return "hours = { " + ", ".join(f'{day} = ["{interval}"]' for day in days) + " }"


# -- the inputs ------------------------------------------------------------------------


@pytest.mark.parametrize("hours", ['hours = "24x7"', week("00:00-24:00")])
def test_24x7_with_ontario_holidays_skips_canada_day(hours: str) -> None:
    """2h before midnight, Canada Day closed, 2h on 2 July (issue #8)."""
    cal = calendar(f'{hours}\nholidays = "CA-ON"')
    assert due(cal, "2027-06-30T22:00:00-04:00", 4 * HOUR) == "2027-07-02T06:00:00Z"
    assert cal.day_length == DAY


def test_lunch_break_is_two_intervals() -> None:
    """Mon-Fri 09:00-12:00 and 13:00-17:00: 1h before lunch, 2h after (issue #8)."""
    days = ALL_DAYS[:5]
    cal = calendar(
        "hours = { " + ", ".join(f'{d} = ["09:00-12:00", "13:00-17:00"]' for d in days) + " }"
    )
    assert due(cal, "2026-11-30T11:00:00-05:00", 3 * HOUR) == "2026-11-30T20:00:00Z"
    assert cal.day_length == 7 * HOUR
    assert not cal.is_open(parse_instant("2026-11-30T12:30:00-05:00"))


def test_night_shift_belongs_to_the_day_it_starts() -> None:
    """Tue-Sat 23:00-07:00: from Tuesday 22:00, 4h30 ends Wednesday 03:30 local (issue #8)."""
    cal = calendar(week("23:00-07:00", ("tue", "wed", "thu", "fri", "sat")))
    assert due(cal, "2026-12-01T22:00:00-05:00", 4 * HOUR + 30 * MINUTE) == "2026-12-02T08:30:00Z"
    # Monday night is closed (no Monday shift), Sunday 00:00-07:00 is Saturday's shift.
    assert not cal.is_open(parse_instant("2026-12-01T03:00:00-05:00"))
    assert cal.is_open(parse_instant("2026-12-06T06:59:59-05:00"))
    assert not cal.is_open(parse_instant("2026-12-06T07:00:00-05:00"))
    assert cal.day_length == 8 * HOUR


# -- shapes ------------------------------------------------------------------------------------


def test_legacy_calendar_table_equals_the_same_week_of_hours() -> None:
    legacy = policy_with(
        '[calendar]\ntimezone = "America/Toronto"\nopen = "08:00"\nclose = "18:30"\n'
        'weekdays = ["mon", "tue", "wed", "thu", "fri"]\nholidays = "CA-ON"'
    ).calendar
    named = calendar(week("08:00-18:30", ALL_DAYS[:5]) + '\nholidays = "CA-ON"')
    start = parse_instant("2026-11-20T00:00:00Z")
    end = start + 60 * DAY
    assert list(legacy.open_intervals(start, end)) == list(named.open_intervals(start, end))
    assert legacy.day_length == named.day_length == 10 * HOUR + 30 * MINUTE


def test_close_at_2400_is_the_next_midnight_without_a_lost_minute() -> None:
    cal = calendar(week("18:00-24:00"))
    # 6h each evening: from Monday 18:00, 12h ends Tuesday 24:00 == Wednesday 00:00 local.
    assert due(cal, "2026-11-30T18:00:00-05:00", 12 * HOUR) == "2026-12-02T05:00:00Z"


def test_night_shift_across_both_dst_changes_counts_real_hours() -> None:
    cal = calendar(week("22:00-06:00", ("sat",)))
    # Saturday 7 March 2027 22:00 EST to Sunday 06:00 EDT is 7 real hours (spring forward).
    assert (
        cal.between(
            parse_instant("2027-03-13T20:00:00-05:00"), parse_instant("2027-03-14T12:00:00-04:00")
        )
        == 7 * HOUR
    )
    # Saturday 31 October 2026 22:00 EDT to Sunday 06:00 EST is 9 real hours (fall back).
    assert (
        cal.between(
            parse_instant("2026-10-31T20:00:00-04:00"), parse_instant("2026-11-01T12:00:00-05:00")
        )
        == 9 * HOUR
    )
    assert due(cal, "2026-10-31T22:00:00-04:00", 9 * HOUR) == "2026-11-01T11:00:00Z"


def test_partial_closure_from_noon_on_christmas_eve() -> None:
    cal = calendar(
        week("09:00-17:00", ALL_DAYS[:5])
        + '\nclosures = [2026-12-25, { date = 2026-12-24, from = "12:00" }]'
    )
    # Thursday 24 Dec 11:00 + 2h: 1h until noon, closed Friday 25th, 1h on Monday 28th.
    assert due(cal, "2026-12-24T11:00:00-05:00", 2 * HOUR) == "2026-12-28T15:00:00Z"
    assert cal.is_open(parse_instant("2026-12-24T11:59:59-05:00"))


def test_extra_opening_day_works_a_saturday_and_a_holiday() -> None:
    cal = calendar(
        week("09:00-17:00", ALL_DAYS[:5])
        + '\nholidays = "CA-ON"\nopenings = [{ date = 2026-12-19, hours = ["10:00-14:00"] },'
        ' { date = 2026-12-28, hours = ["09:00-13:00"] }]'
    )
    # Friday 18 Dec 16:00 + 3h: 1h Friday, 2h on the worked Saturday from 10:00.
    assert due(cal, "2026-12-18T16:00:00-05:00", 3 * HOUR) == "2026-12-19T17:00:00Z"
    # Boxing Day observed (Mon 28 Dec) opens 09:00-13:00 instead of being closed.
    assert cal.is_open(parse_instant("2026-12-28T12:00:00-05:00"))
    assert not cal.is_open(parse_instant("2026-12-28T14:00:00-05:00"))
    assert not cal.is_open(parse_instant("2026-12-25T12:00:00-05:00"))  # Christmas stays closed


def test_holiday_categories_add_optional_holidays() -> None:
    public = calendar(week("09:00-17:00", ALL_DAYS[:5]) + '\nholidays = "CA-ON"')
    optional = calendar(
        week("09:00-17:00", ALL_DAYS[:5]) + '\nholidays = { country = "CA", subdivision = "ON",'
        ' categories = ["public", "optional"] }'
    )
    # Civic Holiday (first Monday of August) is optional in Ontario: open unless asked for.
    assert public.is_business_day(date(2027, 8, 2))
    assert not optional.is_business_day(date(2027, 8, 2))
    assert not optional.is_business_day(date(2027, 7, 1))


ICS = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//test//EN\r
BEGIN:VEVENT\r
UID:shutdown\r
DTSTART;VALUE=DATE:20261228\r
DTEND;VALUE=DATE:20261230\r
SUMMARY:Year-end shutdown\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:offsite\r
DTSTART;TZID=America/Toronto:20261230T130000\r
DTEND;TZID=America/Toronto:20261230T150000\r
SUMMARY:Team offsite\r
END:VEVENT\r
END:VCALENDAR\r
"""


def ical_calendar(folder: Path, ics: bytes, zone: str = "America/Toronto") -> BusinessCalendar:
    """Mon-Fri 09:00-17:00 in ``zone`` with the iCalendar file ``ics`` beside the policy."""
    (folder / "closed.ics").write_bytes(ics)
    policy_file = folder / "p.toml"
    policy_file.write_text(
        f'name = "t"\n[calendars.office]\ntimezone = "{zone}"\n'
        + week("09:00-17:00", ALL_DAYS[:5])
        + '\nical = "closed.ics"\n[severity.1]\nfirst_response = { target = "1h" }\n'
    )
    return load_policy(policy_file).calendar


def test_ical_all_day_and_timed_events_close(tmp_path: Path) -> None:
    cal = ical_calendar(tmp_path, ICS)
    # Friday 25 Dec 16:00: 1h Friday; 28-29 Dec closed; Wed 30th 4h 09:00-13:00, 1h from 15:00.
    assert due(cal, "2026-12-25T16:00:00-05:00", 6 * HOUR) == "2026-12-30T21:00:00Z"
    assert not cal.is_open(parse_instant("2026-12-30T14:00:00-05:00"))


RECURRING = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//test//EN\r
BEGIN:VEVENT\r
UID:founders\r
DTSTART;VALUE=DATE:20250303\r
RRULE:FREQ=YEARLY\r
SUMMARY:Founders' day\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:fridays\r
DTSTART;TZID=America/Toronto:20261106T130000\r
DTEND;TZID=America/Toronto:20261106T170000\r
RRULE:FREQ=WEEKLY;BYDAY=FR\r
EXDATE;TZID=America/Toronto:20261204T130000\r
SUMMARY:Friday afternoons off\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:fridays\r
RECURRENCE-ID;TZID=America/Toronto:20261211T130000\r
DTSTART;TZID=America/Toronto:20261210T130000\r
DTEND;TZID=America/Toronto:20261210T170000\r
SUMMARY:Moved to Thursday\r
END:VEVENT\r
END:VCALENDAR\r
"""


def test_ical_recurring_events_close_each_occurrence(tmp_path: Path) -> None:
    """RRULE, EXDATE and a moved occurrence (RECURRENCE-ID), as calendar exports have them."""
    cal = ical_calendar(tmp_path, RECURRING)
    # Yearly from 2025: Wed 3 March 2027 closed. Tue 2 Mar 16:00 + 3h: 1h Tuesday, Wednesday
    # closed, 2h Thursday from 09:00 -> 11:00 EST = 16:00Z.
    assert due(cal, "2027-03-02T16:00:00-05:00", 3 * HOUR) == "2027-03-04T16:00:00Z"
    # Weekly Friday 13:00-17:00 closed: Fri 27 Nov 12:00 + 2h: 1h to 13:00, 1h Monday 30 Nov
    # from 09:00 -> 10:00 EST = 15:00Z.
    assert due(cal, "2026-11-27T12:00:00-05:00", 2 * HOUR) == "2026-11-30T15:00:00Z"
    assert cal.is_open(parse_instant("2026-12-04T14:00:00-05:00"))  # EXDATE: worked
    assert cal.is_open(parse_instant("2026-12-11T14:00:00-05:00"))  # moved to Thursday ...
    assert not cal.is_open(parse_instant("2026-12-10T14:00:00-05:00"))  # ... which closes
    assert not cal.is_open(parse_instant("2099-12-25T14:00:00-05:00"))  # a Friday, far on


def test_default_calendar_is_named_or_the_only_one() -> None:
    two = (
        '[calendars.a]\ntimezone = "UTC"\nhours = "24x7"\n'
        f'[calendars.b]\ntimezone = "Europe/Warsaw"\n{week("08:00-16:00")}'
    )
    policy = policy_with(two, head='calendar = "b"')
    assert policy.calendar.timezone == "Europe/Warsaw"
    assert set(policy.calendars) == {"a", "b"}
    with pytest.raises(PolicyError, match="calendar = NAME"):
        policy_with(two)
    with pytest.raises(PolicyError, match="'c' is not among"):
        policy_with(two, head='calendar = "c"')


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('hours = { mon = ["09:00"] }', "hours: Value error, mon: invalid hours '09:00'"),
        ('hours = { mon = ["24:00-02:00"] }', "24:00 can only close"),
        ('hours = { mon = ["09:00-09:60"] }', "invalid time '09:60'"),
        ('hours = { funday = ["09:00-10:00"] }', "hours.funday.[key]: Input should be 'mon'"),
        ('hours = "24x5"', "hours: Value error, '24x5': use \"24x7\""),
        ('hours = "24x7"\nopen = "08:00"', "not both"),
        ("closures = [{ date = 2026-12-24, from = 12 }]", "closures.0"),
        ("hours = {}", "open hours on at least one weekday"),
    ],
)
def test_bad_calendars_name_the_key(body: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        calendar(body)
    assert "calendars.c" in str(caught.value)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("zone", "fixed"),
    [
        ("EST", True),
        ("UTC-5", True),
        ("Etc/GMT+5", True),
        ("EST5EDT", True),
        ("America/Toronto", False),
        ("UTC", False),
        ("Asia/Kolkata", False),
        # found trying #8: places' old all-caps names are places, and UTC by any name is UTC
        ("GB", False),
        ("NZ", False),
        ("PRC", False),
        ("UCT", False),
        ("Etc/Zulu", False),
        ("GMT0", False),
        ("MST", True),
        ("CET", True),
        ("UTC+3", True),
        ("Etc/GMT-14", True),
    ],
)
def test_fixed_offset_zones_are_accepted_with_a_warning(zone: str, fixed: bool) -> None:
    policy = policy_with(f'[calendars.c]\ntimezone = "{zone}"\nhours = "24x7"')
    warned = [w for w in check_policy(policy) if "daylight saving" in w]
    assert bool(warned) == fixed
    if fixed:
        assert warned[0].startswith(f"calendars.c.timezone: '{zone}'")


def test_utc_minus_5_is_five_hours_behind_all_year() -> None:
    cal = calendar('hours = { mon = ["09:00-17:00"] }').__class__(
        "UTC-5", week=[[(9 * HOUR, 17 * HOUR)], [], [], [], [], [], []]
    )
    # Monday 29 June 2026 (summer: Toronto would be UTC-4) opens 14:00Z.
    assert due(cal, "2026-06-29T00:00:00Z", HOUR) == "2026-06-29T15:00:00Z"


def test_whole_elapsed_days_on_a_business_clock_warn_even_when_the_day_divides_them() -> None:
    policy = parse_policy(
        'name = "t"\n[calendars.c]\ntimezone = "UTC"\n'
        + week("09:00-17:00", ALL_DAYS[:5])
        + '\n[severity.1]\nfirst_response = { target = "24h" }\n'
        'resolution = { target = "3bd" }\n',
        "t.toml",
    )
    # 24h is exactly 3 business days of 8h: still probably meant as one elapsed day.
    assert check_policy(policy) == [
        "severity.1.first_response: '24h' of business time is 3.00 business days; did you mean "
        "business days ('bd')?",
        "severity.2: not defined; tickets of severity 2 are rejected",
        "severity.3: not defined; tickets of severity 3 are rejected",
        "severity.4: not defined; tickets of severity 4 are rejected",
    ]


def test_overlapping_intervals_warn_and_count_once() -> None:
    policy = policy_with(
        '[calendars.c]\ntimezone = "UTC"\n'
        'hours = { mon = ["09:00-13:00", "12:00-17:00", "22:00-10:00"], tue = ["08:00-12:00"] }'
    )
    warnings = check_policy(policy)
    assert "calendars.c.hours.mon: intervals overlap (counted once)" in warnings
    assert (
        "calendars.c.hours.tue: the previous day's hours run past its opening (counted once)"
        in warnings
    )
    # Monday 09:00-17:00 and 22:00 to Tuesday 12:00: 8h + 14h.
    cal = policy.calendar
    start = parse_instant("2026-11-30T00:00:00Z")
    assert cal.between(start, start + 2 * DAY) == 22 * HOUR


# -- found trying the issue as a new user (helper "tryout") ---------------------------------------

FLOATING_ICS = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//tryout//EN\r
BEGIN:VEVENT\r
UID:drill\r
DTSTART:20270607T100000\r
DURATION:PT1H30M\r
SUMMARY:Fire drill\r
END:VEVENT\r
END:VCALENDAR\r
"""


def test_ical_on_a_fixed_offset_zone_reads_floating_times_at_that_offset(tmp_path: Path) -> None:
    """A fixed-offset zone (accepted with a warning) works with an iCalendar file too: the
    file's floating times are read at that offset (it used to fail: 'No time zone found')."""
    cal = ical_calendar(tmp_path, FLOATING_ICS, "UTC-5")
    # Monday 7 June 2027 09:00 at UTC-5 (14:00Z, summer, no DST): 1h to 10:00, closed until
    # 11:30, 2h more: 13:30 at UTC-5 = 18:30Z (Toronto time would give 17:30Z).
    assert due(cal, "2027-06-07T09:00:00-05:00", 3 * HOUR) == "2027-06-07T18:30:00Z"


@pytest.mark.parametrize(
    ("closure", "message"),
    [
        ('{ date = 2026-12-24, from = "24:00" }', "calendars.c.closures.0.from: "),
        ('{ date = 2026-12-24, from = "12:60" }', "calendars.c.closures.0.from: "),
        ('{ date = 2026-12-24, to = "9am" }', "calendars.c.closures.0.to: "),
        (
            '{ date = 2026-12-24, from = "14:00", to = "12:00" }',
            "calendars.c.closures.0: Value error, 'to' (12:00) must be after 'from' (14:00)",
        ),
        (
            '{ date = 2026-12-24, from = "12:00", to = "12:00" }',
            "calendars.c.closures.0: Value error, 'to' (12:00) must be after 'from' (12:00)",
        ),
    ],
)
def test_bad_partial_closures_name_the_closure_and_its_key(closure: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        calendar(f"{week('09:00-17:00')}\nclosures = [2026-12-28, {closure}]")
    assert message.replace(".0", ".1") in str(caught.value)
    assert "000000" not in str(caught.value)  # no raw microseconds


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.ics", None, "cannot read"),
        ("closures.ics", b"name = 'not ical'\n", "not an iCalendar file"),
        (
            "holidays.ics",
            ICS.replace(b"DTSTART;TZID=America/Toronto:20261230T130000\r\n", b""),
            "event 'offsite': no DTSTART",
        ),
        (
            "holidays.ics",
            RECURRING.replace(b"FREQ=YEARLY", b"FREQ=SOMETIMES"),
            "recurring events: UNTIL parameter is missing: FREQ=SOMETIMES",
        ),
    ],
)
def test_ical_errors_name_the_ical_key(
    tmp_path: Path, name: str, content: bytes | None, reason: str
) -> None:
    """Whatever the file is called (closures.ics, holidays.ics), its errors are the `ical`
    key's, not `closures`' or `holidays'`."""
    if content is not None:
        (tmp_path / name).write_bytes(content)
    policy_file = tmp_path / "p.toml"
    policy_file.write_text(
        f'name = "t"\n[calendars.o]\ntimezone = "UTC"\n{week("09:00-17:00")}\nical = "{name}"\n'
        '[severity.1]\nfirst_response = { target = "1h" }\n'
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(policy_file)
    assert f"p.toml: calendars.o.ical: {name}: " in str(caught.value)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    "holidays",
    [
        '{ country = "DE", subdivision = "Augsburg" }',
        '{ country = "DE", subdivision = "augsburg" }',
        '"DE-Augsburg"',
    ],
)
def test_holiday_subdivisions_spelled_as_the_holidays_package_does(holidays: str) -> None:
    """Subdivisions that are not upper-case codes (Augsburg, FR 'Zone A', NL 'Noord', aliases
    such as 'Ontario') were upper-cased and refused. Augsburg's Peace Festival is 8 August."""
    cal = policy_with(
        f'[calendars.c]\ntimezone = "Europe/Berlin"\n{week("09:00-17:00", ALL_DAYS[:5])}\n'
        f"holidays = {holidays}"
    ).calendar
    # Monday 7 August 2028 16:00 CEST: 1h Monday, Tuesday 8th closed, Wednesday 09:00 + 1h.
    assert due(cal, "2028-08-07T16:00:00+02:00", 2 * HOUR) == "2028-08-09T08:00:00Z"


@pytest.mark.parametrize("spec", ['"CA-Ontario"', '"CA-on"', '"ca-ON"'])
def test_holiday_subdivision_aliases_and_case(spec: str) -> None:
    cal = calendar(f'hours = "24x7"\nholidays = {spec}')
    assert due(cal, "2027-06-30T22:00:00-04:00", 4 * HOUR) == "2027-07-02T06:00:00Z"


def test_a_closure_error_is_not_buried_under_the_other_union_branch() -> None:
    """A closure is a date or a table: an error says what is wrong with the value given, not
    also that it is not of the other kind."""
    with pytest.raises(PolicyError) as caught:
        calendar(f'{week("09:00-17:00")}\nclosures = [{{ date = 2026-12-24, from = "24:00" }}]')
    assert "valid date" not in str(caught.value)
    with pytest.raises(PolicyError) as caught:
        calendar(f"{week('09:00-17:00')}\nclosures = [2026-12-24T10:00:00]")
    assert str(caught.value) == (
        "t.toml: calendars.c.closures.0: Datetimes provided to dates should have zero time - "
        "e.g. be exact dates (line 6)"
    )


def test_ical_cancelled_events_do_not_close(tmp_path: Path) -> None:
    """An export keeps cancelled events with STATUS:CANCELLED (RFC 5545 3.8.1.11): the offsite
    that was called off must not close the office."""
    cancelled = ICS.replace(b"UID:offsite\r\n", b"UID:offsite\r\nSTATUS:CANCELLED\r\n")
    assert cancelled != ICS
    cal = ical_calendar(tmp_path, cancelled)
    # Wednesday 30 Dec 09:00, 6h: 09:00-15:00 with the 13:00-15:00 offsite called off.
    assert due(cal, "2026-12-30T09:00:00-05:00", 6 * HOUR) == "2026-12-30T20:00:00Z"
    assert cal.is_open(parse_instant("2026-12-30T14:00:00-05:00"))


def test_elapsed_day_warning_quotes_what_the_file_says() -> None:
    """'1d of business time' read as an elapsed day, the very thing the warning is about; the
    warning quotes the amount as written (24h, 2d, 1440m)."""
    policy = parse_policy(
        'name = "t"\n[calendars.c]\ntimezone = "UTC"\n'
        + week("09:00-17:00", ALL_DAYS[:5])
        + '\n[severity.1]\nfirst_response = { target = "1440m" }\n'
        'resolution = { target = "2d" }\n'
        'escalations = [{ after = "48h", clock = "business", to = "lead" }]\n',
        "t.toml",
    )
    warnings = check_policy(policy)
    assert (
        "severity.1.first_response: '1440m' of business time is 3.00 business days; did you "
        "mean business days ('bd')?" in warnings
    )
    assert "severity.1.resolution: '2d' of business time is 6.00 business days" in "\n".join(
        warnings
    )
    assert "severity.1.escalations.0: '48h' of business time is 6.00 business days" in "\n".join(
        warnings
    )


def test_business_days_on_the_elapsed_clock_warn() -> None:
    """`after = "1bd"` without `clock = "business"` (escalations default to elapsed) is one
    business day's length of wall time, 8h here: an escalation at 17:00 for a ticket reported
    at 09:00, not the next morning. Found trying #8 as a new user."""
    policy = parse_policy(
        'name = "t"\n[calendars.c]\ntimezone = "UTC"\n'
        + week("09:00-17:00", ALL_DAYS[:5])
        + '\n[severity.1]\nfirst_response = { target = "1bd" }\n'
        'resolution = { target = "2bd", clock = "elapsed" }\n'
        'escalations = [{ after = "1bd", to = "lead" }, { after = "1d", to = "boss" }]\n',
        "t.toml",
    )
    warnings = [w for w in check_policy(policy) if "elapsed clock" in w]
    assert warnings == [
        "severity.1.resolution: '2bd' on the elapsed clock is 16h of wall time; did you mean "
        "clock = 'business'?",
        "severity.1.escalations.0: '1bd' on the elapsed clock is 8h of wall time; did you mean "
        "clock = 'business'?",
    ]
    always = parse_policy(
        'name = "t"\n[calendars.c]\ntimezone = "UTC"\nhours = "24x7"\n'
        '[severity.1]\nescalations = [{ after = "1bd", to = "lead" }]\n',
        "t.toml",
    )
    assert not any("elapsed clock" in w for w in check_policy(always))  # 1bd is 24h there


@pytest.mark.parametrize(
    ("closure", "expected"),
    [
        # Wednesday's shift (23:00 to Thursday 07:00) closed; Tuesday's runs into Wednesday.
        ("2026-12-02", "2026-12-02T12:00:00Z"),
        # Wednesday 00:00-24:00 on the wall clock: Tuesday's shift stops at midnight, and
        # Wednesday's shift opens at Thursday 00:00 (7h) after 1h on Tuesday.
        ("{ date = 2026-12-02 }", "2026-12-03T12:00:00Z"),
    ],
)
def test_a_whole_date_and_its_wall_clock_hours_close_night_shifts_differently(
    closure: str, expected: str
) -> None:
    """As docs/policies.md says (found ambiguous trying #8): a date closes the shift starting on it,
    `from`/`to` (default the whole day) the date's wall-clock hours."""
    cal = calendar(f"{week('23:00-07:00', ('tue', 'wed', 'thu'))}\nclosures = [{closure}]")
    assert due(cal, "2026-12-01T22:00:00-05:00", 8 * HOUR) == expected
