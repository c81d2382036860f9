"""The SLA fold: a pure function over one ticket's events, with per-ticket timers.

    handle(state, event, policy)  -> Outcome(state, emitted SLA events)
    advance(state, now, policy)   -> Outcome(state, SLA events due up to `now`)

Nothing here reads a clock or does I/O: time comes in with the events and with `now`, so the
replay command and the Kafka stream processor run this same code and emit the same events.
`handle` first fires the ticket's own timers due strictly before the event (`timers`), so a
ticket's output order does not depend on how often the shell calls `advance`.

Rules (see docs, "SLA rules"):
- every timer (warning threshold, breach, escalation level) fires at most once per ticket,
  at its due time, in due-time order; deadlines are inclusive (a reply at the due instant is
  in time);
- a timer made overdue by a change (severity change, reopen, policy change) fires at the time
  of the change, with `due_at` showing the recomputed deadline;
- every event applies at its own time: one that comes after the ticket has moved past it is
  folded in where it belongs, and the difference emitted as a correction (`corrections`);
- an event that cannot apply yet only because of the ticket's status waits in its state
  (`parking`);
- a metric fulfilled while its clock is paused reports the deadline as if the clock resumed
  at the fulfilment (the time left then, counted on from there): one rule for every metric.

The modules below it: `spans` (clock arithmetic), `timers` (scheduling and firing, with
`timer_key.TimerKey`), `agreements` (the OLAs' ownership cycles, who held the ticket),
`parking`, `corrections`, `outcome`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from events.codec import decode_ticket_event
from events.instants import DAY, Micros
from events.records import TicketEvent
from events.sla_records import SlaRecord
from streams.sla.agreements import track
from streams.sla.corrections import correct
from streams.sla.manual_stops import apply_breach_reason, apply_started, apply_stopped
from streams.sla.outcome import Outcome
from streams.sla.parking import as_json, blocked, expire
from streams.sla.rules import Policy
from streams.sla.spans import first_response_end
from streams.sla.state import STEP, UNOPENED, Route, Span, TicketState
from streams.sla.ticket_calendars import first_route, note_route
from streams.sla.timers import (
    CLOCKED,
    NEXT_RESPONSE,
    PERIODIC,
    REOPENED,
    close_stop,
    fire_due,
    met,
    purge_timer,
    schedule,
)
from streams.sla.versions import why_kept

CLOSED_RETENTION: Final[Micros] = 7 * DAY
"""How long a closed ticket's ids are remembered, so redelivered events are still recognised."""


def policy_of(state: TicketState, root: Policy) -> Policy:
    """The policy of the file the ticket runs under (the file's only one, or its choice)."""
    if not root.policies:
        return root
    found = root.by_name.get(state.policy_name)
    return found if found is not None else root.select(state)


def _adopt_policy(state: TicketState, root: Policy, now: Micros, out: list[SlaRecord]) -> None:
    """A worker restarted with another policy version: choose the ticket's policy again and
    recompute the ticket's timers under it."""
    if state.policy_version != root.version:
        state.policy_version = root.version
        policy = root.select(state)
        state.policy_name = policy.name if root.policies else ""
        if state.status != "closed" and state.severity in policy.severities:
            schedule(state, policy, now, out)


