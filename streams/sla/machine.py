"""The SLA state machine: a pure fold over one ticket's events, with per-ticket timers.

    handle(state, event, policy)  -> Outcome(state, emitted SLA events)
    advance(state, now, policy)   -> Outcome(state, SLA events due up to `now`)

Nothing here reads a clock or does I/O: time comes in with the events and with `now`, so the
replay command and the Kafka stream processor run this same code and emit the same events.
The timer model follows Flink's per-key timers: a state carries its pending timers sorted by
due time; `handle` first fires the ticket's own timers due strictly before the event, so a
ticket's output order does not depend on how often the shell calls `advance`.

Rules (see README, "SLA rules"):
- every timer (warning threshold, breach, escalation level) fires at most once per ticket,
  at its due time, in due-time order; deadlines are inclusive (a reply at the due instant is
  in time);
- a timer made overdue by a change (severity change, reopen, policy change) fires at the time
  of the change, with `due_at` showing the recomputed deadline;
- every event applies at its own time: one that comes after the ticket has moved past it (a
  later event, or a fired timer due at or after it) is folded in where it belongs by replaying
  the ticket's applied events (`TicketState.history`), and the difference is emitted as a
  correction: `sla.retracted` for each SLA event that no longer holds, then the events that
  now do (with new ids, see `events.ids.revised_id`);
- a metric fulfilled while its clock is paused reports the deadline as if the clock resumed
  at the fulfilment (the time left then, counted on from there): one rule for every metric.
"""

from __future__ import annotations

import json
from bisect import insort
from collections.abc import Callable
from typing import Any, Final

from events.codec import decode_ticket_event
from events.ids import retraction_id, revised_id, sla_event_id
from events.instants import DAY, Micros, format_instant
from events.records import TicketEvent
from streams.sla.clocks import Clock
from streams.sla.rules import EscalationRule, MetricName, MetricRule, Policy
from streams.sla.state import STEP, UNOPENED, Ack, Parked, Span, TicketState, Timer

CLOSED_RETENTION: Final[Micros] = 7 * DAY
"""How long a closed ticket's ids are remembered, so redelivered events are still recognised."""
CORRECTION_HORIZON: Final[Micros] = 7 * DAY
"""How far behind its ticket's own time a late event may be and still be folded in with a
correction; an older one is rejected (counted, dead-lettered by the engine): SLA events a week
old are not rewritten. Equal to CLOSED_RETENTION, so a ticket in state can always be corrected
within it."""


class Outcome:
    """The result of one step: the new state (None: no ticket) and what it emitted.

    A plain class, not a dataclass: mypyc compiles its `__init__` (a dataclass's generated
    `__init__` stays interpreted, and one Outcome is built per event).
    """

    __slots__ = (
        "beyond_horizon",
        "blocked",
        "duplicate",
        "emitted",
        "expired",
        "late",
        "parked",
        "rejected",
        "state",
        "unparked",
    )

    def __init__(
        self,
        state: TicketState | None,
        emitted: list[dict[str, Any]] | None = None,
        rejected: str | None = None,
        duplicate: bool = False,
        late: bool = False,
        beyond_horizon: bool = False,
    ) -> None:
        self.state = state
        self.emitted: list[dict[str, Any]] = [] if emitted is None else emitted
        self.rejected = rejected
        self.duplicate = duplicate
        self.late = late
        """The event came after its ticket had moved past its time (folded in by a replay)."""
        self.beyond_horizon = beyond_horizon
        """Rejected because it is older than CORRECTION_HORIZON behind its ticket's time."""
        self.blocked = False
        """Rejected only for the ticket's state (a resume of an open ticket): `handle` parks it."""
        self.parked = False
        """The event waits in the ticket's state for an earlier event it needs (not applied)."""
        self.unparked: list[Micros] = []
        """Times of parked events this step applied (accepted now: they move the clock)."""
        self.expired: list[tuple[str, str, int]] = []
        """(original JSON text, reason, origin) of parked events the watermark passed: rejected
        now (origin: what the shell gave `handle`, its input offset or line number)."""


# ---------------------------------------------------------------------------------------------
# Clock arithmetic over spans


def _subtract(spans: list[Span], cuts: list[Span]) -> list[Span]:
    """`spans` minus the intervals in `cuts` (both sorted, each without overlaps)."""
    if not cuts:
        return spans
    result: list[Span] = []
    for start, end in spans:
        cursor: Micros | None = start
        for cut_start, cut_end in cuts:
            if cursor is None:
                break
            if end is not None and cut_start >= end:
                break
            if cut_end is not None and cut_end <= cursor:
                continue
            if cut_start > cursor:
                result.append((cursor, cut_start))
            cursor = None if cut_end is None else max(cursor, cut_end)
        if cursor is not None and (end is None or cursor < end):
            result.append((cursor, end))
    return result


