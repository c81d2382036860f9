"""Timer scheduling: a ticket's pending timers, computed from its spans, and what fires them.

The timer model follows Flink's per-key timers: a state carries its pending timers sorted by
due time (then rank, metric, key; see `state.Timer`), each named by a `TimerKey`. `schedule`
recomputes the timers an event changed and fires at once those it made overdue; `fire_due`
fires those whose time came. A timer fires at most once per ticket (`TicketState.fired`),
with `due_at` showing its deadline and `at` when it went out; deadlines are inclusive. Times
are integer microseconds UTC.

Repeating escalations: repeat n of a level is due when `after + n * repeat_every` has passed
on the level's clock since the report; with c = clock.between(report, t), the due instant
add(report, A) is at or before t exactly when c >= A (`add` is the earliest instant that has
consumed A). A change that makes repeats overdue fires only the latest of them, once. An
acknowledged level repeats no more (`ack_timeout` may fire it again; docs/actions.md).
"""

from __future__ import annotations

from bisect import insort
from typing import Final

from events.ids import revised_id, sla_event_id
from events.instants import Micros
from events.sla_records import (
    NO_LEAD_TIME,
    NOT_ATTRIBUTED,
    NOT_OWNED,
    NOT_REPEATED,
    NOT_ROUNDED,
    Agreed,
    Attributed,
    CustomerNotificationRequired,
    LeadTime,
    Owned,
    PolicyRef,
    Repeat,
    Round,
    SlaBody,
    SlaBreached,
    SlaMet,
    SlaRecord,
    SlaStopEnded,
    SlaStopped,
    SlaWarning,
    TicketEscalated,
)
from streams.sla.clocks import Clock
from streams.sla.deadlines import effective
from streams.sla.rules import OWNERSHIP, EscalationRule, Mark, MetricName, MetricRule, Ola, Policy
from streams.sla.spans import (
    attribution,
    consumed,
    counted,
    deadlines,
    metric_round,
    metric_running,
    metric_segments,
)
from streams.sla.state import Ack, Cycle, Span, TicketState, Timer
from streams.sla.ticket_calendars import metric_clock, metric_ref
from streams.sla.timer_key import NO_ROUND, TimerKey, fired_repeat

_ALL: Final = ("first_response", "resolution", "escalation", "next_response", "periodic_update")
_new_timer = tuple.__new__
"""`_new_timer(Timer, (due_at, rank, metric, key))`: a Timer without NamedTuple's Python-level
`__new__` (half the cost; timers are built on every schedule)."""
CLOCKED: Final = ("first_response", "resolution", "next_response", "periodic_update")
"""The metrics a pause or resume changes (all but the escalation levels)."""
NEXT_RESPONSE: Final = ("next_response",)
PERIODIC: Final = ("periodic_update",)
REOPENED: Final = ("resolution", "periodic_update", "escalation")
"""The metrics a reopen starts again."""
_PURGE_RANK: Final = (3, 0.0)
"""The purge timer's rank (after every SLA timer due at the same instant), one tuple for all."""
_PURGE: Final = TimerKey("ticket", "purge")


STOP: Final = "stop"
"""The timer metric of a manual stop's limit (`stop:limit:N`; `manual_stops`)."""
STOP_RANK: Final = (0, -1.0)
"""Before every SLA timer due at the same instant: the stopped metrics count again first."""


def limit_key(number: int) -> TimerKey:
    """The key of the limit of the ticket's `number`-th manual stop."""
    return TimerKey(STOP, f"limit:{number}")


def close_stop(state: TicketState, at: Micros) -> None:
    """End the manual stop that holds the clock, if one does, at `at`; drop its limit timer."""
    stops = state.stops
    if stops and stops[-1][1] is None:
        start, _, reason, actor = stops[-1]
        state.stops = [*stops[:-1], (start, at, reason, actor)]
        state.timers = [t for t in state.timers if t.metric != STOP]


