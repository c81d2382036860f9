"""Where a ticket stands against each metric at a given instant: for read models and queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from events.instants import Micros
from streams.sla.machine import deadlines, metric_running, metric_segments, policy_of
from streams.sla.rules import MetricName, Policy
from streams.sla.state import TicketState

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


def sla_status(state: TicketState, policy: Policy, now: Micros) -> list[MetricStatus]:
    """Status of first response and resolution (metrics without a target are left out)."""
    policy = policy_of(state, policy)
    rules = policy.severities.get(state.severity)
    if rules is None:
        return []
    fired = set(state.fired)
    result: list[MetricStatus] = []
    for metric in ("first_response", "resolution"):
        rule = rules.metric(metric)
        if rule is None:
            continue
        clock = policy.clock(rule.clock, rule.calendar)
        breached = f"{metric}:breached" in fired
        if not metric_running(state, metric):
            met = any(key.startswith(f"{metric}:met") for key in fired)
            done: MetricState = "breached" if breached else "met" if met else "stopped"
            result.append(MetricStatus(metric, done, None, None, rule.clock))
            continue
        due = deadlines(metric_segments(state, metric, rule), clock, [rule.target])[0]
        paused = rule.pausable and state.status == "paused"
        remaining = None
        if due is not None:
            remaining = clock.between(now, due) if due >= now else -clock.between(due, now)
        if breached:
            current: MetricState = "breached"
        elif paused:
            current = "paused"
        elif any(key.startswith(f"{metric}:warning") for key in fired):
            current = "warning"
        else:
            current = "on_track"
        result.append(MetricStatus(metric, current, due, remaining, rule.clock))
    return result
