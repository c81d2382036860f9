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
from typing import Any, Final

from events.ids import revised_id, sla_event_id
from events.instants import Micros, format_instant
from streams.sla.rules import (
    OWNERSHIP,
    Agreement,
    EscalationRule,
    Mark,
    MetricName,
    MetricRule,
    Ola,
    Policy,
)
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


def purge_timer(due: Micros) -> Timer:
    """The timer that forgets a closed ticket at `due`."""
    return _new_timer(Timer, (due, _PURGE_RANK, "ticket", _PURGE))


def schedule(
    state: TicketState,
    policy: Policy,
    now: Micros,
    emitted: list[dict[str, Any]],
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
        clock = policy.clock(rule.clock, rule.calendar)
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
        for timer in overdue:
            fire(state, policy, timer, now, emitted)
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
    out: list[dict[str, Any]],
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
    due_at, fired_at = _instants(timer.due_at, at)
    ref = policy.ref(esc.clock, esc.calendar)
    record = _event(
        state, ref, "ticket.escalated", "escalation", key.text, due_at, fired_at, policy.agreement
    )
    record["level"] = esc.level
    record["to"] = esc.to
    record["repeat"] = n
    out.append(record)
    if esc.repeat_every:
        repeat = _next_repeat(state, policy, esc, n, at)
        if repeat is not None:
            insort(state.timers, repeat)


def _event(
    state: TicketState,
    ref: dict[str, str],
    kind: str,
    metric: str,
    rule: str,
    due_at: str,
    at: str,
    agreement: Agreement | None = None,
) -> dict[str, Any]:
    """An outbound SLA event; `due_at` and `at` come formatted (see `_instants`).

    It carries the routing metadata as known when it fired (customer, group, assignee), so a
    consumer can route it without joining the ticket stream.
    """
    event_id = sla_event_id(state.ticket_id, state.reported_at, metric, rule, state.cycle)
    if state.revisions:
        event_id = revised_id(event_id, state.revisions.get(event_id, 0))
    record: dict[str, Any] = {
        "event_id": event_id,
        "type": kind,
        "ticket_id": state.ticket_id,
        "severity": state.severity,
        "metric": metric,
        "due_at": due_at,
        "at": at,
        "cycle": state.cycle,
        "policy": ref,
        "customer_id": state.customer_id,
        "group": state.group,
        "assignee": state.assignee,
    }
    if agreement is not None:  # a file with OLAs: which agreement (absent otherwise)
        record["agreement"] = agreement
    return record


def _instants(due: Micros, at: Micros) -> tuple[str, str]:
    """`due` and `at` as RFC 3339 text, formatted once when they are equal (a timer on time)."""
    due_text = format_instant(due)
    return due_text, (due_text if at == due else format_instant(at))


def fire(
    state: TicketState, policy: Policy, timer: Timer, at: Micros, out: list[dict[str, Any]]
) -> None:
    """Emit what `timer` fires at `at` (a warning, a breach with the customer notice of a
    resolution breach, an escalation level or repeat) and arm a repeating level's next one."""
    key = timer.key
    state.fired.append(key.fired)
    if timer.metric == OWNERSHIP:
        _fire_ownership(state, policy, timer, at, out)
        return
    rules = policy.severities[state.severity]
    due_at, fired_at = _instants(timer.due_at, at)
    if timer.metric == "escalation":
        esc = rules.escalations[key.level - 1]
        if key == esc.ack_timer:
            _ack_timed_out(state, policy, esc, timer, at, out)
            return
        ref = policy.ref(esc.clock, esc.calendar)
        record = _event(
            state,
            ref,
            "ticket.escalated",
            "escalation",
            key.text,
            due_at,
            fired_at,
            policy.agreement,
        )
        record["level"] = esc.level
        record["to"] = esc.to
        if key.repeat:
            record["repeat"] = key.repeat
        out.append(record)
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
    ref = policy.ref() if rule is None else policy.ref(rule.clock, rule.calendar)
    name, number = key.name, key.round
    if name == "breached":
        agreement = policy.agreement
        record = _event(
            state, ref, "sla.breached", timer.metric, key.text, due_at, fired_at, agreement
        )
        if number != NO_ROUND:
            record["round"] = number
        if rule is not None and policy.root.attribution and state.holders is not None:
            clock = policy.clock(rule.clock, rule.calendar)
            segments = metric_segments(state, timer.metric, rule)
            record["attribution"] = attribution(segments, state.holders, clock, timer.due_at)
        out.append(record)
        if timer.metric == "resolution" and rules.resolution is not None:
            notice = _event(
                state,
                ref,
                "customer.notification_required",
                "resolution",
                "notification",
                due_at,
                fired_at,
                agreement,
            )
            clock = policy.clock(rules.resolution.clock, rules.resolution.calendar)
            notice["eta"] = format_instant(clock.add(timer.due_at, rules.resolution.target))
            out.append(notice)
        return
    record = _event(
        state, ref, "sla.warning", timer.metric, key.text, due_at, fired_at, policy.agreement
    )
    mark = rule.by_rule.get(name) if rule is not None and rule.warn_before else None
    if mark is not None and mark.before:  # by lead time: the fraction elapsed then
        record["threshold"] = mark.fraction
        record["before_seconds"] = mark.before / 1_000_000
    else:
        record["threshold"] = key.threshold
    if number != NO_ROUND:
        record["round"] = number
    out.append(record)


def _pending_breach(state: TicketState, metric: str) -> Micros | None:
    """When the metric's pending breach timer is due (None: none pending, e.g. paused)."""
    for timer in state.timers:
        if timer.metric == metric and timer.key.name == "breached":
            return timer.due_at
    return None


def met(
    state: TicketState, policy: Policy, metric: MetricName, at: Micros, out: list[dict[str, Any]]
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
    clock = policy.clock(rule.clock, rule.calendar)
    due = _pending_breach(state, metric)
    if due is None:  # paused: no pending timer, measure it
        due = deadlines(segments, clock, [rule.target])[0]
    due_at, met_at = _instants(due if due is not None else at, at)
    ref = policy.ref(rule.clock, rule.calendar)
    met = f"met@{number}" if number else f"met:{state.cycle}"
    record = _event(state, ref, "sla.met", metric, met, due_at, met_at, policy.agreement)
    record["took_seconds"] = consumed(segments, clock, at) / 1_000_000
    record["clock"] = rule.clock
    if number:
        record["round"] = number
    if policy.root.attribution and state.holders is not None:
        record["attribution"] = attribution(segments, state.holders, clock, at)
    state.fired.append(f"{metric}:{met}")
    out.append(record)


# ---------------------------------------------------------------------------------------------
# Group ownership (OLAs, `streams.sla.agreements` runs the cycles)


def ownership_segments(
    state: TicketState, cycle: Cycle, rule: MetricRule, resume_at: Micros | None = None
) -> list[Span]:
    """The spans an ownership cycle's clock ran (see `spans.counted`)."""
    return counted(state, [(cycle[3], cycle[4])], rule, resume_at)


def ownership_event(
    state: TicketState,
    policy: Policy,
    ola: Ola,
    cycle: Cycle,
    kind: str,
    rule: str,
    due: Micros,
    at: Micros,
) -> dict[str, Any]:
    """An SLA event of an OLA's ownership cycle (`rule`: the timer's name within the OLA)."""
    metric = ola.ownership
    due_at, at_text = _instants(due, at)
    ref = policy.ref(metric.clock, metric.calendar)
    text = f"{ola.prefix}{rule}@{cycle[1]}"
    record = _event(state, ref, kind, OWNERSHIP, text, due_at, at_text, ola.agreement)
    record["round"] = cycle[1]
    record["ownership_group"] = cycle[2]
    return record


def _fire_ownership(
    state: TicketState, policy: Policy, timer: Timer, at: Micros, out: list[dict[str, Any]]
) -> None:
    """A warning or the breach of an OLA's running ownership cycle."""
    key = timer.key
    ola = policy.root.ola_by_name.get(key.name.partition("/")[0])
    cycle = running_cycle(state, key.name.partition("/")[0])
    if ola is None or cycle is None:  # a version without the OLA: nothing to say
        return
    rule = key.name[len(ola.prefix) :]
    if rule == "breached":
        record = ownership_event(state, policy, ola, cycle, "sla.breached", rule, timer.due_at, at)
        if policy.root.attribution and state.holders is not None:
            metric = ola.ownership
            segments = ownership_segments(state, cycle, metric)
            clock = policy.clock(metric.clock, metric.calendar)
            record["attribution"] = attribution(segments, state.holders, clock, timer.due_at)
        out.append(record)
        return
    record = ownership_event(state, policy, ola, cycle, "sla.warning", rule, timer.due_at, at)
    mark = ola.ownership.by_rule.get(rule)
    if mark is not None and mark.before:
        record["threshold"] = mark.fraction
        record["before_seconds"] = mark.before / 1_000_000
    else:
        record["threshold"] = key.threshold
    out.append(record)


def running_cycle(state: TicketState, ola: str) -> Cycle | None:
    """The OLA's ownership cycle running now (None: none)."""
    for cycle in reversed(state.cycles or ()):
        if cycle[0] == ola:
            return cycle if cycle[4] is None else None
    return None


# ---------------------------------------------------------------------------------------------
# The fold


def fire_due(
    state: TicketState, policy: Policy, now: Micros, inclusive: bool, out: list[dict[str, Any]]
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