def end_overlong_stop(
    state: TicketState, policy: Policy, timer: Timer, at: Micros, out: list[SlaRecord]
) -> None:
    """A manual stop reached the policy's longest stop: it ends at its limit, the stopped
    metrics count again (their timers recomputed, overdue ones firing at `at`), and each
    stopped metric still running gets an `sla.stop_ended` with its new deadline."""
    stops = state.stops
    if not stops or stops[-1][1] is not None:
        return
    start, _, reason, actor = stops[-1]
    close_stop(state, timer.due_at)
    schedule(state, policy, at, out, CLOCKED)
    for rule in policy.severities[state.severity].clocked:
        if not rule.stoppable or not metric_running(state, rule.metric):
            continue
        number = metric_round(state, rule.metric) if rule.rounds else NO_ROUND
        pending = pending_breach(state, rule.metric)
        ref = metric_ref(state, policy, rule)
        name = f"stop_ended:{len(stops)}"
        due = timer.due_at if pending is None else pending
        ended: SlaStopEnded = {
            "event_id": event_id(state, rule.metric, name),
            "type": "sla.stop_ended",
            **event_body(state, ref, rule.metric, due, at, policy.agreement),
            "reason": reason,
            "actor": actor,
            "stopped_at": start,
            "cause": "max_stop",
            **rounded(number),
        }
        out.append(ended)


def purge_timer(due: Micros) -> Timer:
    """The timer that forgets a closed ticket at `due`."""
    return _new_timer(Timer, (due, _PURGE_RANK, "ticket", _PURGE))


def schedule(
    state: TicketState,
    policy: Policy,
    now: Micros,
    emitted: list[SlaRecord],
    metrics: tuple[str, ...] = _ALL,
) -> None:
    """Recompute the unfired timers of `metrics` from the state; fire at `now` those overdue.

    Timers of other metrics are kept as they are: an event only recomputes what it changed.
    """
    rules = policy.severities[state.severity]
    fired = state.fired
    timers = [t for t in state.timers if t.metric not in metrics] if state.timers else []
    for rule in rules.clocked:
        metric = rule.metric
        if metric not in metrics or not metric_running(state, metric):
            continue
        number = metric_round(state, metric) if rule.rounds else NO_ROUND
        if rule.choice or rule.deadline:  # the ticket's own calendar or deadline
            clock = metric_clock(state, policy, rule)
            rule = effective(state, policy, rule, clock)
        else:
            clock = policy.clock(rule.clock, rule.calendar)
        marks: list[Mark] = []
        keys: list[TimerKey] = []
        for mark in rule.marks:  # a round's own timers: `breached@3`
            key = mark.timer if number == NO_ROUND else mark.timer.at_round(number)
            if key.fired not in fired:
                marks.append(mark)
                keys.append(key)
        if not marks:
            continue
        segments = metric_segments(state, metric, rule)
        dues = deadlines(segments, clock, [mark.amount for mark in marks])
        for index, due in enumerate(dues):
            if due is not None:
                timers.append(_new_timer(Timer, (due, marks[index].rank, metric, keys[index])))
    if "escalation" in metrics and state.escalation_active:
        acks = state.acks
        for esc in rules.escalations:
            if esc.timer.fired not in fired:
                due = policy.clock(esc.clock, esc.calendar).add(state.reported_at, esc.after)
                timers.append(_new_timer(Timer, (due, esc.rank, "escalation", esc.timer)))
            elif acks is not None and acked(acks, esc.level) is not None:
                timer = _ack_timer(state, policy, esc)
                if timer is not None:
                    timers.append(timer)
            elif esc.repeat_every:
                repeat = _overdue_repeat(state, policy, esc, now)
                if repeat is not None:
                    timers.append(repeat)
    timers.sort()
    if timers and timers[0].due_at < now:
        overdue = [t for t in timers if t.due_at < now]
        state.timers = timers[len(overdue) :]
        stopped = False
        for timer in overdue:
            if stopped and timer.key.fired in state.fired:
                continue  # fired when a manual stop's limit recomputed the timers
            fire(state, policy, timer, now, emitted)
            stopped = stopped or timer.metric == STOP
    else:
        state.timers = timers


