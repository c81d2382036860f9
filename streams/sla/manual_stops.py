"""A governed stop-the-clock, and breach reasons (the fold's part; docs/ticket-clocks.md).

`ticket.sla_stopped` (reason, actor) stops the metrics the policy's `[stop_clock]` lists
until `ticket.sla_started`; a reason not in its `reasons` is rejected (to the dead letters,
the reason saying so), as is a stop on a policy without `[stop_clock]`, a second stop while
one holds, or a start without a stop. A stop held for the policy's `max` ends then by itself,
with one `sla.stop_ended` event per stopped metric still running (`timers.end_overlong_stop`).
A stop still held when the ticket is resolved ends at the resolution.

`ticket.breach_reason` (metric, reason, actor) attaches a reason to the metric's latest breach;
the policy's `[breach_reasons]` lists the codes and which are exempt. It emits
`sla.breach_reason` (with `exempt`), from which compliance reports met, breached and
breached-exempt (`projections`). A reason for a metric that has not breached is rejected; a
second reason for the same breach replaces the first (a new event, the latest counts).
Pure: no clock, integer microseconds.
"""

from __future__ import annotations

from events.codec import sanitise
from events.instants import Micros, format_instant
from events.records import TicketEvent
from events.sla_records import NOT_ROUNDED, SlaBreachReason, SlaRecord
from streams.sla.deadlines import effective
from streams.sla.rules import Policy
from streams.sla.spans import deadlines, metric_segments
from streams.sla.state import TicketState, Timer
from streams.sla.ticket_calendars import metric_clock, metric_ref
from streams.sla.timers import (
    CLOCKED,
    STOP,
    STOP_RANK,
    close_stop,
    event_body,
    event_id,
    limit_key,
    rounded,
    schedule,
)


def _unlisted(policy: Policy, code: str, codes: tuple[str, ...], what: str) -> str | None:
    """Why `code` is refused when it is not among the policy's `codes` (None: it is listed)."""
    if code in codes:
        return None
    return (
        f"field 'reason': {sanitise(code)} is not a {what} of policy {policy.name!r} "
        f"(allowed: {', '.join(codes)})"
    )


def apply_stopped(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
) -> str | None:
    rules = policy.root.clock_rules
    if rules is None or not rules.stop_reasons:
        return f"policy {policy.name!r} has no [stop_clock]: a manual stop is not allowed"
    reason = event.reason or ""
    refused = _unlisted(policy, reason, rules.stop_reasons, "stop reason")
    if refused is not None:
        return refused
    if state.status not in ("open", "paused"):
        return f"cannot stop the clock of a {state.status} ticket"
    stops = state.stops or []
    if stops and stops[-1][1] is None:
        return f"the clock is already stopped (since {format_instant(stops[-1][0])})"
    state.stops = [*stops, (now, None, reason, event.actor or "")]
    schedule(state, policy, now, out, CLOCKED)
    if rules.stop_max:
        key = limit_key(len(state.stops))
        state.timers = sorted([*state.timers, Timer(now + rules.stop_max, STOP_RANK, STOP, key)])
    return None


def apply_started(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
) -> str | None:
    stops = state.stops
    if not stops or stops[-1][1] is not None:
        return "the clock is not stopped (no ticket.sla_stopped holds it)"
    close_stop(state, now)
    schedule(state, policy, now, out, CLOCKED)
    return None


def latest_breach(state: TicketState, metric: str) -> int:
    """The round of the metric's latest breach (0: not counted in rounds); -1: none."""
    found = -1
    plain = f"{metric}:breached"
    prefix = plain + "@"
    for key in state.fired:
        if key == plain:
            found = max(found, 0)
        elif key.startswith(prefix):
            found = max(found, int(key[len(prefix) :]))
    return found


def apply_breach_reason(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
) -> str | None:
    rules = policy.root.clock_rules
    if rules is None or not rules.breach_codes:
        return f"policy {policy.name!r} has no [breach_reasons]: a breach reason is not allowed"
    code = event.reason or ""
    refused = _unlisted(policy, code, rules.breach_codes, "breach reason")
    if refused is not None:
        return refused
    metric = event.metric or ""
    number = latest_breach(state, metric)
    if number < 0:
        return f"field 'metric': {metric} has not breached"
    actor = event.actor or ""
    given = state.breach_reasons or []
    count = sum(1 for entry in given if entry[0] == metric and entry[1] == number) + 1
    state.breach_reasons = [*given, (metric, number, code, actor, now)]
    rule = policy.severities[state.severity].metric(metric)  # type: ignore[arg-type]
    due = now
    ref = policy.ref()
    if rule is not None:
        clock = metric_clock(state, policy, rule)
        ref = metric_ref(state, policy, rule)
        rule = effective(state, policy, rule, clock)
        if not rule.rounds:
            found = deadlines(metric_segments(state, rule.metric, rule), clock, [rule.target])[0]
            due = found if found is not None else now
    name = f"breach_reason@{number}:{count}" if number else f"breach_reason:{count}"
    record: SlaBreachReason = {
        "event_id": event_id(state, metric, name),
        "type": "sla.breach_reason",
        **event_body(state, ref, metric, due, now, policy.agreement),
        "reason": code,
        "actor": actor,
        "exempt": code in rules.breach_exempt,
        **(rounded(number) if number else NOT_ROUNDED),
    }
    out.append(record)
    return None
