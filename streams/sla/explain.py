"""Explain a ticket's clocks: every interval that counted and every one that did not, and why.

For each metric of the ticket's severity, from the same spans the fold measures
(`spans.metric_segments`, the clock of `ticket_calendars.metric_clock`, the target of
`deadlines.effective`): its window (from its start to its fulfilment, or to `now`), cut into
intervals, each either counted (on a named calendar, or the elapsed clock) or not, with its
cause: `closed hours`, `holiday: <name>`, `closure` (a calendar's closed time), `paused`
(the ticket's status), `stopped` (a manual stop, with its reason and actor). The counted
intervals' seconds add up to what the fold reports as `took_seconds` (a test checks this
over thousands of random tickets). Also: the policy, version and calendars that timed it,
how its deadline was set, and the breach reasons given. A rounded metric (next response,
periodic update) is explained for its open round only. Pure: no clock, integer microseconds.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, NotRequired, TypedDict

from events.instants import SECOND, Micros, format_instant
from streams.sla.clocks import BusinessCalendar, Clock
from streams.sla.deadlines import describe, effective
from streams.sla.rules import MetricRule, Policy
from streams.sla.spans import consumed, deadlines, first_response_end, metric_segments
from streams.sla.state import Span, TicketState
from streams.sla.ticket_calendars import TimelineClock, metric_clock, pieces
from streams.sla.timers import pending_breach

Cause = Literal["counted", "closed hours", "holiday", "closure", "paused", "stopped"]


class Interval(TypedDict):
    """One stretch of a metric's window: counted or not, and why."""

    start: str
    end: str
    counted: bool
    seconds: float
    """Seconds the interval counted (0 for one that did not; its length is end - start)."""
    cause: Cause
    calendar: NotRequired[str]
    """The calendar that counted (or was closed) then; `elapsed` for the elapsed clock."""
    holiday: NotRequired[str]
    reason: NotRequired[str]
    """A manual stop's reason code."""
    actor: NotRequired[str]


class MetricExplanation(TypedDict):
    metric: str
    status: Literal["running", "held", "met", "breached", "stopped"]
    clock: str
    calendars: list[str]
    """The calendars that counted it, in order (one unless the ticket changed calendar)."""
    target: str
    """How the target was set (a duration, or a deadline target's instant)."""
    target_seconds: float
    due_at: str | None
    """The deadline as the fold has it now (None: the clock is held)."""
    counted_seconds: float
    intervals: list[Interval]


class BreachReasonExplained(TypedDict):
    metric: str
    round: int
    reason: str
    actor: str
    at: str


class Explanation(TypedDict):
    ticket_id: str
    severity: int
    status: str
    policy: str
    version: str
    upto: str
    metrics: list[MetricExplanation]
    breach_reasons: list[BreachReasonExplained]


def explain(state: TicketState, root: Policy, now: Micros) -> Explanation:
    """The explanation of a ticket's clocks as the fold has them, up to `now` for a clock
    still running."""
    policy = root.by_name.get(state.policy_name, root) if root.policies else root
    if root.policies and state.policy_name not in root.by_name:
        policy = root.select(state)
    upto = max(now, state.last_event_at)
    metrics: list[MetricExplanation] = []
    rules = policy.severities.get(state.severity)
    for rule in rules.clocked if rules is not None else ():
        found = explain_metric(state, policy, rule, upto)
        if found is not None:
            metrics.append(found)
    return {
        "ticket_id": state.ticket_id,
        "severity": state.severity,
        "status": state.status,
        "policy": policy.name,
        "version": state.policy_version,
        "upto": format_instant(upto),
        "metrics": metrics,
        "breach_reasons": [
            {"metric": m, "round": n, "reason": code, "actor": actor, "at": format_instant(at)}
            for m, n, code, actor, at in state.breach_reasons or ()
        ],
    }


def window(state: TicketState, rule: MetricRule) -> list[Span]:
    """The metric's spans before pauses and stops cut them (its start to its end)."""
    if rule.metric == "first_response":
        return [(state.reported_at, first_response_end(state))]
    if rule.metric == "resolution":
        return state.resolution_spans
    since = state.reply_since if rule.metric == "next_response" else state.update_since
    return [] if since is None else [(since, None)]


def explain_metric(
    state: TicketState, policy: Policy, rule: MetricRule, upto: Micros
) -> MetricExplanation | None:
    spans = window(state, rule)
    if not spans:
        return None
    clock = metric_clock(state, policy, rule)
    timed = effective(state, policy, rule, clock)
    held = _held(state, rule)
    resume = upto if held and held[-1][1] is None else None
    segments = metric_segments(state, rule.metric, rule, resume)
    counted_total = consumed(segments, clock, upto)
    names = (
        [name for _, name in pieces(state, policy, rule)]
        if rule.choice and rule.clock == "business"
        else ["elapsed" if rule.clock != "business" else rule.calendar]
    )
    intervals: list[Interval] = []
    for start, end in spans:
        stop = upto if end is None else min(end, upto)
        if stop > start:
            intervals.extend(_intervals(start, stop, held, clock, names[-1]))
    status = _status(state, rule, held)
    pending = pending_breach(state, rule.metric)
    if pending is None:
        now_segments = metric_segments(state, rule.metric, rule)
        if status in ("met", "breached", "stopped") and now_segments:
            last = now_segments[-1]  # as the fold reports it: the clock counted on
            now_segments = [*now_segments[:-1], (last[0], None)]
        pending = deadlines(now_segments, clock, [timed.target])[0]
    return {
        "metric": rule.metric,
        "status": status,
        "clock": rule.clock,
        "calendars": names,
        "target": describe(state, policy, rule),
        "target_seconds": timed.target / SECOND,
        "due_at": None if pending is None else format_instant(pending),
        "counted_seconds": counted_total / SECOND,
        "intervals": intervals,
    }