def _last_repeat(state: TicketState, esc: EscalationRule) -> int:
    """The number of the level's latest fired repeat (0: none yet)."""
    prefix = esc.repeat_prefix
    for key in reversed(state.fired):
        number = fired_repeat(key, prefix)
        if number >= 0:
            return number
    return 0


def _repeat_timer(state: TicketState, policy: Policy, esc: EscalationRule, n: int) -> Timer | None:
    if esc.max_repeats is not None and n > esc.max_repeats:
        return None
    due = policy.clock(esc.clock, esc.calendar).add(
        state.reported_at, esc.after + n * esc.repeat_every
    )
    return _new_timer(Timer, (due, esc.rank, "escalation", esc.timer.repeat_of(n)))


def _overdue_repeat(
    state: TicketState, policy: Policy, esc: EscalationRule, now: Micros
) -> Timer | None:
    """The level's next repeat to arm after its fired ones; if several are already due before
    `now` (a reopen after a long resolve), the latest of them (it fires at `now`)."""
    n = _last_repeat(state, esc) + 1
    clock = policy.clock(esc.clock, esc.calendar)
    if now > state.reported_at:
        consumed = clock.between(state.reported_at, now - 1)  # due <= now - 1: overdue
        latest = (consumed - esc.after) // esc.repeat_every
        if latest > n:
            n = latest if esc.max_repeats is None else min(latest, esc.max_repeats)
    return _repeat_timer(state, policy, esc, n)


def _next_repeat(
    state: TicketState, policy: Policy, esc: EscalationRule, fired: int, at: Micros
) -> Timer | None:
    """After the level (`fired` = 0) or its repeat `fired` went out at `at`: the first repeat
    due after `at` (those due before it, when it fired late, are covered by it)."""
    consumed = policy.clock(esc.clock, esc.calendar).between(state.reported_at, at)
    first = (consumed - esc.after) // esc.repeat_every + 1 if consumed >= esc.after else 1
    return _repeat_timer(state, policy, esc, max(fired + 1, first))


# Acknowledgements (docs/actions.md). An acknowledged level arms no repeat; with `ack_timeout`
# it arms one timer instead, `level:<n>:ack`, at the acknowledgement plus the timeout on the
# level's clock, unless the ticket progressed since (an agent's response, `fold`). When that
# timer fires the acknowledgement is spent: the level fires again, numbered as the latest
# repeat due by then (as overdue repeats fire only the latest), and repeats on its schedule
# from there.


def acked(acks: list[Ack], level: int) -> Ack | None:
    """The acknowledgement of `level` among `acks` (None: not acknowledged)."""
    for ack in acks:
        if ack[0] == level:
            return ack
    return None


def _ack_timer(state: TicketState, policy: Policy, esc: EscalationRule) -> Timer | None:
    ack = acked(state.acks or [], esc.level)
    if ack is None or ack[2] or not esc.ack_timeout:
        return None
    due = policy.clock(esc.clock, esc.calendar).add(ack[1], esc.ack_timeout)
    return _new_timer(Timer, (due, esc.rank, "escalation", esc.ack_timer))


