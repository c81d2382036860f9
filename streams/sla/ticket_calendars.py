"""Calendars chosen per ticket: from its group, or from an attribute naming a calendar or zone.

A metric's `calendar` may be `"group"` (the file's `[group_calendars]` maps the ticket's group
to a calendar) or `"attribute:NAME"` (the ticket's attribute NAME names a calendar of the file,
or an IANA time zone: the policy's default calendar's hours and holidays in that zone). A group
or value that names nothing, or none at all, counts on the metric's default calendar (the
policy's, or the metric's own `calendar_default`).

When the group or attribute changes, the time after the change counts on the new calendar and
the time before keeps the count it had: a ticket's clock is then a `TimelineClock`, one
calendar per stretch of time (`TicketState.routes` holds the ticket's group and attributes
from each change on). A ticket that never changed calendar counts on that one calendar.
Pure: instants and amounts in integer microseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from events.instants import Micros
from events.sla_records import PolicyRef
from streams.sla.clocks import BusinessCalendar, Clock, time_zone
from streams.sla.rules import ClockRules, MetricRule, Policy
from streams.sla.state import Route, TicketState

GROUP: Final = "group"
ATTRIBUTE: Final = "attribute:"
Piece = tuple[Micros, str]
"""From `since` on, the calendar named (a calendar of the file, or an IANA zone)."""


class TimelineClock:
    """A business clock that counts each stretch of time on its own calendar.

    `pieces` are (since, calendar) in time order, the first from before any instant asked
    about; the laws of `clocks.BusinessCalendar` hold (between is additive, add is the
    earliest instant that has consumed the amount).
    """

    __slots__ = ("calendars", "names", "starts")

    def __init__(self, pieces: list[tuple[Micros, str, BusinessCalendar]]) -> None:
        self.starts = [since for since, _, _ in pieces]
        self.names = [name for _, name, _ in pieces]
        self.calendars = [calendar for _, _, calendar in pieces]

    def _bounds(self, index: int) -> tuple[Micros | None, Micros | None]:
        start = self.starts[index] if index else None
        end = self.starts[index + 1] if index + 1 < len(self.starts) else None
        return start, end

    def between(self, start: Micros, end: Micros) -> Micros:
        total = 0
        for index, calendar in enumerate(self.calendars):
            lo, hi = self._bounds(index)
            a = start if lo is None else max(start, lo)
            b = end if hi is None else min(end, hi)
            if b > a:
                total += calendar.between(a, b)
        return total

    def add(self, start: Micros, duration: Micros) -> Micros:
        if duration <= 0:
            return start
        left = duration
        for index, calendar in enumerate(self.calendars):
            lo, hi = self._bounds(index)
            if hi is not None and hi <= start:
                continue
            a = start if lo is None else max(start, lo)
            if hi is None:
                return calendar.add(a, left)
            here = calendar.between(a, hi)
            if here >= left:
                return calendar.add(a, left)
            left -= here
        raise AssertionError("the last piece is open-ended")

    def stretches(
        self, start: Micros, end: Micros
    ) -> Iterator[tuple[Micros, Micros, str, BusinessCalendar]]:
        """[a, b) within [start, end) and the calendar that counts it (name, calendar)."""
        for index, name in enumerate(self.names):
            lo, hi = self._bounds(index)
            a = start if lo is None else max(start, lo)
            b = end if hi is None else min(end, hi)
            if b > a:
                yield a, b, name, self.calendars[index]

    def name_at(self, instant: Micros) -> str:
        index = 0
        while index + 1 < len(self.starts) and self.starts[index + 1] <= instant:
            index += 1
        return self.names[index]


def calendar_named(policy: Policy, name: str) -> BusinessCalendar:
    """A calendar of the file by name, or the policy's default calendar in an IANA zone."""
    found = policy.calendars.get(name)
    if found is not None:
        return found
    rules = policy.clock_rules
    assert rules is not None
    made = rules.zones.get(name)
    if made is None:
        base = policy.calendar
        made = BusinessCalendar(
            name,
            week=base.week,
            holidays=base.holidays,
            holiday_categories=base.holiday_categories,
            closures=base.closures,
            partial_closures=base.partial_closures,
            openings=base.openings,
        )
        rules.zones[name] = made
    return made


def is_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone this machine knows."""
    try:
        time_zone(name)
    except ValueError:
        return False
    return "/" in name or name == "UTC"


def choose(policy: Policy, rules: ClockRules, choice: str, default: str, route: Route) -> str:
    """The calendar a ticket with `route`'s group and attributes counts on."""
    _, group, attributes = route
    if choice == GROUP:
        named = rules.group_calendars.get(group) if group is not None else None
    else:
        named = attributes.get(choice[len(ATTRIBUTE) :])
    if named is None:
        return default
    if named in policy.calendars or is_zone(named):
        return named
    return default


def current_route(state: TicketState) -> Route:
    return (state.reported_at, state.group, state.attributes)


def pieces(state: TicketState, policy: Policy, rule: MetricRule) -> list[Piece]:
    """The calendars `rule` counted on for the ticket, from its open on (merged: a change
    that keeps the calendar is no new piece)."""
    rules = policy.clock_rules
    assert rules is not None
    routes = state.routes or [current_route(state)]
    found: list[Piece] = []
    for route in routes:
        name = choose(policy, rules, rule.choice, rule.calendar, route)
        if not found or found[-1][1] != name:
            found.append((route[0], name))
    return found


def metric_clock(state: TicketState, policy: Policy, rule: MetricRule) -> Clock:
    """The clock `rule` counts on for this ticket (its calendar, or its calendars over time)."""
    if not rule.choice or rule.clock != "business":
        return policy.clock(rule.clock, rule.calendar)
    found = pieces(state, policy, rule)
    if len(found) == 1:
        return calendar_named(policy, found[0][1])
    return TimelineClock([(since, name, calendar_named(policy, name)) for since, name in found])


def metric_calendar(state: TicketState, policy: Policy, rule: MetricRule) -> str:
    """The name of the calendar `rule` counts on now for this ticket (what events name)."""
    if not rule.choice or rule.clock != "business":
        return rule.calendar
    return pieces(state, policy, rule)[-1][1]


def metric_ref(state: TicketState, policy: Policy, rule: MetricRule) -> PolicyRef:
    """The outbound `policy` reference: the calendar that timed the event."""
    if not rule.choice or rule.clock != "business":
        return policy.ref(rule.clock, rule.calendar)
    return policy.ref_named(metric_calendar(state, policy, rule))


def note_route(state: TicketState, policy: Policy, at: Micros) -> bool:
    """After the ticket's group or attributes changed at `at`: keep them in `routes` if the
    policy's clocks depend on them. True if they do (the caller recomputes the timers)."""
    rules = policy.root.clock_rules
    if rules is None or not rules.dynamic:
        return False
    routes = state.routes
    if routes is None:
        return True  # `_open` keeps the first route; a state without one has no history
    entry: Route = (at, state.group, state.attributes)
    kept = [route for route in routes if route[0] <= at]
    if kept and kept[-1][0] == at:
        kept[-1] = entry
    else:
        kept.append(entry)
    state.routes = kept
    return True


def first_route(state: TicketState, policy: Policy) -> None:
    """At the open: the ticket's first group and attributes, if the policy's clocks need them."""
    rules = policy.root.clock_rules
    if rules is not None and rules.dynamic:
        state.routes = [current_route(state)]