def versioned(
    state: TicketState,
    root: Policy,
    upto: Micros,
    out: list[SlaRecord],
    kept: list[tuple[str, str]],
) -> Policy:
    """The version (a root policy of `root.book`) timing the ticket at `upto`, after moving it
    through the `open-tickets` rollouts with an instant since its own time and at or before
    `upto` (see `streams.sla.versions`): at each, its timers due before the instant fire under
    the version it leaves, then its unfired timers are recomputed under the new one from their
    original start, the overdue firing at the instant. The instant counts as a fired timer's
    due time (`timers_through`), so an event dated before it that comes later is folded in by
    a replay, under the versions of its time. A ticket the new version cannot time stays
    (`kept` gets the version and why). A ticket on a version the book does not know (a state
    written under a single-file start) is adopted by the newest version, as before."""
    book = root.book
    assert book is not None
    own = book.version(state.policy_version)
    if own is None:
        newest = book.newest
        _adopt_policy(state, newest, state.last_event_at, out)
        return newest
    through = state.timers_through
    after = state.last_event_at if through is None else max(state.last_event_at, through)
    while state.status == "open" or state.status == "paused":
        found = book.switch(state.policy_version, after, upto)
        if found is None:
            break
        rollout, version = found
        instant = rollout.instant
        current = policy_of(state, own) if own.policies else own
        if state.timers and state.timers[0].due_at < instant:
            fire_due(state, current, instant, False, out)
        reason = why_kept(state, version)
        if reason is None:
            state.policy_version = version.version
            chosen = version.select(state) if version.policies else version
            state.policy_name = chosen.name if version.policies else ""
            schedule(state, chosen, instant, out)
            own = version
        else:
            kept.append((version.version, reason))
        if state.timers_through is None or state.timers_through < instant:
            state.timers_through = instant
        after = instant
    return own


def advance(state: TicketState, now: Micros, policy: Policy) -> Outcome:
    """Fire every timer of the ticket due at or before `now`, in due-time order; reject its
    parked events dated at or before `now` (`Outcome.expired`)."""
    if state.status == UNOPENED:  # a placeholder: parked events only
        waiting = Outcome(state)
        expire(state, now, waiting)
        waiting.state = state if state.parked else None
        return waiting
    out: list[SlaRecord] = []
    kept: list[tuple[str, str]] = []
    if policy.book is not None:
        policy = versioned(state, policy, now, out, kept)
    elif state.policy_version != policy.version:
        _adopt_policy(state, policy, state.last_event_at, out)
    if policy.policies:
        policy = policy_of(state, policy)
    alive = fire_due(state, policy, now, True, out)
    outcome = Outcome(state if alive else None, out)
    outcome.kept = kept
    if state.parked is not None:
        expire(state, now if alive else None, outcome)
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
        entry = (event.at, event.event_id, text or as_json(event), outcome.rejected, origin)
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