def _ack_timed_out(
    state: TicketState,
    policy: Policy,
    esc: EscalationRule,
    timer: Timer,
    at: Micros,
    out: list[SlaRecord],
) -> None:
    """The acknowledgement of `esc` timed out without progress: fire the level again."""
    state.fired.pop()  # the ack timer's own key: the repeat's key stands for it
    state.acks = [a for a in state.acks or [] if a[0] != esc.level] or None
    n = _last_repeat(state, esc) + 1
    if esc.repeat_every:  # numbered as the latest repeat due by now, as overdue repeats are
        used = policy.clock(esc.clock, esc.calendar).between(state.reported_at, at)
        n = max(n, (used - esc.after) // esc.repeat_every)
    key = esc.timer.repeat_of(n)
    state.fired.append(key.fired)
    out.append(_escalated(state, policy, esc, key.text, timer.due_at, at, {"repeat": n}))
    if esc.repeat_every:
        repeat = _next_repeat(state, policy, esc, n, at)
        if repeat is not None:
            insort(state.timers, repeat)


def event_body(
    state: TicketState,
    ref: PolicyRef,
    metric: str,
    due: Micros,
    at: Micros,
    agreed: Agreed,
    owned: Owned = NOT_OWNED,
) -> SlaBody:
    """What every SLA event of the ticket carries after its id and type: the deadline, when it
    went out (microseconds), and the routing metadata as known then (customer, group,
    assignee), so a consumer can route it without joining the ticket stream; in a file with
    OLAs, the agreement it is about (`agreed`) and for an ownership cycle its group."""
    return {
        "ticket_id": state.ticket_id,
        "severity": state.severity,
        "metric": metric,
        "due_at": due,
        "at": at,
        "cycle": state.cycle,
        "policy": ref,
        "customer_id": state.customer_id,
        "group": state.group,
        "assignee": state.assignee,
        **agreed,
        **owned,
    }


def event_id(state: TicketState, metric: str, rule: str) -> str:
    """The event's deterministic id (`events.ids.sla_event_id`), revised if a correction has
    replaced it (`revised_id`)."""
    found = sla_event_id(state.ticket_id, state.reported_at, metric, rule, state.cycle)
    if state.revisions:
        found = revised_id(found, state.revisions.get(found, 0))
    return found


def rounded(number: int) -> Round:
    """`round` of a rounded metric's event; empty for `NO_ROUND` (not a rounded metric)."""
    return NOT_ROUNDED if number == NO_ROUND else {"round": number}


def _escalated(
    state: TicketState,
    policy: Policy,
    esc: EscalationRule,
    rule: str,
    due: Micros,
    at: Micros,
    repeat: Repeat,
) -> TicketEscalated:
    ref = policy.ref(esc.clock, esc.calendar)
    return {
        "event_id": event_id(state, "escalation", rule),
        "type": "ticket.escalated",
        **event_body(state, ref, "escalation", due, at, policy.agreement),
        "level": esc.level,
        "to": esc.to,
        **repeat,
    }


def fire(
    state: TicketState, policy: Policy, timer: Timer, at: Micros, out: list[SlaRecord]
) -> None:
    """Emit what `timer` fires at `at` (a warning, a breach with the customer notice of a
    resolution breach, an escalation level or repeat) and arm a repeating level's next one."""
    key = timer.key
    state.fired.append(key.fired)
    if timer.metric == OWNERSHIP:
        _fire_ownership(state, policy, timer, at, out)
        return
    if timer.metric == STOP:
        end_overlong_stop(state, policy, timer, at, out)
        return
    rules = policy.severities[state.severity]
    due = timer.due_at
    if timer.metric == "escalation":
        esc = rules.escalations[key.level - 1]
        if key == esc.ack_timer:
            _ack_timed_out(state, policy, esc, timer, at, out)
            return
        repeated: Repeat = {"repeat": key.repeat} if key.repeat else NOT_REPEATED
        out.append(_escalated(state, policy, esc, key.text, due, at, repeated))
        if esc.repeat_every and not (state.acks and acked(state.acks, esc.level)):
            repeat = _next_repeat(state, policy, esc, key.repeat, at)
            if repeat is not None:
                insort(state.timers, repeat)
        return
    metric = timer.metric
    if metric == "first_response":
        rule = rules.first_response
    elif metric == "resolution":
        rule = rules.resolution
    else:
        rule = rules.metric(metric)  # type: ignore[arg-type]
    clock: Clock | None = None
    if rule is None:
        ref = policy.ref()
    elif rule.choice or rule.deadline:
        ref = metric_ref(state, policy, rule)
        clock = metric_clock(state, policy, rule)
        rule = effective(state, policy, rule, clock)
    else:
        ref = policy.ref(rule.clock, rule.calendar)
        clock = policy.clock(rule.clock, rule.calendar)
    name = key.name
    body = event_body(state, ref, metric, due, at, policy.agreement)
    if name == "breached":
        held = NOT_ATTRIBUTED
        if rule is not None and clock is not None and policy.root.attribution:
            segments = metric_segments(state, metric, rule)  # only when attributing
            held = _attributed(state, policy, clock, segments, due)
        breached: SlaBreached = {
            "event_id": event_id(state, metric, key.text),
            "type": "sla.breached",
            **body,
            **rounded(key.round),
            **held,
        }
        out.append(breached)
        if metric == "resolution" and rule is not None and clock is not None:
            notice: CustomerNotificationRequired = {
                "event_id": event_id(state, "resolution", "notification"),
                "type": "customer.notification_required",
                **body,
                "eta": clock.add(due, rule.target),
            }
            out.append(notice)
        return
    mark = rule.by_rule.get(name) if rule is not None and rule.warn_before else None
    threshold, lead = _threshold(mark, key)
    warning: SlaWarning = {
        "event_id": event_id(state, metric, key.text),
        "type": "sla.warning",
        **body,
        "threshold": threshold,
        **lead,
        **rounded(key.round),
    }
    out.append(warning)


def _threshold(mark: Mark | None, key: TimerKey) -> tuple[float, LeadTime]:
    """A warning's `threshold` and `before_seconds`: set by lead time (`mark.before`), the
    fraction of the target elapsed then and the lead time; else the key's fraction alone."""
    if mark is not None and mark.before:
        return mark.fraction, {"before_seconds": mark.before / 1_000_000}
    return key.threshold, NO_LEAD_TIME


def pending_breach(state: TicketState, metric: str) -> Micros | None:
    """When the metric's pending breach timer is due (None: none pending, e.g. paused)."""
    for timer in state.timers:
        if timer.metric == metric and timer.key.name == "breached":
            return timer.due_at
    return None


def met(
    state: TicketState, policy: Policy, metric: MetricName, at: Micros, out: list[SlaRecord]
) -> None:
    """Emit `sla.met` if the metric is fulfilled at `at` without having breached.

    `due_at` is the deadline as it stands at `at`; fulfilled while paused, as if the clock had
    resumed at `at` (the time left then, counted on from `at`): the same rule for every metric.
    """
    rule = policy.severities[state.severity].metric(metric)
    if rule is None:
        return
    number = metric_round(state, metric) if rule.rounds else 0
    breach = rule.marks[-1].timer
    if (breach.at_round(number) if number else breach).fired in state.fired:
        return
    segments = metric_segments(state, metric, rule, at)
    clock = metric_clock(state, policy, rule)
    if rule.deadline:
        rule = effective(state, policy, rule, clock)
    due = pending_breach(state, metric)
    if due is None:  # paused: no pending timer, measure it
        due = deadlines(segments, clock, [rule.target])[0]
    ref = metric_ref(state, policy, rule)
    met = f"met@{number}" if number else f"met:{state.cycle}"
    record: SlaMet = {
        "event_id": event_id(state, metric, met),
        "type": "sla.met",
        **event_body(state, ref, metric, due if due is not None else at, at, policy.agreement),
        "took_seconds": consumed(segments, clock, at) / 1_000_000,
        "clock": rule.clock,
        **(rounded(number) if number else NOT_ROUNDED),
        **_attributed(state, policy, clock, segments, at),
    }
    state.fired.append(f"{metric}:{met}")
    out.append(record)


def _attributed(
    state: TicketState, policy: Policy, clock: Clock, segments: list[Span], until: Micros
) -> Attributed:
    """Who held the ticket for how much of the metric's counted time (on `clock`) up to
    `until`, in a file with time attribution (`spans.attribution`); empty otherwise."""
    if not policy.root.attribution or state.holders is None:
        return NOT_ATTRIBUTED
    return {"attribution": attribution(segments, state.holders, clock, until)}


# ---------------------------------------------------------------------------------------------
# Group ownership (OLAs, `streams.sla.agreements` runs the cycles)


def ownership_segments(
    state: TicketState, cycle: Cycle, rule: MetricRule, resume_at: Micros | None = None
) -> list[Span]:
    """The spans an ownership cycle's clock ran (see `spans.counted`)."""
    return counted(state, [(cycle[3], cycle[4])], rule, resume_at)


def ownership_body(
    state: TicketState, policy: Policy, ola: Ola, cycle: Cycle, due: Micros, at: Micros
) -> SlaBody:
    """What every event of an OLA's ownership cycle carries after its id and type."""
    metric = ola.ownership
    ref = policy.ref(metric.clock, metric.calendar)
    return event_body(state, ref, OWNERSHIP, due, at, ola.agreement, {"ownership_group": cycle[2]})


def ownership_id(state: TicketState, ola: Ola, cycle: Cycle, rule: str) -> str:
    """The id of an ownership cycle's event (`rule`: the timer's name within the OLA)."""
    return event_id(state, OWNERSHIP, f"{ola.prefix}{rule}@{cycle[1]}")


def ownership_closed(
    state: TicketState, policy: Policy, ola: Ola, cycle: Cycle, due: Micros, at: Micros
) -> SlaMet | SlaStopped:
    """The cycle ended at `at`: `sla.met` if it held its target, `sla.stopped` if it had
    breached it (how long the group held the ticket in all)."""
    rule = ola.ownership
    number = cycle[1]
    clock = policy.clock(rule.clock, rule.calendar)
    segments = ownership_segments(state, cycle, rule, at)
    took = consumed(segments, clock, at) / 1_000_000
    body = ownership_body(state, policy, ola, cycle, due, at)
    held = _attributed(state, policy, clock, segments, at)
    if ola.marks[-1].timer.at_round(number).fired in state.fired:  # breached
        return {
            "event_id": ownership_id(state, ola, cycle, "stopped"),
            "type": "sla.stopped",
            **body,
            "took_seconds": took,
            "clock": rule.clock,
            "round": number,
            **held,
        }
    state.fired.append(f"{OWNERSHIP}:{ola.prefix}met@{number}")
    return {
        "event_id": ownership_id(state, ola, cycle, "met"),
        "type": "sla.met",
        **body,
        "took_seconds": took,
        "clock": rule.clock,
        "round": number,
        **held,
    }


def _fire_ownership(
    state: TicketState, policy: Policy, timer: Timer, at: Micros, out: list[SlaRecord]
) -> None:
    """A warning or the breach of an OLA's running ownership cycle."""
    key = timer.key
    ola = policy.root.ola_by_name.get(key.name.partition("/")[0])
    cycle = running_cycle(state, key.name.partition("/")[0])
    if ola is None or cycle is None:  # a version without the OLA: nothing to say
        return
    rule = key.name[len(ola.prefix) :]
    due = timer.due_at
    body = ownership_body(state, policy, ola, cycle, due, at)
    if rule == "breached":
        held = NOT_ATTRIBUTED
        if policy.root.attribution:  # the cycle's spans only when attributing
            metric = ola.ownership
            segments = ownership_segments(state, cycle, metric)
            clock = policy.clock(metric.clock, metric.calendar)
            held = _attributed(state, policy, clock, segments, due)
        breached: SlaBreached = {
            "event_id": ownership_id(state, ola, cycle, rule),
            "type": "sla.breached",
            **body,
            "round": cycle[1],
            **held,
        }
        out.append(breached)
        return
    threshold, lead = _threshold(ola.ownership.by_rule.get(rule), key)
    warning: SlaWarning = {
        "event_id": ownership_id(state, ola, cycle, rule),
        "type": "sla.warning",
        **body,
        "threshold": threshold,
        **lead,
        "round": cycle[1],
    }
    out.append(warning)


def running_cycle(state: TicketState, ola: str) -> Cycle | None:
    """The OLA's ownership cycle running now (None: none)."""
    for cycle in reversed(state.cycles or ()):
        if cycle[0] == ola:
            return cycle if cycle[4] is None else None
    return None


# ---------------------------------------------------------------------------------------------
# The fold


def fire_due(
    state: TicketState, policy: Policy, now: Micros, inclusive: bool, out: list[SlaRecord]
) -> bool:
    """Fire pending timers due before (or at, if inclusive) `now`; False if the ticket is purged."""
    while state.timers:
        timer = state.timers[0]
        if timer.due_at > now or (timer.due_at == now and not inclusive):
            break
        state.timers.pop(0)
        if timer.metric == "ticket":
            return False
        fire(state, policy, timer, timer.due_at, out)
        through = state.timers_through
        if through is None or timer.due_at > through:
            state.timers_through = timer.due_at
    return True
