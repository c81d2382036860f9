"""The keyed-timers driver: one watermark, one timer index and the states of many tickets.

Replay (`streams.sla.replay.Replayer`) and the stream processor
(`streams.engine.processor.PartitionEngine`) run the SLA core the same way: ticket states by
ticket id, each ticket's next deadline in a `TimerIndex`, a watermark that only moves forward,
and timers that fire when the watermark passes their due time. This is that one part, as Flink
has one timer service under every keyed operator (`KeyedProcessFunction`, `TimerService`,
event-time watermarks): "replay gives what the engine gives" holds by construction here, not
only by the tests that compare them.

What it owns: the states (`store`, `get`, `restore`), the per-ticket timer index, the
watermark and the latest accepted event time (`event_mark`: the event clock), the sweep
(`sweep`, `fire`: timers due before a mark fire in due order across the tickets), the
late-event decision (`is_late`) and the storm limit (`storm_limit`: a caller that must take
input between timers fires at most that many per turn). What a caller does with fired output
is its own (`on_timer`: replay buffers it by time, the engine produces it in a Kafka
transaction), and so is a timer that raises (`on_timer_fault`). Pure: no clock is read,
nothing is imported from Kafka; every instant is integer microseconds UTC.
"""

from __future__ import annotations

from typing import Final, Generic, TypeVar

from events.instants import MINUTE, Micros
from streams.sla import state_codec
from streams.sla.fold import advance
from streams.sla.outcome import Outcome
from streams.sla.rules import Policy
from streams.sla.state import TicketState
from streams.sla.timer_index import TimerIndex

DEFAULT_MAX_DELAY: Final[Micros] = 15 * MINUTE
"""The `--max-delay` default of `escalator replay` and `escalator run`: how far out of time
order events of different tickets may come and still give the time-ordered result (webhook
retries and connector restarts usually deliver within minutes; later ones are corrected, not
lost)."""


Out = TypeVar("Out")
"""Where a caller's sweep puts what fired (`on_timer`), handed through unread: the replay's
output list or None (its own buffer), the engine's record output."""


