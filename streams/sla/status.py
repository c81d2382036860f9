"""Where a ticket stands against each metric at a given instant: for read models and queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from events.instants import Micros
from streams.sla.deadlines import effective
from streams.sla.fold import policy_of
from streams.sla.rules import OWNERSHIP, MetricName, Policy
from streams.sla.spans import deadlines, metric_round, metric_running, metric_segments
from streams.sla.state import TicketState
from streams.sla.ticket_calendars import metric_calendar, metric_clock

MetricState = Literal["on_track", "warning", "breached", "met", "paused", "stopped"]


@dataclass(frozen=True, slots=True)
class MetricStatus:
    metric: MetricName
    state: MetricState
    due_at: Micros | None
    """The breach deadline; None while the clock is paused or once the metric is done."""
    remaining: Micros | None
    """Time left on the metric's own clock at `now` (negative once breached)."""
    clock: str
    calendar: str | None = None
    """The policy's calendar that times the metric (its rule's); None on the elapsed clock."""
    round: int | None = None
    """For a metric counted in rounds (`rules.ROUNDED`: next_response, periodic_update): the
    number of the current round (or the last one, once done); None for the others."""
    target: Micros = 0
    """The metric's target (per round for rounded metrics), microseconds on its clock."""


def sla_status(state: TicketState, policy: Policy, now: Micros) -> list[MetricStatus]:
    """Status of every metric the ticket's policy defines for its severity, in the policy's
    order (first response, resolution, next response, periodic update; metrics without a
    target are left out). A rounded metric reports its current round (or its last, once done):
    next_response has one once a customer reply to an answered ticket started it,
    periodic_update once a period runs (from each agent update and each reopen); a rounded
    metric that never ran is left out."""
    policy = policy_of(state, policy)
    rules = policy.severities.get(state.severity)
    if rules is None:
        return []
    fired = set(state.fired)
    result: list[MetricStatus] = []
    for rule in rules.clocked:
        metric = rule.metric
        if metric == OWNERSHIP:  # an OLA's (not among a severity's metrics)
            continue
        number: int | None = None
        if rule.rounds:
            number = metric_round(state, metric)
            if number == 0 and not metric_running(state, metric):
                continue  # never started: nothing to show
        calendar = metric_calendar(state, policy, rule) if rule.clock == "business" else None
        clock = metric_clock(state, policy, rule)
        breach = rule.marks[-1].timer  # (the rule's key: an effective rule's marks share it)
        rule = effective(state, policy, rule, clock)  # the ticket's own deadline, if it has one
        breached = (breach if number is None else breach.at_round(number)).fired in fired
        if not metric_running(state, metric):
            if rule.rounds:
                met = f"{metric}:met@{number}" in fired
            else:
                met = any(key.startswith(f"{metric}:met") for key in fired)
            done: MetricState = "breached" if breached else "met" if met else "stopped"
            result.append(
                MetricStatus(metric, done, None, None, rule.clock, calendar, number, rule.target)
            )
            continue
        due = deadlines(metric_segments(state, metric, rule), clock, [rule.target])[0]
        stops = state.stops
        held = rule.stoppable and stops is not None and stops[-1][1] is None
        paused = (rule.pausable and state.status == "paused") or held
        remaining = None
        if due is not None:
            remaining = clock.between(now, due) if due >= now else -clock.between(due, now)
        warned = any(
            (mark.timer if number is None else mark.timer.at_round(number)).fired in fired
            for mark in rule.marks[:-1]
        )
        if breached:
            current: MetricState = "breached"
        elif paused:
            current = "paused"
        elif warned:
            current = "warning"
        else:
            current = "on_track"
        result.append(
            MetricStatus(metric, current, due, remaining, rule.clock, calendar, number, rule.target)
        )
    return result
