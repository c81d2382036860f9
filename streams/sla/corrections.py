"""Late events: fold an event in at its own time and emit the difference as a correction.

An event that comes after its ticket has moved past it (a later event, or a fired timer due at
or after it) is folded in where it belongs by replaying the ticket's applied events
(`TicketState.history`) without and with it; what no longer holds is retracted
(`sla.retracted`), what now does is issued with a new id (`events.ids.revised_id`), so a
consumer that deduplicates on ids never mistakes a corrected event for the one it replaces.

The replays run the fold itself, which `correct` is given (`fold`, `sweep`) rather than
imports: the fold calls `correct` for a late event, and this module stays below it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from events.ids import retraction_id, revised_id
from events.instants import DAY, Micros, format_instant
from events.records import TicketEvent
from events.sla_records import NOT_AGREED, NOT_OWNED, Agreed, Owned, SlaRecord, SlaRetracted
from streams.sla.outcome import Outcome
from streams.sla.parking import as_json
from streams.sla.rules import Policy
from streams.sla.state import Parked, TicketState

CORRECTION_HORIZON: Final[Micros] = 7 * DAY
"""How far behind its ticket's own time a late event may be and still be folded in with a
correction; an older one is rejected (counted, dead-lettered by the engine): SLA events a week
old are not rewritten. Equal to `fold.CLOSED_RETENTION`, so a ticket in state can always be
corrected within it."""

Fold = Callable[[TicketState | None, TicketEvent, Policy], Outcome]
"""`fold._fold`: apply one event to a ticket (None: none yet), or reject it."""
Sweep = Callable[[TicketState, Micros, Policy], Outcome]
"""`fold.advance`: fire the ticket's timers due at or before an instant."""


def correct(
    state: TicketState, event: TicketEvent, policy: Policy, fold: Fold, sweep: Sweep
) -> Outcome:
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
    _, old, _, _, _ = _replay(state, events, policy, -1, fold, sweep)
    position = len(events)
    while position > 0 and events[position - 1].at > at:
        position -= 1
    events.insert(position, event)
    after, new, reason, stopped, displaced = _replay(state, events, policy, position, fold, sweep)
    if reason is not None or after is None:
        rejected = Outcome(state, rejected=reason or "the ticket's replay ended it", late=True)
        rejected.blocked = stopped
        return rejected
    after.parked = sorted([*(state.parked or ()), *displaced]) if displaced else state.parked
    revisions = dict(state.revisions) if state.revisions else {}
    fresh = {record["event_id"]: record for record in new}
    kept = {record["event_id"]: record for record in old}
    out: list[SlaRecord] = []
    for record in old:
        base = record["event_id"]
        if fresh.get(base) != record:
            revision = revisions.get(base, 0)
            out.append(_retraction(record, revised_id(base, revision), at))
            revisions[base] = revision + 1
    for record in new:
        base = record["event_id"]
        if kept.get(base) != record:
            revision = revisions.get(base, 0)
            if revision:
                record = _revised(record, revised_id(base, revision))
            out.append(record)
    after.revisions = revisions or None
    if state.digests is not None:  # digests of a state older than them: kept as they were
        digests = dict(zip(state.seen, state.digests, strict=False))
        digests[event.event_id] = event.digest()
        after.digests = [digests.get(event_id, 0) for event_id in after.seen]
    return Outcome(after, out, late=True)


def _replay(
    state: TicketState,
    events: list[TicketEvent],
    policy: Policy,
    watch: int,
    fold: Fold,
    sweep: Sweep,
) -> tuple[TicketState | None, list[SlaRecord], str | None, bool, list[Parked]]:
    """Fold a ticket's events (in event-time order) from scratch, then sweep its timers through
    `state.timers_through`; returns (state, emitted, why event `watch` was rejected or None,
    whether only for the ticket's status, the events displaced).

    An event the new order makes inapplicable is left out; if only for the ticket's status (a
    pause now right after another pause, its resume still to come) it is displaced: parked
    again, as it came (`correct`), to be folded in when the event it needs comes.
    """
    current: TicketState | None = None
    out: list[SlaRecord] = []
    reason: str | None = None
    stopped = False
    displaced: list[Parked] = []
    for index, event in enumerate(events):
        outcome = fold(current, event, policy)
        out.extend(outcome.emitted)
        if outcome.rejected is not None and index == watch:
            reason = outcome.rejected
            stopped = outcome.blocked
        elif outcome.blocked and outcome.rejected is not None:
            displaced.append((event.at, event.event_id, as_json(event), outcome.rejected, -1))
        if outcome.state is not None or current is None:
            current = outcome.state
    through = state.timers_through
    if current is not None and through is not None:
        swept = sweep(current, through, policy)
        out.extend(swept.emitted)
        current = swept.state
    return current, out, reason, stopped, displaced


def _revised(record: SlaRecord, event_id: str) -> SlaRecord:
    """`record` issued again under `event_id` (a new dict: the replay's own is unchanged)."""
    revised = record.copy()
    revised["event_id"] = event_id
    return revised


def _retraction(record: SlaRecord, issued: str, at: Micros) -> SlaRetracted:
    """`sla.retracted` at `at`: the SLA event `issued` no longer holds (a late event changed
    it). A retraction is never itself retracted (the replays emit none)."""
    assert record["type"] != "sla.retracted"
    agreed: Agreed = NOT_AGREED  # a file with OLAs: the withdrawn event's agreement
    if "agreement" in record:
        agreed = {"agreement": record["agreement"]}
    owned: Owned = NOT_OWNED
    if "ownership_group" in record:
        owned = {"ownership_group": record["ownership_group"]}
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
        **agreed,
        **owned,
        "retracts": issued,
        "retracted_type": record["type"],
    }