def _unpark(outcome: Outcome, policy: Policy) -> None:
    """Try the state's parked events again, in event-time order, until none applies.

    A correction may displace an applied event back into `parked` (`corrections`); `rounds` bounds
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
        return correct(state, event, policy, _fold, advance)
    reason = blocked(state.status, event.type)
    if reason is not None:  # before firing timers: a parked event has no effect yet
        stopped = Outcome(state, rejected=reason)
        stopped.blocked = True
        return stopped
    # (A state written before histories were kept applies a late event at its latest time.)
    now = at if at > state.last_event_at else state.last_event_at
    out: list[SlaRecord] = []
    kept: list[tuple[str, str]] = []
    root = policy
    if policy.book is not None:
        policy = versioned(state, root, now, out, kept)
    elif state.policy_version != policy.version:
        _adopt_policy(state, policy, state.last_event_at, out)
    if policy.policies:
        policy = policy_of(state, policy)
    timers = state.timers
    if timers and timers[0].due_at < now and not fire_due(state, policy, now, False, out):
        if event.type == "ticket.opened":
            opened = _open(event, root)
            opened.emitted[:0] = out
            return opened
        return Outcome(
            None, out, rejected=f"unknown ticket {event.ticket_id!r}: closed and forgotten"
        )
    reason = _apply(state, event, policy, now, out)
    if reason is not None:
        rejected = Outcome(state, out, rejected=reason)
        rejected.kept = kept
        return rejected
    agreements = policy.root
    if agreements.attribution or agreements.olas or state.cycles is not None:
        track(state, policy, now, out)
    if complete:
        state.record(event, now)
    seen.append(event.event_id)
    if state.digests is not None:
        state.digests.append(event.digest())
    state.last_event_at = now
    applied = Outcome(state, out)
    applied.kept = kept
    return applied


def _open(event: TicketEvent, root: Policy) -> Outcome:
    severity = event.severity
    at = event.at
    if root.book is not None:  # the version in effect when the ticket is opened
        root = root.book.attach(at)
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
    first_route(state, policy)
    if severity is None or severity not in policy.severities:
        return Outcome(
            None, rejected=f"field 'severity': {severity} is not defined in policy {policy.name!r}"
        )
    out: list[SlaRecord] = []
    schedule(state, policy, at, out)
    if root.attribution or root.olas:
        track(state, policy, at, out)
    return Outcome(state, out)


def _close_last(spans: list[Span], at: Micros) -> None:
    if spans and spans[-1][1] is None:
        spans[-1] = (spans[-1][0], at)


def _apply(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
) -> str | None:
    """Change the state for one event; a string is the reason it cannot apply."""
    if state.status == "closed":
        return f"ticket {state.ticket_id!r} is closed"
    return _APPLY[event.type](state, event, policy, now, out)


# One function per event type, `(state, event, policy, now, out) -> rejection or None`, found
# by the event's `type` in one dict lookup rather than a chain of comparisons.
_Apply = Callable[[TicketState, TicketEvent, Policy, Micros, list[SlaRecord]], str | None]


def _apply_opened(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
) -> str | None:
    return f"ticket {state.ticket_id!r} is already open (opened by another event)"


def _apply_severity_changed(
    state: TicketState,
    event: TicketEvent,
    policy: Policy,
    now: Micros,
    out: list[SlaRecord],
) -> str | None:
    severity = event.severity
    if severity is None or severity not in policy.severities:
        return f"field 'severity': {severity} is not defined in policy {policy.name!r}"
    if severity != state.severity:
        state.severity = severity
        if state.status != "resolved":
            schedule(state, policy, now, out)
    return None


def _apply_responded(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
) -> str | None:
    if first_response_end(state) is None:
        met(state, policy, "first_response", now, out)
        state.responded_at = now
        state.timers = [t for t in state.timers if t.metric != "first_response"]
    if state.reply_since is not None:  # answers the customer's reply: the round is done
        if policy.severities[state.severity].next_response is not None:
            met(state, policy, "next_response", now, out)
            state.timers = [t for t in state.timers if t.metric != "next_response"]
        state.reply_since = None
    acks = state.acks
    if acks is not None and not all(ack[2] for ack in acks):  # progress: no ack timeout
        state.acks = [(level, since, True) for level, since, _ in acks]
        state.timers = [t for t in state.timers if not t.key.name.endswith(":ack")]
    if state.status == "open" or state.status == "paused":  # an update: the next period begins
        periodic = policy.severities[state.severity].periodic_update is not None
        if periodic and state.update_since is not None:
            met(state, policy, "periodic_update", now, out)
        state.update_round += 1
        state.update_since = now
        if periodic:
            schedule(state, policy, now, out, PERIODIC)
    return None


def _apply_customer_replied(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
) -> str | None:
    """A public message from the customer: starts a next-response round if the ticket was
    answered since the customer's last message (first response given, no round open). A reply
    while a round is open leaves it running from the oldest unanswered message (Zendesk's next
    reply time); one before the first response is first response's; one on a resolved ticket
    starts nothing (a reopen, then a reply, does)."""
    if (
        state.reply_since is None
        and state.status in ("open", "paused")
        and first_response_end(state) is not None
    ):
        state.reply_round += 1
        state.reply_since = now
        if policy.severities[state.severity].next_response is not None:
            schedule(state, policy, now, out, NEXT_RESPONSE)
    return None


def _apply_paused(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
) -> str | None:
    if state.status != "open":
        return blocked(state.status, event.type)
    state.status = "paused"
    state.pauses.append((now, None))
    schedule(state, policy, now, out, CLOCKED)
    return None


def _apply_resumed(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
) -> str | None:
    if state.status != "paused":
        return blocked(state.status, event.type)
    state.status = "open"
    _close_last(state.pauses, now)
    schedule(state, policy, now, out, CLOCKED)
    return None


def _apply_resolved(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
) -> str | None:
    if state.status != "resolved":
        _close_last(state.pauses, now)
        close_stop(state, now)
        met(state, policy, "resolution", now, out)
        _close_last(state.resolution_spans, now)
        if first_response_end(state) is None:
            state.first_response_stopped_at = now
        state.status = "resolved"
        state.escalation_active = False
        state.timers = []
        state.reply_since = None  # an open round stops without sla.met (as first response)
        state.update_since = None
    return None


def _apply_closed(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
) -> str | None:
    _apply_resolved(state, event, policy, now, out)
    state.status = "closed"
    state.timers = [purge_timer(now + CLOSED_RETENTION)]
    return None


def _apply_reopened(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
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
    schedule(state, policy, now, out, REOPENED)
    return None


def _apply_assigned(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
) -> str | None:
    """The event states the current assignment: both fields replace what was known."""
    before, routes = state.group, state.routes
    state.group = event.group
    state.assignee = event.assignee
    reason = _rerouted(state, policy, now, out, before != state.group, routes)
    if reason is not None:
        state.group = before
    return reason


def _rerouted(
    state: TicketState,
    policy: Policy,
    now: Micros,
    out: list[SlaRecord],
    changed: bool,
    routes: list[Route] | None,
) -> str | None:
    """After the group or attributes changed: the ticket may move to another policy
    (`_rematch`), and a clock that takes its calendar or deadline from them is recomputed
    (`ticket_calendars`: the time before the change keeps its count). A string: why not."""
    dynamic = changed and note_route(state, policy, now)
    reason = _rematch(state, policy, now, out)
    if reason is not None:
        state.routes = routes
        return reason
    if dynamic and state.status in ("open", "paused"):
        schedule(state, policy_of(state, policy.root), now, out)
    return None


def _apply_updated(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
) -> str | None:
    """The routing attributes given replace what was known; the ticket may change policy."""
    before = (state.group, state.channel, state.tags, state.attributes)
    routes = state.routes
    if event.has_group:
        state.group = event.group
    if event.channel is not None:
        state.channel = event.channel
    if event.tags is not None:
        state.tags = event.tags
    if event.attributes is not None:
        state.attributes = event.attributes
    changed = before[0] != state.group or before[3] != state.attributes
    reason = _rerouted(state, policy, now, out, changed, routes)
    if reason is not None:
        state.group, state.channel, state.tags, state.attributes = before
    return reason


def _rematch(state: TicketState, policy: Policy, now: Micros, out: list[SlaRecord]) -> str | None:
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
        schedule(state, chosen, now, out)
    return None


def _apply_acknowledged(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
) -> str | None:
    """Someone took the escalation: `event.level` (None: every level fired so far) repeats
    no more; a level not fired yet is left alone (nothing to stop). Acknowledged again, the
    timeout counts from the new acknowledgement (docs/actions.md)."""
    wanted = event.level
    taken = [
        esc.level
        for esc in policy.severities[state.severity].escalations
        if esc.timer.fired in state.fired and (wanted is None or esc.level == wanted)
    ]
    if not taken:
        return None
    kept = [ack for ack in state.acks or [] if ack[0] not in taken]
    state.acks = sorted(kept + [(level, now, False) for level in taken])
    if state.escalation_active:
        schedule(state, policy, now, out, ESCALATION)
    return None


ESCALATION: Final = ("escalation",)


def _apply_nothing(
    state: TicketState, event: TicketEvent, policy: Policy, now: Micros, out: list[SlaRecord]
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
    "ticket.sla_stopped": apply_stopped,
    "ticket.sla_started": apply_started,
    "ticket.breach_reason": apply_breach_reason,
}