def deadlines(segments: list[Span], clock: Clock, amounts: list[Micros]) -> list[Micros | None]:
    """For each amount (ascending), the instant the segments have consumed it; None if never."""
    results: list[Micros | None] = []
    consumed = 0
    index = 0
    for start, end in segments:
        if end is None:
            for amount in amounts[index:]:
                results.append(clock.add(start, amount - consumed))
            return results
        length = clock.between(start, end)
        while index < len(amounts) and amounts[index] <= consumed + length:
            results.append(clock.add(start, amounts[index] - consumed))
            index += 1
        consumed += length
    results.extend([None] * (len(amounts) - index))
    return results


def _consumed(segments: list[Span], clock: Clock, upto: Micros) -> Micros:
    total = 0
    for start, end in segments:
        stop = upto if end is None else min(end, upto)
        if stop > start:
            total += clock.between(start, stop)
    return total


def metric_segments(
    state: TicketState, metric: MetricName, rule: MetricRule, resume_at: Micros | None = None
) -> list[Span]:
    """The spans during which a metric's clock ran (or runs).

    `resume_at`: treat a pause still open as ending then (a metric fulfilled while paused).
    """
    if metric == "first_response":
        spans: list[Span] = [(state.reported_at, _first_response_end(state))]
    elif metric == "resolution":
        spans = state.resolution_spans
    else:
        since = _round_since(state, metric)
        spans = [] if since is None else [(since, None)]
    if not rule.pausable:
        return spans
    pauses = state.pauses
    if resume_at is not None and pauses and pauses[-1][1] is None:
        pauses = [*pauses[:-1], (pauses[-1][0], resume_at)]
    return _subtract(spans, pauses)


def _first_response_end(state: TicketState) -> Micros | None:
    return state.responded_at if state.responded_at is not None else state.first_response_stopped_at


# ---------------------------------------------------------------------------------------------
# Scheduling


_ALL: Final = ("first_response", "resolution", "escalation", "next_response", "periodic_update")
_new_timer = tuple.__new__
"""`_new_timer(Timer, (due_at, rank, metric, rule))`: a Timer without NamedTuple's Python-level
`__new__` (half the cost; timers are built on every schedule)."""
_CLOCKED: Final = ("first_response", "resolution", "next_response", "periodic_update")
_NEXT_RESPONSE: Final = ("next_response",)
_PERIODIC: Final = ("periodic_update",)


def metric_round(state: TicketState, metric: str) -> int:
    """The number of a rounded metric's current round (see `rules.ROUNDED`; 0: none yet)."""
    return state.reply_round if metric == "next_response" else state.update_round


def _round_since(state: TicketState, metric: str) -> Micros | None:
    """When a rounded metric's open round started (None: no round open)."""
    return state.reply_since if metric == "next_response" else state.update_since


