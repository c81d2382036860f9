"""Embedded replay: the SLA core over a JSONL history with event time as the clock.

Timers due strictly before an event fire before it; at the end the clock advances to `until`
(inclusive). Output is in firing order: by fire time, then ticket id, then the ticket's own
order. The stream processor runs the same core, so both emit the same events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from events.codec import InvalidEvent, decode_ticket_event
from events.instants import Micros
from events.records import TicketEvent
from streams.sla.machine import advance, handle
from streams.sla.rules import Policy
from streams.sla.state import TicketState
from streams.sla.timer_index import TimerIndex


@dataclass(slots=True)
class ReplayCounts:
    events: int = 0
    emitted: int = 0
    invalid: int = 0
    rejected: int = 0
    duplicates: int = 0
    faults: int = 0
    """Tickets whose timer raised in the core: disarmed until their next event."""


class Replayer:
    """Many tickets under one event-time clock: a dict of states and one timer index."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.tickets: dict[str, TicketState] = {}
        self.index = TimerIndex()
        self.counts = ReplayCounts()
        self.clock: Micros | None = None

    def feed(self, event: TicketEvent) -> tuple[list[dict[str, Any]], str | None]:
        """Fire what is due before the event, then apply it; returns (emitted, rejection)."""
        at = event.at
        head = self.index.peek()
        fired: list[dict[str, Any]] | None = None
        if head is not None and head[0] < at:
            fired = self.advance(at, inclusive=False)
        elif self.clock is None or at > self.clock:
            self.clock = at
        ticket_id = event.ticket_id
        outcome = handle(self.tickets.get(ticket_id), event, self.policy)
        counts = self.counts
        counts.events += 1
        self._store(ticket_id, outcome.state)
        emitted = outcome.emitted
        if emitted:
            counts.emitted += len(emitted)
        if fired:
            fired.extend(emitted)
            emitted = fired
        if outcome.duplicate:
            counts.duplicates += 1
        if outcome.rejected is not None:
            counts.rejected += 1
        return emitted, outcome.rejected

    def advance(self, now: Micros, inclusive: bool = True) -> list[dict[str, Any]]:
        """Fire every timer due up to `now`, in global due-time order."""
        if self.clock is None or now > self.clock:
            self.clock = now
        out: list[dict[str, Any]] = []
        while (head := self.index.pop_before(now, inclusive)) is not None:
            due, ticket_id = head
            try:
                outcome = advance(self.tickets[ticket_id], due, self.policy)
            except Exception:  # a fault in the core: disarm the ticket, as the worker does
                self.counts.faults += 1
                continue
            self._store(ticket_id, outcome.state)
            out.extend(outcome.emitted)
        self.counts.emitted += len(out)
        return out

    def _store(self, ticket_id: str, state: TicketState | None) -> None:
        if state is None:
            self.tickets.pop(ticket_id, None)
            self.index.discard(ticket_id)
        else:
            self.tickets[ticket_id] = state
            self.index.set(ticket_id, state.next_due)

    def run(
        self,
        lines: Iterable[bytes | str],
        until: Micros | None = None,
        on_invalid: Callable[[int, str], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Replay JSONL lines; invalid or rejected lines go to `on_invalid(line_number, reason)`."""
        return _run(self, lines, until, on_invalid)


def replay_lines(
    lines: Iterable[bytes | str], policy: Policy, until: Micros | None = None
) -> list[dict[str, Any]]:
    """All SLA events of a history, for callers that want a list."""
    return list(Replayer(policy).run(lines, until))


def _run(
    replayer: Replayer,
    lines: Iterable[bytes | str],
    until: Micros | None,
    on_invalid: Callable[[int, str], None] | None,
) -> Iterator[dict[str, Any]]:
    last: Micros | None = None
    feed = replayer.feed
    for number, line in enumerate(lines, start=1):
        try:
            event = decode_ticket_event(line)
        except InvalidEvent as exc:
            if not line.strip():  # blank lines are skipped (they never decode)
                continue
            replayer.counts.invalid += 1
            if on_invalid:
                on_invalid(number, str(exc))
            continue
        try:
            emitted, rejected = feed(event)
        except Exception as exc:  # a fault in the core must not stop the replay
            replayer.counts.invalid += 1
            if on_invalid:
                on_invalid(number, f"internal error: {type(exc).__name__}")
            continue
        if emitted:
            yield from emitted
        if rejected is not None and on_invalid:
            on_invalid(number, rejected)
        at = event.at
        if last is None or at > last:
            last = at
    end = until if until is not None else last
    if end is not None:
        yield from replayer.advance(end)