HeldSpan = tuple[Micros, Micros | None, Cause, str, str]
"""A cut of a metric's clock: (start, end, paused or stopped, reason, actor)."""


def _held(state: TicketState, rule: MetricRule) -> list[HeldSpan]:
    found: list[HeldSpan] = []
    if rule.stoppable:
        found += [(s, e, "stopped", reason, actor) for s, e, reason, actor in state.stops or ()]
    if rule.pausable:
        found += [(s, e, "paused", "", "") for s, e in state.pauses]
    return sorted(found, key=lambda cut: (cut[0], cut[2] != "stopped"))


def _status(
    state: TicketState, rule: MetricRule, held: list[HeldSpan]
) -> Literal["running", "held", "met", "breached", "stopped"]:
    metric = rule.metric
    fired = state.fired
    if any(key.startswith(f"{metric}:breached") for key in fired):
        return "breached"
    if any(key.startswith(f"{metric}:met") for key in fired):
        return "met"
    if metric == "first_response" and first_response_end(state) is not None:
        return "stopped"
    if metric == "resolution" and state.status in ("resolved", "closed"):
        return "stopped"
    if held and held[-1][1] is None:
        return "held"
    return "running"


def _intervals(
    start: Micros,
    end: Micros,
    held: list[HeldSpan],
    clock: Clock,
    name: str,
) -> list[Interval]:
    """[start, end) of a window cut by the held spans, the rest by the clock's open time."""
    found: list[Interval] = []
    cursor = start
    for cut_start, cut_end, cause, reason, actor in held:
        stop = end if cut_end is None else cut_end
        if stop <= cursor or cut_start >= end:
            continue
        if cut_start > cursor:
            found += _on_clock(cursor, cut_start, clock, name)
            cursor = cut_start
        until = min(stop, end)
        item: Interval = {
            "start": format_instant(cursor),
            "end": format_instant(until),
            "counted": False,
            "seconds": 0.0,
            "cause": cause,
        }
        if cause == "stopped":
            item["reason"] = reason
            item["actor"] = actor
        found.append(item)
        cursor = until
        if cursor >= end:
            break
    if cursor < end:
        found += _on_clock(cursor, end, clock, name)
    return found


def _on_clock(start: Micros, end: Micros, clock: Clock, name: str) -> list[Interval]:
    """[start, end) on the metric's clock: counted where it is open, closed where not."""
    if isinstance(clock, TimelineClock):
        found: list[Interval] = []
        for a, b, piece, calendar in clock.stretches(start, end):
            found += _on_calendar(a, b, calendar, piece)
        return found
    if isinstance(clock, BusinessCalendar):
        return _on_calendar(start, end, clock, name)
    return [_counted(start, end, "elapsed")]


def _on_calendar(
    start: Micros, end: Micros, calendar: BusinessCalendar, name: str
) -> list[Interval]:
    found: list[Interval] = []
    cursor = start
    for a, b in calendar.open_intervals(start, end):
        if a > cursor:
            found += _closed(cursor, a, calendar, name)
        found.append(_counted(a, b, name))
        cursor = b
    if cursor < end:
        found += _closed(cursor, end, calendar, name)
    return found


def _counted(start: Micros, end: Micros, calendar: str) -> Interval:
    return {
        "start": format_instant(start),
        "end": format_instant(end),
        "counted": True,
        "seconds": (end - start) / SECOND,
        "cause": "counted",
        "calendar": calendar,
    }


def _closed(start: Micros, end: Micros, calendar: BusinessCalendar, name: str) -> list[Interval]:
    """Closed time, split where its cause changes: each local day is closed hours, or a
    holiday (named), or a closure."""
    found: list[Interval] = []
    cursor = start
    day = calendar.local_date(start)
    while cursor < end:
        midnight = calendar.wall_instant(day + timedelta(days=1), 0)
        until = min(end, midnight)
        why = calendar.closed_reason(day)
        cause: Cause = "closed hours"
        holiday = ""
        if why == "closure":
            cause = "closure"
        elif why is not None:
            cause, holiday = "holiday", why.removeprefix("holiday: ")
        last = found[-1] if found else None
        if last is not None and last["cause"] == cause and last.get("holiday", "") == holiday:
            last["end"] = format_instant(until)
        else:
            item: Interval = {
                "start": format_instant(cursor),
                "end": format_instant(until),
                "counted": False,
                "seconds": 0.0,
                "cause": cause,
                "calendar": name,
            }
            if holiday:
                item["holiday"] = holiday
            found.append(item)
        cursor = until
        day += timedelta(days=1)
    return found