def _schedule(
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
        if rule.rounds:  # the round's own timers: `breached@3`
            suffix = f"@{metric_round(state, metric)}"
            marks = [mark for mark in rule.marks if mark.key + suffix not in fired]
        else:
            suffix = ""
            marks = [mark for mark in rule.marks if mark.key not in fired]
        if not marks:
            continue
        segments = metric_segments(state, metric, rule)
        clock = policy.clock(rule.clock, rule.calendar)
        dues = deadlines(segments, clock, [mark.amount for mark in marks])
        for mark, due in zip(marks, dues, strict=True):
            if due is not None:
                name = mark.rule + suffix if suffix else mark.rule
                timers.append(_new_timer(Timer, (due, mark.rank, metric, name)))
    if "escalation" in metrics and state.escalation_active:
        acks = state.acks
        for esc in rules.escalations:
            if esc.key not in fired:
                due = policy.clock(esc.clock, esc.calendar).add(state.reported_at, esc.after)
                timers.append(_new_timer(Timer, (due, esc.rank, "escalation", esc.rule)))
            elif acks is not None and _acked(acks, esc.level):
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
            _fire(state, policy, timer, now, emitted)
    else:
        state.timers = timers


def metric_running(state: TicketState, metric: str) -> bool:
    if metric == "first_response":
        return _first_response_end(state) is None
    if metric == "resolution":
        return state.status in ("open", "paused")
    return _round_since(state, metric) is not None and state.status in ("open", "paused")


# Repeating escalations. Repeat n of a level is due when `after + n * repeat_every` has passed
# on the level's clock since the report; with c = clock.between(report, t), the due instant
# add(report, A) is at or before t exactly when c >= A (`add` is the earliest instant that has
# consumed A). A change that makes repeats overdue fires only the latest of them, once.


def _last_repeat(state: TicketState, esc: EscalationRule) -> int:
    """The number of the level's latest fired repeat (0: none yet)."""
    prefix = esc.repeat_key
    for key in reversed(state.fired):
        if key.startswith(prefix):
            return int(key[len(prefix) :])
    return 0


def _repeat_timer(state: TicketState, policy: Policy, esc: EscalationRule, n: int) -> Timer | None:
    if esc.max_repeats is not None and n > esc.max_repeats:
        return None
    due = policy.clock(esc.clock, esc.calendar).add(
        state.reported_at, esc.after + n * esc.repeat_every
    )
    return _new_timer(Timer, (due, esc.rank, "escalation", f"{esc.rule}:repeat:{n}"))


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
# level's clock, unless the ticket progressed since (an agent's response, `_apply_responded`).
# When that timer fires the acknowledgement is spent: the level fires again, numbered as the
# latest repeat due by then (as overdue repeats fire only the latest), and repeats on its
# schedule from there.


def _acked(acks: list[Ack], level: int) -> Ack | None:
    for ack in acks:
        if ack[0] == level:
            return ack
    return None


def _ack_timer(state: TicketState, policy: Policy, esc: EscalationRule) -> Timer | None:
    ack = _acked(state.acks or [], esc.level)
    if ack is None or ack[2] or not esc.ack_timeout:
        return None
    due = policy.clock(esc.clock, esc.calendar).add(ack[1], esc.ack_timeout)
    return _new_timer(Timer, (due, esc.rank, "escalation", esc.ack_rule))


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
        consumed = policy.clock(esc.clock, esc.calendar).between(state.reported_at, at)
        n = max(n, (consumed - esc.after) // esc.repeat_every)
    rule = f"{esc.rule}:repeat:{n}"
    state.fired.append(_new_timer(Timer, (timer.due_at, esc.rank, "escalation", rule)).key())
    due_at, fired_at = _instants(timer.due_at, at)
    ref = policy.ref(esc.clock, esc.calendar)
    record = _event(state, ref, "ticket.escalated", "escalation", rule, due_at, fired_at)
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
) -> dict[str, Any]:
    """An outbound SLA event; `due_at` and `at` come formatted (see `_instants`).

    It carries the routing metadata as known when it fired (customer, group, assignee), so a
    consumer can route it without joining the ticket stream.
    """
    event_id = sla_event_id(state.ticket_id, state.reported_at, metric, rule, state.cycle)
    if state.revisions:
        event_id = revised_id(event_id, state.revisions.get(event_id, 0))
    return {
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


def _instants(due: Micros, at: Micros) -> tuple[str, str]:
    """`due` and `at` as RFC 3339 text, formatted once when they are equal (a timer on time)."""
    due_text = format_instant(due)
    return due_text, (due_text if at == due else format_instant(at))


def _fire(
    state: TicketState, policy: Policy, timer: Timer, at: Micros, out: list[dict[str, Any]]
) -> None:
    state.fired.append(timer.key())
    rules = policy.severities[state.severity]
    due_at, fired_at = _instants(timer.due_at, at)
    if timer.metric == "escalation":
        parts = timer.rule.split(":")
        esc = rules.escalations[int(parts[1]) - 1]
        if len(parts) == 3:  # `level:<n>:ack`
            _ack_timed_out(state, policy, esc, timer, at, out)
            return
        ref = policy.ref(esc.clock, esc.calendar)
        record = _event(state, ref, "ticket.escalated", "escalation", timer.rule, due_at, fired_at)
        record["level"] = esc.level
        record["to"] = esc.to
        if len(parts) > 3:
            record["repeat"] = int(parts[3])
        out.append(record)
        if esc.repeat_every and not (state.acks and _acked(state.acks, esc.level)):
            repeat = _next_repeat(state, policy, esc, int(parts[3]) if len(parts) > 3 else 0, at)
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
    name, number = timer.rule, ""
    if rule is not None and rule.rounds:
        name, _, number = name.partition("@")
    if name == "breached":
        record = _event(state, ref, "sla.breached", timer.metric, timer.rule, due_at, fired_at)
        if number:
            record["round"] = int(number)
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
            )
            clock = policy.clock(rules.resolution.clock, rules.resolution.calendar)
            notice["eta"] = format_instant(clock.add(timer.due_at, rules.resolution.target))
            out.append(notice)
        return
    record = _event(state, ref, "sla.warning", timer.metric, timer.rule, due_at, fired_at)
    mark = rule.by_rule.get(name) if rule is not None and rule.warn_before else None
    if mark is not None and mark.before:  # by lead time: the fraction elapsed then
        record["threshold"] = mark.fraction
        record["before_seconds"] = mark.before / 1_000_000
    else:
        record["threshold"] = float(name.split(":")[1])
    if number:
        record["round"] = int(number)
    out.append(record)


def _pending_breach(state: TicketState, metric: str) -> Micros | None:
    for timer in state.timers:
        if timer.metric == metric and timer.rule.startswith("breached"):
            return timer.due_at
    return None


def _met(
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
    breach = rule.marks[-1].key + f"@{number}" if number else rule.marks[-1].key
    if breach in state.fired:
        return
    segments = metric_segments(state, metric, rule, at)
    clock = policy.clock(rule.clock, rule.calendar)
    due = _pending_breach(state, metric)
    if due is None:  # paused: no pending timer, measure it
        due = deadlines(segments, clock, [rule.target])[0]
    due_at, met_at = _instants(due if due is not None else at, at)
    ref = policy.ref(rule.clock, rule.calendar)
    met = f"met@{number}" if number else f"met:{state.cycle}"
    record = _event(state, ref, "sla.met", metric, met, due_at, met_at)
    record["took_seconds"] = _consumed(segments, clock, at) / 1_000_000
    record["clock"] = rule.clock
    if number:
        record["round"] = number
    state.fired.append(f"{metric}:{met}")
    out.append(record)


# ---------------------------------------------------------------------------------------------
# The fold


def _fire_due(
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
        _fire(state, policy, timer, timer.due_at, out)
        through = state.timers_through
        if through is None or timer.due_at > through:
            state.timers_through = timer.due_at
    return True


def policy_of(state: TicketState, root: Policy) -> Policy:
    """The policy of the file the ticket runs under (the file's only one, or its choice)."""
    if not root.policies:
        return root
    found = root.by_name.get(state.policy_name)
    return found if found is not None else root.select(state)


def _adopt_policy(state: TicketState, root: Policy, now: Micros, out: list[dict[str, Any]]) -> None:
    """A worker restarted with another policy version: choose the ticket's policy again and
    recompute the ticket's timers under it."""
    if state.policy_version != root.version:
        state.policy_version = root.version
        policy = root.select(state)
        state.policy_name = policy.name if root.policies else ""
        if state.status != "closed" and state.severity in policy.severities:
            _schedule(state, policy, now, out)


def advance(state: TicketState, now: Micros, policy: Policy) -> Outcome:
    """Fire every timer of the ticket due at or before `now`, in due-time order; reject its
    parked events dated at or before `now` (`Outcome.expired`)."""
    if state.status == UNOPENED:  # a placeholder: parked events only
        waiting = Outcome(state)
        _expire(state, now, waiting)
        waiting.state = state if state.parked else None
        return waiting
    out: list[dict[str, Any]] = []
    if state.policy_version != policy.version:
        _adopt_policy(state, policy, state.last_event_at, out)
    if policy.policies:
        policy = policy_of(state, policy)
    alive = _fire_due(state, policy, now, True, out)
    outcome = Outcome(state if alive else None, out)
    if state.parked is not None:
        _expire(state, now if alive else None, outcome)
    return outcome


CONFLICT = "field 'event_id': already used by another event of this ticket with other content"
"""The reason for an event id reused with different content (a redelivery repeats the content)."""


def handle(
    state: TicketState | None,
    event: TicketEvent,
    policy: Policy,
    raw: bytes | str | None = None,
    origin: int = -1,
) -> Outcome:
    """Apply one ticket event; the ticket's timers due strictly before it fire first.

    An event that cannot apply only because of the ticket's status (`blocked`: a resume of an
    open ticket, a reopen of an open one, any event before its ticket's `ticket.opened`) is
    parked in the state with `raw`, its original JSON, and `origin`, where the shell read it
    (`Outcome.parked`): an earlier event still to come (its pause, its open) may make it valid.
    Events of a ticket not opened yet wait in a placeholder state (status `UNOPENED`). After
    each event that applies, parked events are tried again in event-time order, and those that
    now apply are folded in where they belong, like any late event (`Outcome.unparked`). When
    the watermark passes a parked event's time it is rejected (`advance`, `Outcome.expired`).
    """
    parked = state.parked if state is not None else None
    if parked is not None:
        for entry in parked:
            if entry[1] == event.event_id:  # a redelivery of a parked event
                return Outcome(state, duplicate=True)
    placeholder = state is not None and state.status == UNOPENED
    if (state is None or placeholder) and event.type != "ticket.opened":
        if state is None:
            state = TicketState(event.ticket_id, 0, event.at, event.at, policy.version, UNOPENED)
        outcome = Outcome(
            state, rejected=f"unknown ticket {event.ticket_id!r}: no ticket.opened seen"
        )
        outcome.blocked = True
    else:
        outcome = _fold(None if placeholder else state, event, policy)
    if outcome.blocked and state is not None and outcome.rejected is not None:
        text = raw.decode() if isinstance(raw, bytes) else raw
        entry = (event.at, event.event_id, text or _as_json(event), outcome.rejected, origin)
        state.parked = sorted([*(parked or ()), entry])
        held = Outcome(state)
        held.parked = True
        return held
    if placeholder:
        if outcome.state is None:  # the open itself is rejected: its events keep waiting
            outcome.state = state
            return outcome
        outcome.state.parked = parked
    after = outcome.state
    if after is not None and after.parked and outcome.rejected is None and not outcome.duplicate:
        _unpark(outcome, policy)
    return outcome


def _as_json(event: TicketEvent) -> str:
    """An event as contract JSON, for a parked event given without its original text."""
    obj: dict[str, Any] = {
        "event_id": event.event_id,
        "ticket_id": event.ticket_id,
        "type": event.type,
        "occurred_at": format_instant(event.at),
    }
    if event.severity is not None:
        obj["severity"] = event.severity
    if event.has_group:
        obj["group"] = event.group
    if event.level is not None:
        obj["level"] = event.level
    optional: list[tuple[str, object]] = [
        ("customer_id", event.customer_id),
        ("assignee", event.assignee),
        ("channel", event.channel),
        ("tags", event.tags),
        ("attributes", event.attributes),
    ]
    for name, value in optional:
        if value is not None:
            obj[name] = value
    return json.dumps(obj)


def _unpark(outcome: Outcome, policy: Policy) -> None:
    """Try the state's parked events again, in event-time order, until none applies.

    A correction may displace an applied event back into `parked` (`_replay`); `rounds` bounds
    the loop all the same (each round applies one event).
    """
    state = outcome.state
    progress = True
    rounds = 0
    limit = 1 if state is None else (len(state.seen) + len(state.parked or ()) + 1) ** 2
    while progress and state is not None and state.parked and rounds < limit:
        progress = False
        rounds += 1
        entries = state.parked
        for index, entry in enumerate(entries):
            event = decode_ticket_event(entry[2])
            if event.at != entry[0]:  # applied redated (a wall-clock worker's now)
                event = event.redated(entry[0])
            trial = state.copy()
            trial.parked = entries[:index] + entries[index + 1 :] or None
            result = _fold(trial, event, policy)
            if result.rejected is None and result.state is not None and not result.duplicate:
                state = result.state
                outcome.emitted.extend(result.emitted)
                outcome.unparked.append(event.at)
                outcome.late = outcome.late or result.late
                progress = True
                break
    outcome.state = state


def _expire(state: TicketState, now: Micros | None, outcome: Outcome) -> None:
    """Reject the parked events whose time the watermark passed (all of them if `now` is None:
    the ticket is gone)."""
    parked = state.parked
    if parked is None:
        return
    keep: list[Parked] = []
    for entry in parked:
        if now is not None and entry[0] > now:
            keep.append(entry)
        else:
            outcome.expired.append(
                (
                    entry[2],
                    f"{entry[3]} (held until the watermark passed its time, "
                    f"{format_instant(entry[0])}: no earlier event of the ticket made it valid)",
                    entry[4],
                )
            )
    state.parked = keep or None


def _fold(state: TicketState | None, event: TicketEvent, policy: Policy) -> Outcome:
    """`handle` without parking: apply one event, or reject it."""
    if state is None:
        if event.type == "ticket.opened":
            return _open(event, policy)
        return Outcome(None, rejected=f"unknown ticket {event.ticket_id!r}: no ticket.opened seen")
    seen = state.seen
    if event.event_id in seen:
        known = state.known_digest(seen.index(event.event_id))
        if known and known != event.digest():
            return Outcome(state, rejected=CONFLICT)
        return Outcome(state, duplicate=True)
    at = event.at
    through = state.timers_through
    complete = len(state.history) == STEP * len(seen)  # (`has_history`, inlined)
    if (at < state.last_event_at or (through is not None and at <= through)) and complete:
        return _correct(state, event, policy)
    reason = blocked(state.status, event.type)
    if reason is not None:  # before firing timers: a parked event has no effect yet
        stopped = Outcome(state, rejected=reason)
        stopped.blocked = True
        return stopped
    # (A state written before histories were kept applies a late event at its latest time.)
    now = at if at > state.last_event_at else state.last_event_at
    out: list[dict[str, Any]] = []
    if state.policy_version != policy.version:
        _adopt_policy(state, policy, state.last_event_at, out)
    root = policy
    if policy.policies:
        policy = policy_of(state, root)
    timers = state.timers
    if timers and timers[0].due_at < now and not _fire_due(state, policy, now, False, out):
        if event.type == "ticket.opened":
            opened = _open(event, root)
            opened.emitted[:0] = out
            return opened
        return Outcome(
            None, out, rejected=f"unknown ticket {event.ticket_id!r}: closed and forgotten"
        )
    reason = _apply(state, event, policy, now, out)
    if reason is not None:
        return Outcome(state, out, rejected=reason)
    if complete:
        state.record(event, now)
    seen.append(event.event_id)
    if state.digests is not None:
        state.digests.append(event.digest())
    state.last_event_at = now
    return Outcome(state, out)


# ---------------------------------------------------------------------------------------------
# Late events: fold in at their own time, emit the difference


def _correct(state: TicketState, event: TicketEvent, policy: Policy) -> Outcome:
    """Apply an event that comes after its ticket has moved past its time.

    The ticket's applied events are replayed twice from its report, without and with the late
    event in its place (by event time), each swept to the time the ticket's timers had fired
    through; what the first emitted and the second does not is retracted, what the second
    emits anew is issued. The state becomes the second replay's. `state` itself is unchanged
    if the event is rejected.
    """
    at = event.at
    through = state.timers_through
    ticket_time = state.last_event_at if through is None else max(state.last_event_at, through)
    if ticket_time - at > CORRECTION_HORIZON:
        return Outcome(
            state,
            rejected=f"field 'occurred_at': {format_instant(at)} is more than "
            f"{CORRECTION_HORIZON // DAY} days before ticket {state.ticket_id!r} reached "
            f"{format_instant(ticket_time)}: beyond the correction horizon",
            late=True,
            beyond_horizon=True,
        )
    if event.type == "ticket.opened":
        return Outcome(
            state, rejected=f"ticket {state.ticket_id!r} is already open (opened by another event)"
        )
    events = state.applied_events()
    _, old, _, _, _ = _replay(state, events, policy, -1)
    position = len(events)
    while position > 0 and events[position - 1].at > at:
        position -= 1
    events.insert(position, event)
    after, new, reason, stopped, displaced = _replay(state, events, policy, position)
    if reason is not None or after is None:
        rejected = Outcome(state, rejected=reason or "the ticket's replay ended it", late=True)
        rejected.blocked = stopped
        return rejected
    after.parked = sorted([*(state.parked or ()), *displaced]) if displaced else state.parked
    revisions = dict(state.revisions) if state.revisions else {}
    fresh = {record["event_id"]: record for record in new}
    kept = {record["event_id"]: record for record in old}
    out: list[dict[str, Any]] = []
    at_text = format_instant(at)
    for record in old:
        base = record["event_id"]
        if fresh.get(base) != record:
            revision = revisions.get(base, 0)
            out.append(_retraction(record, revised_id(base, revision), at_text))
            revisions[base] = revision + 1
    for record in new:
        base = record["event_id"]
        if kept.get(base) != record:
            revision = revisions.get(base, 0)
            if revision:
                record = {**record, "event_id": revised_id(base, revision)}
            out.append(record)
    after.revisions = revisions or None
    if state.digests is not None:  # digests of a state older than them: kept as they were
        digests = dict(zip(state.seen, state.digests, strict=False))
        digests[event.event_id] = event.digest()
        after.digests = [digests.get(event_id, 0) for event_id in after.seen]
    return Outcome(after, out, late=True)


def _replay(
    state: TicketState, events: list[TicketEvent], policy: Policy, watch: int
) -> tuple[TicketState | None, list[dict[str, Any]], str | None, bool, list[Parked]]:
    """Fold a ticket's events (in event-time order) from scratch, then sweep its timers through
    `state.timers_through`; returns (state, emitted, why event `watch` was rejected or None,
    whether only for the ticket's status, the events displaced).

    An event the new order makes inapplicable is left out; if only for the ticket's status (a
    pause now right after another pause, its resume still to come) it is displaced: parked
    again, as it came (`_correct`), to be folded in when the event it needs comes.
    """
    current: TicketState | None = None
    out: list[dict[str, Any]] = []
    reason: str | None = None
    stopped = False
    displaced: list[Parked] = []
    for index, event in enumerate(events):
        outcome = _fold(current, event, policy)
        out.extend(outcome.emitted)
        if outcome.rejected is not None and index == watch:
            reason = outcome.rejected
            stopped = outcome.blocked
        elif outcome.blocked and outcome.rejected is not None:
            displaced.append((event.at, event.event_id, _as_json(event), outcome.rejected, -1))
        if outcome.state is not None or current is None:
            current = outcome.state
    through = state.timers_through
    if current is not None and through is not None:
        swept = advance(current, through, policy)
        out.extend(swept.emitted)
        current = swept.state
    return current, out, reason, stopped, displaced


def _retraction(record: dict[str, Any], issued: str, at: str) -> dict[str, Any]:
    """`sla.retracted`: the SLA event `issued` no longer holds (a late event changed it)."""
    return {
        "event_id": retraction_id(issued),
        "type": "sla.retracted",
        "ticket_id": record["ticket_id"],
        "severity": record["severity"],
        "metric": record["metric"],
        "due_at": record["due_at"],
        "at": at,
        "cycle": record["cycle"],
        "policy": record["policy"],
        "customer_id": record["customer_id"],
        "group": record["group"],
        "assignee": record["assignee"],
        "retracts": issued,
        "retracted_type": record["type"],
    }


def _open(event: TicketEvent, root: Policy) -> Outcome:
    severity = event.severity
    at = event.at
    state = TicketState(
        ticket_id=event.ticket_id,
        severity=severity or 0,
        reported_at=at,
        last_event_at=at,
        policy_version=root.version,
        customer_id=event.customer_id,
        resolution_spans=[(at, None)],
        seen=[event.event_id],
        group=event.group,
        assignee=event.assignee,
        channel=event.channel,
        tags=event.tags,
        attributes=event.attributes,
    )
    state.record(event, at)
    policy = root
    if root.policies:
        policy = root.select(state)
        state.policy_name = policy.name
    if severity is None or severity not in policy.severities:
        return Outcome(
            None, rejected=f"field 'severity': {severity} is not defined in policy {policy.name!r}"
        )
    out: list[dict[str, Any]] = []
    _schedule(state, policy, at, out)
    return Outcome(state, out)


def _close_last(spans: list[Span], at: Micros) -> None:
    if spans and spans[-1][1] is None:
        spans[-1] = (spans[-1][0], at)


def _apply(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[dict[str, Any]]
) -> str | None:
    """Change the state for one event; a string is the reason it cannot apply."""
    if state.status == "closed":
        return f"ticket {state.ticket_id!r} is closed"
    return _APPLY[event.type](state, event, policy, now, out)


# One function per event type, `(state, event, policy, now, out) -> rejection or None`, found
# by the event's `type` in one dict lookup rather than a chain of comparisons.
_Apply = Callable[[TicketState, TicketEvent, Policy, Micros, list[dict[str, Any]]], str | None]


def _apply_opened(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[dict[str, Any]]
) -> str | None:
    return f"ticket {state.ticket_id!r} is already open (opened by another event)"


def _apply_severity_changed(
    state: TicketState,
    event: TicketEvent,
    policy: Policy,
    now: Micros,
    out: list[dict[str, Any]],
) -> str | None:
    severity = event.severity
    if severity is None or severity not in policy.severities:
        return f"field 'severity': {severity} is not defined in policy {policy.name!r}"
    if severity != state.severity:
        state.severity = severity
        if state.status != "resolved":
            _schedule(state, policy, now, out)
    return None


def _apply_responded(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[dict[str, Any]]
) -> str | None:
    if _first_response_end(state) is None:
        _met(state, policy, "first_response", now, out)
        state.responded_at = now
        state.timers = [t for t in state.timers if t.metric != "first_response"]
    if state.reply_since is not None:  # answers the customer's reply: the round is done
        if policy.severities[state.severity].next_response is not None:
            _met(state, policy, "next_response", now, out)
            state.timers = [t for t in state.timers if t.metric != "next_response"]
        state.reply_since = None
    acks = state.acks
    if acks is not None and not all(ack[2] for ack in acks):  # progress: no ack timeout
        state.acks = [(level, since, True) for level, since, _ in acks]
        state.timers = [t for t in state.timers if not t.rule.endswith(":ack")]
    if state.status == "open" or state.status == "paused":  # an update: the next period begins
        periodic = policy.severities[state.severity].periodic_update is not None
        if periodic and state.update_since is not None:
            _met(state, policy, "periodic_update", now, out)
        state.update_round += 1
        state.update_since = now
        if periodic:
            _schedule(state, policy, now, out, _PERIODIC)
    return None


def _apply_customer_replied(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[dict[str, Any]]
) -> str | None:
    """A public message from the customer: starts a next-response round if the ticket was
    answered since the customer's last message (first response given, no round open). A reply
    while a round is open leaves it running from the oldest unanswered message (Zendesk's next
    reply time); one before the first response is first response's; one on a resolved ticket
    starts nothing (a reopen, then a reply, does)."""
    if (
        state.reply_since is None
        and state.status in ("open", "paused")
        and _first_response_end(state) is not None
    ):
        state.reply_round += 1
        state.reply_since = now
        if policy.severities[state.severity].next_response is not None:
            _schedule(state, policy, now, out, _NEXT_RESPONSE)
    return None


def _article(word: str) -> str:
    """`an open`, `a paused`: the indefinite article before a status."""
    return ("an " if word[:1] in "aeiou" else "a ") + word


_NEEDS: Final[dict[str, tuple[str, str]]] = {
    "ticket.paused": ("open", "pause"),
    "ticket.resumed": ("paused", "resume"),
    "ticket.reopened": ("resolved", "reopen"),
}
"""The lifecycle events that need a status: type -> (status needed, verb)."""


def blocked(status: str, kind: str) -> str | None:
    """Why an event of type `kind` cannot apply to a ticket in `status` (None: it can). Only
    about the status, so an earlier event still to come (a pause before a resume) may lift it;
    a closed ticket is final (`_apply` rejects everything on it)."""
    needs = _NEEDS.get(kind)
    if needs is None or status == needs[0] or status == "closed":
        return None
    return f"cannot {needs[1]} {_article(status)} ticket"


def _apply_paused(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[dict[str, Any]]
) -> str | None:
    if state.status != "open":
        return blocked(state.status, event.type)
    state.status = "paused"
    state.pauses.append((now, None))
    _schedule(state, policy, now, out, _CLOCKED)
    return None


def _apply_resumed(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[dict[str, Any]]
) -> str | None:
    if state.status != "paused":
        return blocked(state.status, event.type)
    state.status = "open"
    _close_last(state.pauses, now)
    _schedule(state, policy, now, out, _CLOCKED)
    return None


def _apply_resolved(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[dict[str, Any]]
) -> str | None:
    if state.status != "resolved":
        _close_last(state.pauses, now)
        _met(state, policy, "resolution", now, out)
        _close_last(state.resolution_spans, now)
        if _first_response_end(state) is None:
            state.first_response_stopped_at = now
        state.status = "resolved"
        state.escalation_active = False
        state.timers = []
        state.reply_since = None  # an open round stops without sla.met (as first response)
        state.update_since = None
    return None


def _apply_closed(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[dict[str, Any]]
) -> str | None:
    _apply_resolved(state, event, policy, now, out)
    state.status = "closed"
    state.timers = [_new_timer(Timer, (now + CLOSED_RETENTION, _PURGE_RANK, "ticket", "purge"))]
    return None


def _apply_reopened(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[dict[str, Any]]
) -> str | None:
    if state.status != "resolved":
        return blocked(state.status, event.type)
    state.status = "open"
    state.cycle += 1
    state.resolution_spans.append((now, None))
    state.escalation_active = True
    state.acks = None  # the ticket came back: whoever took its escalations may not hold it
    state.update_round += 1  # an update is due a period after the reopen
    state.update_since = now
    _schedule(state, policy, now, out, _REOPENED)
    return None


_REOPENED: Final = ("resolution", "periodic_update", "escalation")
_PURGE_RANK: Final = (3, 0.0)
"""The purge timer's rank (after every SLA timer due at the same instant), one tuple for all."""


def _apply_assigned(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[dict[str, Any]]
) -> str | None:
    """The event states the current assignment: both fields replace what was known."""
    before = state.group
    state.group = event.group
    state.assignee = event.assignee
    reason = _rematch(state, policy, now, out)
    if reason is not None:
        state.group = before
    return reason


def _apply_updated(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[dict[str, Any]]
) -> str | None:
    """The routing attributes given replace what was known; the ticket may change policy."""
    before = (state.group, state.channel, state.tags, state.attributes)
    if event.has_group:
        state.group = event.group
    if event.channel is not None:
        state.channel = event.channel
    if event.tags is not None:
        state.tags = event.tags
    if event.attributes is not None:
        state.attributes = event.attributes
    reason = _rematch(state, policy, now, out)
    if reason is not None:
        state.group, state.channel, state.tags, state.attributes = before
    return reason


def _rematch(
    state: TicketState, policy: Policy, now: Micros, out: list[dict[str, Any]]
) -> str | None:
    """After the ticket's attributes changed: if another policy of the file now matches, the
    ticket moves to it and every unfired timer is recomputed from the report time under it
    (overdue ones fire now, as after a severity change). A string: why it cannot move."""
    root = policy.root
    if not root.policies:
        return None
    chosen = root.select(state)
    if chosen is policy:
        return None
    if state.severity not in chosen.severities:
        return (
            f"field 'severity': {state.severity} is not defined in policy {chosen.name!r}, "
            "which the ticket's new attributes select"
        )
    state.policy_name = chosen.name
    if state.status in ("open", "paused"):
        _schedule(state, chosen, now, out)
    return None


def _apply_acknowledged(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[dict[str, Any]]
) -> str | None:
    """Someone took the escalation: `event.level` (None: every level fired so far) repeats
    no more; a level not fired yet is left alone (nothing to stop). Acknowledged again, the
    timeout counts from the new acknowledgement."""
    wanted = event.level
    taken = [
        esc.level
        for esc in policy.severities[state.severity].escalations
        if esc.key in state.fired and (wanted is None or esc.level == wanted)
    ]
    if not taken:
        return None
    kept = [ack for ack in state.acks or [] if ack[0] not in taken]
    state.acks = sorted(kept + [(level, now, False) for level in taken])
    if state.escalation_active:
        _schedule(state, policy, now, out, _ESCALATION)
    return None


_ESCALATION: Final = ("escalation",)


def _apply_nothing(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[dict[str, Any]]
) -> str | None:
    return None


_APPLY: Final[dict[str, _Apply]] = {
    "ticket.opened": _apply_opened,
    "ticket.severity_changed": _apply_severity_changed,
    "ticket.responded": _apply_responded,
    "ticket.customer_replied": _apply_customer_replied,
    "ticket.paused": _apply_paused,
    "ticket.resumed": _apply_resumed,
    "ticket.resolved": _apply_resolved,
    "ticket.closed": _apply_closed,
    "ticket.reopened": _apply_reopened,
    "ticket.assigned": _apply_assigned,
    "ticket.customer_notified": _apply_nothing,
    "ticket.updated": _apply_updated,
    "ticket.escalation_acknowledged": _apply_acknowledged,
}
