"""Embedded replay: the SLA core over a JSONL history, with a watermark as the clock.

Event time, as in Flink: each ticket's events apply at their own `occurred_at`; timers of all
tickets fire when the watermark passes their due time. The watermark is the latest event time
seen (of accepted events only: a rejected record never moves it) minus `max_delay`, the bounded
out-of-orderness: lines of different tickets may come up to `max_delay` out of time order and
the result is the same as in time order. A ticket's own timers due before one of its events
fire before that event anyway (`machine.handle`). An event that comes after its ticket has
moved past its time is folded in with a correction (`sla.retracted`, then what now holds).

Output is in firing order, whatever the input order within `max_delay`: by `at`; at one
instant, what input events caused (in input order) before timers due then (a reply at the due
instant is in time), timers by ticket id, then the ticket's own order. Corrections go out as
soon as they are known. The stream processor runs the same core, so both emit the same events.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import cast

from events.codec import InvalidEvent, decode_ticket_event
from events.instants import Micros
from events.records import TicketEvent
from events.sla_records import SlaRecord, wire
from streams.sla.fold import advance, handle
from streams.sla.keyed_timers import DEFAULT_MAX_DELAY, KeyedTimers
from streams.sla.outcome import Outcome
from streams.sla.rules import Policy
from streams.sla.state import TicketState

__all__ = ["DEFAULT_MAX_DELAY", "ReplayCounts", "Replayer", "replay_lines"]


@dataclass(slots=True)
class ReplayCounts:
    events: int = 0
    emitted: int = 0
    invalid: int = 0
    rejected: int = 0
    duplicates: int = 0
    faults: int = 0
    """Tickets whose timer raised in the core: disarmed until their next event."""
    late: int = 0
    """Events older than the watermark when they came (beyond `max_delay`), duplicates and
    otherwise rejected ones not counted."""
    retracted: int = 0
    """`sla.retracted` corrections emitted."""
    beyond_horizon: int = 0
    """Late events rejected because they are older than the correction horizon."""
    held: int = 0
    """Events parked on arrival, waiting for an earlier event of their ticket."""


class Replayer(KeyedTimers[list[SlaRecord] | None]):
    """Many tickets under one watermark (`KeyedTimers`: the states, one timer index, the
    watermark), and an output buffer that puts what they emit in firing order.

    `max_delay` (microseconds) is the bounded out-of-orderness; 0 (the default here) treats
    the input as time-ordered, so `feed` returns everything an event causes at once.
    `storm_limit`: timers fired per fed event at most (0: no limit; the engine's turn is one
    fed event here); the output is the same, only later (a test of the shared sweep).
    """

    def __init__(self, policy: Policy, max_delay: Micros = 0, storm_limit: int = 0) -> None:
        super().__init__(policy, max_delay, storm_limit=storm_limit)
        self.counts = ReplayCounts()
        self._held: list[tuple[Micros, int, str, int, SlaRecord]] = []
        """Output not yet final: (at, 0 event / 1 timer, ticket id or "", sequence, record)."""
        self._seq = 0
        self._cancelled: set[str] = set()
        self.expired: list[tuple[str, str, int]] = []
        """(original JSON, reason, origin) of parked events rejected since the caller last took
        them (origin: as given to `feed`)."""
        self.kept: dict[str, dict[str, str]] = {}
        """Version -> ticket id -> why a rollout of that version did not move the ticket."""

    @property
    def tickets(self) -> dict[str, TicketState]:
        """The states by ticket id (all decoded: replay never stores a state's bytes)."""
        return cast(dict[str, TicketState], self.states)

    @property
    def clock(self) -> Micros | None:
        """The watermark: timers due before it have fired (at it too, after `advance`)."""
        return self.watermark

    def feed(
        self, event: TicketEvent, raw: bytes | str | None = None, origin: int = -1
    ) -> tuple[list[SlaRecord], str | None]:
        """Apply one event, then fire what the watermark passed; returns (final output, rejection).

        Output that is not final yet (it may still be preceded by output of lines to come) is
        held and comes out with a later call. An event parked by the core (`machine.handle`:
        it waits for an earlier event of its ticket) returns no rejection and moves no clock;
        if the watermark passes it still parked, it lands in `expired`.
        `raw`: the event's original JSON, kept while it is parked; `origin`: where it was read
        (a line number), given back with it if it expires.
        """
        at = event.at
        ticket_id = event.ticket_id
        counts = self.counts
        if self.storm_limit:
            self.new_turn()
        state = self.get(ticket_id)
        # Time-ordered input with nothing held: if the ticket has no timer of its own due
        # before the event, all the event causes is at its time, after whatever the sweep
        # fires for other tickets, and both go out in order without the buffer.
        direct = (
            self.max_delay == 0
            and not self._held
            and (state is None or not state.timers or state.timers[0].due_at >= at)
            and (state is None or state.policy_version == self.policy.version)
            and self.policy.book is None
            and not self.storm_limit
        )
        outcome = handle(state, event, self.policy, raw, origin)
        counts.events += 1
        if outcome.kept:
            self._kept(ticket_id, outcome.kept)
        if outcome.parked:
            counts.held += 1
            self.store(ticket_id, outcome.state)
            released_now: list[SlaRecord] = []
            if self._held:
                self._release(released_now)
            return released_now, None
        if outcome.unparked:
            at = max(at, *outcome.unparked)
        if self.is_late(at, outcome):
            counts.late += 1
        self.store(ticket_id, outcome.state)
        if outcome.duplicate:
            counts.duplicates += 1
        latest = self.latest
        in_order = False
        released: list[SlaRecord] = []
        if outcome.rejected is not None:
            counts.rejected += 1
            if outcome.beyond_horizon:
                counts.beyond_horizon += 1
        elif not outcome.duplicate and (latest is None or at >= latest):
            in_order = True
            mark = self.event_mark(at)
            watermark = self.watermark
            if watermark is None or mark > watermark:  # only when it moves the watermark: a
                # timer a late event armed before the watermark fires at its next move
                self.sweep(mark, False, released if direct else None)
        emitted = outcome.emitted
        if emitted:
            counts.emitted += len(emitted)
            if outcome.late:
                self._correct(emitted, released)
            elif in_order and not self._held and self.max_delay == 0:
                # Time-ordered input: the watermark is at this event, so all it caused (its own
                # timers due before it, in due order, then its own output) is final, in order,
                # after what the sweep fired directly for other tickets (all due before it).
                if not released:
                    return emitted, None
                released.extend(emitted)
                return released, None
            else:
                self._hold(emitted, at)
        if self._held:
            self._release(released)
        return released, outcome.rejected

    def advance(self, now: Micros, inclusive: bool = True) -> list[SlaRecord]:
        """Move the watermark to `now`: fire every timer due before it (or at it, if inclusive);
        through `now` only, if the watermark is already past it."""
        if self.watermark is not None and now < self.watermark:
            self.fire(now, inclusive, None)  # an end before the watermark (`--until`)
        else:
            self.sweep(now, inclusive, None)
            while self.pending is not None:  # cut short by the storm limit: go on
                self.new_turn()
                self.sweep(now, inclusive, None)
        out: list[SlaRecord] = []
        self._release(out, inclusive)
        return out

    def finish(self, until: Micros | None) -> list[SlaRecord]:
        """The end of the input: advance to `until` (inclusive), then release everything held."""
        out = self.advance(until) if until is not None else []
        for ticket_id, state in list(self.tickets.items()):  # the input is complete
            if state.parked is not None:
                outcome = advance(state, state.parked[-1][0], self.policy)
                self._took(ticket_id, outcome.expired)
                self.store(ticket_id, outcome.state)
                for record in outcome.emitted:
                    self._seq += 1
                    heapq.heappush(self._held, (record["at"], 1, ticket_id, self._seq, record))
        while self._held:
            self._pop(out)
        return out

    # -- the output buffer

    def _hold(self, emitted: list[SlaRecord], event_at: Micros) -> None:
        """Hold an event's output: at its time it is event output; earlier, its own timers."""
        held = self._held
        for record in emitted:
            at = record["at"]
            self._seq += 1
            if at >= event_at:
                heapq.heappush(held, (at, 0, "", self._seq, record))
            else:
                heapq.heappush(held, (at, 1, record["ticket_id"], self._seq, record))

    def _correct(self, emitted: list[SlaRecord], out: list[SlaRecord]) -> None:
        """A correction goes out at once; retracting output still held just drops it."""
        held_ids = {entry[4]["event_id"] for entry in self._held} if self._held else set()
        for record in emitted:
            if record["type"] == "sla.retracted":
                self.counts.retracted += 1
                if record["retracts"] in held_ids:
                    self._cancelled.add(record["retracts"])
                    self.counts.emitted -= 2
                    continue
            out.append(record)

    def on_timer(
        self, due: Micros, ticket_id: str, outcome: Outcome, out: list[SlaRecord] | None
    ) -> None:
        """A fired timer's output: into the buffer, or straight to `out` when the sweep was
        given one (nothing held, nothing else to merge with)."""
        if outcome.expired:
            self._took(ticket_id, outcome.expired)
        if outcome.kept:
            self._kept(ticket_id, outcome.kept)
        emitted = outcome.emitted
        if out is not None:
            out.extend(emitted)
        else:
            held = self._held
            for record in emitted:
                self._seq += 1
                heapq.heappush(held, (due, 1, ticket_id, self._seq, record))
        self.counts.emitted += len(emitted)

    def on_timer_fault(self, ticket_id: str, error: Exception) -> None:
        """A fault in the core: the ticket stays disarmed until its next event, as in the
        worker; counted."""
        self.counts.faults += 1

    def _release(self, out: list[SlaRecord], inclusive: bool = False) -> None:
        """Move final output to `out`: before the watermark, or at it if the input is complete
        through it (inclusive); else only event output at it (timers due then come after any
        event of that instant still to come)."""
        held = self._held
        watermark = self.watermark
        if watermark is None:
            return
        last_phase = 1 if inclusive else 0
        while held and (
            held[0][0] < watermark or (held[0][0] == watermark and held[0][1] <= last_phase)
        ):
            self._pop(out)

    def _pop(self, out: list[SlaRecord]) -> None:
        record = heapq.heappop(self._held)[4]
        if self._cancelled and record["event_id"] in self._cancelled:
            self._cancelled.discard(record["event_id"])
            return
        out.append(record)

    def _took(self, ticket_id: str, expired: list[tuple[str, str, int]]) -> None:
        """Parked events of a ticket the watermark passed: rejected now."""
        self.counts.rejected += len(expired)
        self.expired.extend(expired)

    def _kept(self, ticket_id: str, kept: list[tuple[str, str]]) -> None:
        """Tickets a rollout did not move (see `streams.sla.versions`): counted once each."""
        for version, reason in kept:
            self.kept.setdefault(version, {}).setdefault(ticket_id, reason)

    def run(
        self,
        lines: Iterable[bytes | str],
        until: Micros | None = None,
        on_invalid: Callable[[int, str], None] | None = None,
    ) -> Iterator[dict[str, object]]:
        """Replay JSONL lines; invalid or rejected lines go to `on_invalid(line_number, reason)`.
        Yields the SLA events as the contract has them (`events.sla_records.wire`)."""
        return map(wire, _run(self, lines, until, on_invalid))

    def records(
        self,
        lines: Iterable[bytes | str],
        until: Micros | None = None,
        on_invalid: Callable[[int, str], None] | None = None,
    ) -> Iterator[SlaRecord]:
        """`run`, yielding the core's typed records (instants in microseconds)."""
        return _run(self, lines, until, on_invalid)


def replay_lines(
    lines: Iterable[bytes | str],
    policy: Policy,
    until: Micros | None = None,
    max_delay: Micros = DEFAULT_MAX_DELAY,
) -> list[dict[str, object]]:
    """All SLA events of a history (`wire` form), for callers that want a list."""
    return list(Replayer(policy, max_delay).run(lines, until))


def _run(
    replayer: Replayer,
    lines: Iterable[bytes | str],
    until: Micros | None,
    on_invalid: Callable[[int, str], None] | None,
) -> Iterator[SlaRecord]:
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
            emitted, rejected = feed(event, line, number)
        except Exception as fault:  # a fault in the core must not stop the replay
            # (not `exc`: mypyc gives a name one type per function, InvalidEvent above)
            replayer.counts.invalid += 1
            if on_invalid:
                on_invalid(number, f"internal error: {type(fault).__name__}")
            continue
        if emitted:
            yield from emitted
        if rejected is not None and on_invalid:
            on_invalid(number, rejected)
        if replayer.expired:
            _report(replayer, on_invalid)
    yield from replayer.finish(until if until is not None else replayer.latest)
    _report(replayer, on_invalid)


def _report(replayer: Replayer, on_invalid: Callable[[int, str], None] | None) -> None:
    """Report parked lines the watermark passed, by their line number."""
    for _, reason, number in replayer.expired:
        if on_invalid:
            on_invalid(number, reason)
    replayer.expired.clear()