class KeyedTimers(Generic[Out]):
    """Ticket states, their timers and the watermark they fire by (see the module docstring).

    `max_delay` (microseconds) is the bounded out-of-orderness of the event clock: its
    watermark is the latest accepted event time minus `max_delay`. `track_changes`: remember
    which tickets `store` changed (`changed`), for a caller that writes them out (the engine's
    changelog); off, nothing is kept. `storm_limit`: timers fired per turn at most (0: no limit),
    see `sweep`.
    """

    def __init__(
        self, policy: Policy, max_delay: Micros, track_changes: bool = False, storm_limit: int = 0
    ) -> None:
        self.policy = policy
        self.max_delay = max_delay
        self.states: dict[str, TicketState | bytes] = {}
        """Ticket id -> state; bytes for a stored state not decoded yet (`restore`)."""
        self.index = TimerIndex()
        self.watermark: Micros | None = None
        """Timers due before it have fired (at it too, after an inclusive sweep); microseconds,
        never goes back."""
        self.latest: Micros | None = None
        """The latest event time of an accepted event."""
        self.changed: dict[str, None] | None = {} if track_changes else None
        """Tickets `store` changed, in first-change order, until the caller clears it."""
        self.storm_limit = storm_limit
        """Timers fired per turn at most (0: no limit): business calendars line thousands of
        deadlines up at one instant (every weekend ticket due at Monday 09:00 + 1h), and a
        caller that takes live input (the engine) must not spend seconds in one sweep."""
        self.budget = storm_limit
        """Timers the current turn may still fire (with a `storm_limit`); `new_turn` refills it."""
        self.pending: tuple[Micros, bool] | None = None
        """(mark, inclusive) of a sweep the storm limit cut short: the timers due before it (at
        it, if inclusive) are still to fire, and the next `sweep` goes on towards it."""

    # -- states

    def get(self, ticket_id: str) -> TicketState | None:
        """A ticket's state, decoded (a stored form is decoded once, on first use)."""
        state = self.states.get(ticket_id)
        if isinstance(state, bytes):
            decoded = state_codec.decode(state)
            self.states[ticket_id] = decoded
            return decoded
        return state

    def touch(self, ticket_id: str) -> TicketState | None:
        """The state of a ticket a timer is about to change (`get`; a caller that can undo a
        step saves it first)."""
        return self.get(ticket_id)

    def store(self, ticket_id: str, state: TicketState | None) -> None:
        """Keep a ticket's new state (None: the ticket is gone) and arm its next deadline (or
        its next policy switch, `versions.PolicyBook.due`, if that comes first)."""
        if state is None:
            self.index.discard(ticket_id)
            if self.states.pop(ticket_id, None) is None:
                return
        else:
            self.states[ticket_id] = state
            book = self.policy.book
            self.index.set(ticket_id, state.next_due if book is None else book.due(state))
        changed = self.changed
        if changed is not None:
            changed[ticket_id] = None

    def restore(self, ticket_id: str, stored: TicketState | bytes | None) -> None:
        """Put a ticket's state back as it was stored (recovery, an undone step) and arm its
        deadline; not a change (`changed` is left alone)."""
        if stored is None:
            self.states.pop(ticket_id, None)
            self.index.discard(ticket_id)
            return
        self.states[ticket_id] = stored
        if isinstance(stored, TicketState):
            book = self.policy.book
            self.index.set(ticket_id, stored.next_due if book is None else book.due(stored))
        else:
            self.index.set(ticket_id, state_codec.next_due_of(stored))

    # -- event time

    def is_late(self, at: Micros, outcome: Outcome) -> bool:
        """Whether an event dated `at` that the core took as `outcome` is late: dated before the
        watermark and not a duplicate, nor rejected for anything but the correction horizon."""
        watermark = self.watermark
        return (
            watermark is not None
            and at < watermark
            and not outcome.duplicate
            and (outcome.rejected is None or outcome.beyond_horizon)
        )

    def event_mark(self, at: Micros) -> Micros:
        """An accepted event at `at`: the latest event time moves to it if it is later; returns
        the event clock's watermark mark, `latest - max_delay` (for `sweep`; the watermark is
        at or past it unless this event moved it)."""
        latest = self.latest
        if latest is None or at > latest:
            self.latest = latest = at
        return latest - self.max_delay

    # -- timers

    def new_turn(self) -> None:
        """A new turn (the engine: a batch of input, or a timer call): the storm limit's budget
        is full again."""
        self.budget = self.storm_limit

    def sweep(self, mark: Micros, inclusive: bool, out: Out) -> None:
        """Move the watermark to `mark` (never back), then fire every timer due before it (or
        at it, if inclusive), in due order, across the tickets (`fire`), then `on_watermark`.

        With a `storm_limit`, once the turn's budget is spent the sweep stops: the watermark
        moves only to the first timer still to fire (every timer before it has fired), the
        rest of the way is kept in `pending`, and later sweeps go on from there. An event that
        comes meanwhile is applied after its own ticket's earlier timers (`fold.handle` fires
        them first), so each ticket's output is what an unlimited sweep gives."""
        pending = self.pending
        if pending is not None and (mark < pending[0] or (mark == pending[0] and not inclusive)):
            mark, inclusive = pending
        watermark = self.watermark
        if watermark is not None and mark < watermark:
            mark = watermark
        if self.fire(mark, inclusive, out, self.storm_limit > 0):
            self.pending = None
            self.watermark = mark
            self.on_watermark(mark, inclusive, out)
            return
        self.pending = (mark, inclusive)
        head = self.index.peek()
        assert head is not None  # a timer is still due before the mark
        if watermark is None or head[0] > watermark:
            self.watermark = watermark = head[0]
        self.on_watermark(watermark, False, out)

    def fire(self, until: Micros, inclusive: bool, out: Out, limited: bool = False) -> bool:
        """Fire every timer due before `until` (or at it, if inclusive), in due-time order: each
        ticket is advanced to its due time and stored, then `on_timer` takes the outcome; a
        timer that raises goes to `on_timer_fault` and its ticket stays unarmed.

        `limited`: fire at most the turn's `budget`; returns False if a timer due before
        `until` is left because the budget ran out, else True."""
        index = self.index
        policy = self.policy
        budget = self.budget if limited else -1
        if budget == 0:
            return not self._due_before(until, inclusive)
        while (head := index.pop_before(until, inclusive)) is not None:
            if budget > 0:
                budget -= 1
                self.budget = budget
            due, ticket_id = head
            state = self.touch(ticket_id)
            if state is None:  # pragma: no cover - the index only holds stored tickets
                continue
            try:
                outcome = advance(state, due, policy)
            except Exception as error:  # a fault in the core: the caller disarms the ticket
                self.on_timer_fault(ticket_id, error)
            else:
                self.store(ticket_id, outcome.state)
                self.on_timer(due, ticket_id, outcome, out)
            if budget == 0:
                return not self._due_before(until, inclusive)
        return True

    def _due_before(self, until: Micros, inclusive: bool) -> bool:
        """Whether a timer is due before `until` (or at it, if inclusive)."""
        head = self.index.peek()
        return head is not None and (head[0] < until or (inclusive and head[0] == until))

    def on_timer(self, due: Micros, ticket_id: str, outcome: Outcome, out: Out) -> None:
        """What a fired timer emitted (`outcome.emitted`) and the parked events it rejected
        (`outcome.expired`), with `out` as given to `sweep`: by default the emitted events are
        appended to `out` when it is a list; a caller overrides this."""
        if isinstance(out, list):
            out.extend(outcome.emitted)

    def on_watermark(self, watermark: Micros, inclusive: bool, out: Out) -> None:
        """The sweep up to `watermark` is done (every timer before it fired). The engine
        overrides this to announce the policy rollouts whose instant the watermark passed."""

    def on_timer_fault(self, ticket_id: str, error: Exception) -> None:
        """A ticket's timer raised (a bug, or a value the core cannot represent); the ticket is
        left unarmed until it is stored again. A caller overrides this to count or undo."""
