"""Deadline targets: "by 16:00 the next business day", or a due date agreed with the customer.

A metric's `target` is a duration, or a table (see docs/ticket-clocks.md):

- `{ next_business_day_at = "16:00" }`: due at that wall time on the first business day of
  the metric's calendar after the local date the metric's clock started (a ticket opened on
  Friday is due Monday 16:00; a holiday is skipped);
- `{ from_attribute = "agreed_due_at", otherwise = "8h" }`: due at the RFC 3339 instant in the
  ticket's attribute (set by `ticket.opened` or `ticket.updated`). Absent, or not an RFC 3339
  instant: the `otherwise` duration counts from the start instead. At or before the start
  (already past): the target is zero, so the metric breaches at its start. A changed value
  moves the deadline as a severity change does (the timers are recomputed; one now overdue
  fires at the change).

Either becomes an amount of the metric's clock time: the clock time from the metric's start
to the deadline instant (`effective`). Everything else then works as for a duration target:
pauses and manual stops push the deadline by the time they held it, the warnings are
fractions of that amount (a lead-time warning longer than it is left out), and `took_seconds`
is measured on the same clock. A deadline instant in closed hours is reached at the close
before it (the clock time up to it is all there is). Pure: integer microseconds.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Final

from events.instants import Micros, format_instant, parse_rfc3339
from streams.sla.clocks import BusinessCalendar, Clock
from streams.sla.rules import MetricRule, Policy
from streams.sla.spans import round_since
from streams.sla.state import TicketState
from streams.sla.ticket_calendars import calendar_named, choose

NEXT_BUSINESS_DAY: Final = "next_business_day"
ATTRIBUTE: Final = "attribute"
_effective: dict[tuple[int, Micros], MetricRule] = {}
"""(id of a rule, amount) -> the rule with that target (rules live as long as their policy)."""


def metric_start(state: TicketState, rule: MetricRule) -> Micros:
    """When the metric's clock started: the report, or the open round's start."""
    if rule.rounds:
        since = round_since(state, rule.metric)
        if since is not None:
            return since
    return state.reported_at


def start_calendar(state: TicketState, policy: Policy, rule: MetricRule) -> BusinessCalendar:
    """The calendar whose business days a `next_business_day_at` target counts: the
    ticket's at the metric's start."""
    rules = policy.root.clock_rules
    if not rule.choice or rules is None:
        return policy.calendars[rule.calendar]
    start = metric_start(state, rule)
    routes = state.routes or [(state.reported_at, state.group, state.attributes)]
    route = routes[0]
    for candidate in routes:
        if candidate[0] <= start:
            route = candidate
    return calendar_named(policy, choose(policy, rules, rule.choice, rule.calendar, route))


def deadline_instant(state: TicketState, policy: Policy, rule: MetricRule) -> Micros | None:
    """The instant a deadline target names for the ticket; None: a duration target, or an
    agreed date absent or unreadable (the `otherwise` duration applies)."""
    if rule.deadline == NEXT_BUSINESS_DAY:
        calendar = start_calendar(state, policy, rule)
        day = calendar.local_date(metric_start(state, rule)) + timedelta(days=1)
        for _ in range(800):
            if calendar.is_business_day(day):
                return calendar.wall_instant(day, rule.deadline_at)
            day += timedelta(days=1)
        return None
    if rule.deadline == ATTRIBUTE:
        text = state.attributes.get(rule.deadline_attribute)
        if text is None:
            return None
        try:
            return parse_rfc3339(text)
        except ValueError:
            return None
    return None


def effective(state: TicketState, policy: Policy, rule: MetricRule, clock: Clock) -> MetricRule:
    """`rule` with the target it has for this ticket (itself for a duration target)."""
    if not rule.deadline:
        return rule
    due = deadline_instant(state, policy, rule)
    if due is None:
        return rule  # `otherwise`: the rule's own duration
    amount = clock.between(metric_start(state, rule), due)
    key = (id(rule), amount)
    found = _effective.get(key)
    if found is None:
        leads = tuple(lead for lead in rule.warn_before if lead < amount)
        found = replace(rule, target=amount, warn_before=leads)
        _effective[key] = found
    return found


def describe(state: TicketState, policy: Policy, rule: MetricRule) -> str:
    """How the target was set, in words, for `explain` (no ticket text: an agreed date is
    quoted only as the instant it reads as)."""
    if rule.deadline == NEXT_BUSINESS_DAY:
        due = deadline_instant(state, policy, rule)
        at = "none within two years" if due is None else format_instant(due)
        began = format_instant(metric_start(state, rule))
        return f"next business day at {_wall(rule.deadline_at)} after {began}: {at}"
    if rule.deadline == ATTRIBUTE:
        agreed = deadline_instant(state, policy, rule)
        name = rule.deadline_attribute
        if agreed is None:
            missing = name not in state.attributes
            why = "absent" if missing else "not an RFC 3339 instant"
            return f"attribute {name!r} {why}: otherwise {rule.written}"
        start = metric_start(state, rule)
        if agreed <= start:
            return f"attribute {name!r} = {format_instant(agreed)}, already past at the start"
        return f"attribute {name!r} = {format_instant(agreed)}"
    return f"{rule.written or rule.target} from {format_instant(metric_start(state, rule))}"


def _wall(offset: Micros) -> str:
    minutes = offset // 60_000_000
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
