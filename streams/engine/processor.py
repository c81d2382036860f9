"""One owned input partition, without I/O: a batch of records in, what to produce out.

The worker (`streams.engine.app`) hands each fetched batch of a partition to
`PartitionEngine.process_batch` and produces what it returns (SLA events, dead letters, the
changelog records of the tickets the batch changed) in the partition's Kafka transaction.
Keeping this part free of Kafka makes the exact firing rules testable and lets the benchmark
measure the fold alone. Compiled with the SLA core (mypyc).

Ticket states stay decoded in memory (`states`); a state recovered from the changelog stays
as its bytes until a record touches the ticket. Each changed ticket is encoded once per batch,
for the changelog (compacted: only its last state in the batch matters).

Firing rules (they make the stream match `streams.sla.replay`):
- `event` clock: a ticket event at t first fires the partition's timers due strictly before t;
  a `clock.tick` at t fires every timer due at or before t.
- `wall` clock: any record first fires every timer due at or before the wall clock (ticks are
  written by the worker's ticker, so an idle partition still gets records to fire on).
A ticket's own output never depends on when its timers are swept (`handle` fires them before
the event anyway, with `at` = due time), so both modes and any sweep cadence agree per ticket.

A record is processed all or nothing: if the fold raises on it (a bug, or a value the core
cannot represent), every state, timer and watermark change it made is undone, its output is
dropped and it is dead-lettered with the exception's type as the reason; the next record sees
the partition exactly as before.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import orjson

from events.codec import InvalidEvent, decode_input_record
from events.inbound import ClockTick
from events.instants import Micros
from streams.sla.machine import advance, handle
from streams.sla.rules import Policy
from streams.sla.state import TicketState
from streams.sla.timer_index import TimerIndex

ClockMode = Literal["wall", "event"]

_NEXT_DUE: Final = b'{"next_due":'
_CLOSED_STATUSES: Final = frozenset({"resolved", "closed"})
TIMER_TYPES: Final = frozenset(
    {"sla.warning", "sla.breached", "ticket.escalated", "customer.notification_required"}
)
"""Outbound event types a timer emits (their lateness is measured on the wall clock)."""


def encode_state(state: TicketState) -> bytes:
    """A state as JSON bytes for the changelog.

    `next_due` and `status` are put first so recovery can re-arm the timer index and count
    open tickets by slicing a few bytes instead of parsing every state (`next_due_of`,
    `is_open_raw`). The copy matters: orjson 3.x may return bytes objects with kilobytes of
    spare capacity, and recovery keeps one per ticket until a record touches it.
    """
    obj = state.to_json_obj()
    head: dict[str, Any] = {"next_due": state.next_due, "status": obj.pop("status")}
    head.update(obj)
    return memoryview(orjson.dumps(head)).tobytes()


def decode_state(raw: bytes) -> TicketState:
    return TicketState.from_json_obj(orjson.loads(raw))


def _after_next_due(raw: bytes) -> int:
    """Index just after the `next_due` value, or -1 if the record is not in that shape."""
    if not raw.startswith(_NEXT_DUE):
        return -1
    return raw.find(b",", len(_NEXT_DUE))


def next_due_of(raw: bytes) -> Micros | None:
    """The `next_due` of an encoded state, cheaply (falls back to a full parse)."""
    end = _after_next_due(raw)
    if end > 0:
        text = raw[len(_NEXT_DUE) : end]
        if text == b"null":
            return None
        try:
            return int(text)
        except ValueError:
            pass
    return decode_state(raw).next_due


def is_open_raw(raw: bytes) -> bool:
    """Whether an encoded state is an open ticket (not resolved or closed), cheaply."""
    end = _after_next_due(raw)
    if end > 0 and raw.startswith(b'"status":"', end + 1):
        start = end + 11
        stop = raw.find(b'"', start)
        return raw[start:stop].decode() not in _CLOSED_STATUSES
    return decode_state(raw).status not in _CLOSED_STATUSES


def is_open(state: TicketState | bytes | None) -> bool:
    if state is None:
        return False
    if isinstance(state, bytes):
        return is_open_raw(state)
    return state.status not in _CLOSED_STATUSES


class BatchResult:
    """What the shell must produce for one batch of one partition (all in one transaction).

    `output` holds (ticket id key, SLA event JSON, the event) in emission order;
    `dead_letters` holds (position of the record in the batch, stage `decode`/`rejected`/
    `internal`, reason);
    `changelog` holds (ticket id key, encoded state or None for a deleted ticket).
    """

    __slots__ = (
        "changelog",
        "dead_letters",
        "duplicates",
        "events",
        "faults",
        "invalid",
        "out_types",
        "output",
        "ticks",
        "timer_dues",
    )

    def __init__(self) -> None:
        self.output: list[tuple[bytes, bytes, dict[str, Any]]] = []
        self.dead_letters: list[tuple[int, str, str]] = []
        self.changelog: list[tuple[bytes, bytes | None]] = []
        self.events = 0
        self.ticks = 0
        self.invalid = 0
        self.duplicates = 0
        self.out_types: dict[str, int] = {}
        """SLA events produced, by type."""
        self.timer_dues: list[Micros] = []
        """Due time of each timer-driven SLA event produced (for lateness)."""
        self.faults: list[tuple[str, str]] = []
        """(ticket id, reason) of each ticket whose timer raised and was disarmed."""


class PartitionEngine:
    """States, timer index and clock of one owned partition of the input topic."""

    def __init__(self, partition: int, policy: Policy, clock: ClockMode) -> None:
        self.partition = partition
        self.policy = policy
        self.clock: ClockMode = clock
        self.index = TimerIndex()
        self.states: dict[str, TicketState | bytes] = {}
        """Ticket id -> state; bytes for a state recovered and not touched since."""
        self.open_tickets = 0
        """Tickets in `states` that are neither resolved nor closed."""
        self.watermark: Micros | None = None
        """Event clock: the latest time this partition has advanced to."""
        self._undo: dict[str, TicketState | bytes | None] = {}
        """The current record's first-touch snapshot of each ticket it changes."""
        self._dirty: dict[str, None] = {}
        """Tickets changed by the current batch, in first-change order."""
        self.faults: list[tuple[str, str]] = []
        """Tickets quarantined by the current batch (see `_quarantine`)."""

    # -- recovery

    def load(self, ticket_id: str, raw: bytes | None) -> None:
        """Apply one changelog record (recovery): keep the bytes, arm the ticket's timer."""
        previous = self.states.pop(ticket_id, None)
        if previous is not None and is_open(previous):
            self.open_tickets -= 1
        if raw is None:
            self.index.discard(ticket_id)
            return
        self.states[ticket_id] = raw
        if is_open_raw(raw):
            self.open_tickets += 1
        self.index.set(ticket_id, next_due_of(raw))

    # -- processing

    def process_batch(self, values: list[bytes | None], wall_now: Micros) -> BatchResult:
        """Process a partition's records in offset order; see `BatchResult` for the output."""
        result = BatchResult()
        for position, raw in enumerate(values):
            self._process(position, raw, wall_now, result)
        changelog = result.changelog
        states = self.states
        for ticket_id in self._dirty:
            state = states.get(ticket_id)
            if state is None:
                changelog.append((ticket_id.encode(), None))
            elif isinstance(state, TicketState):
                changelog.append((ticket_id.encode(), encode_state(state)))
        self._dirty.clear()
        result.faults, self.faults = self.faults, []
        return result

    def _process(
        self, position: int, raw: bytes | None, wall_now: Micros, out: BatchResult
    ) -> None:
        try:
            if raw is None:
                raise InvalidEvent("empty record (no value)")
            record = decode_input_record(raw)
        except InvalidEvent as exc:
            out.invalid += 1
            out.dead_letters.append((position, "decode", str(exc)))
            return
        emitted: list[dict[str, Any]] = []
        dues: list[Micros] = []
        watermark = self.watermark
        rejected: str | None = None
        try:
            if isinstance(record, ClockTick):
                now = record.at if self.clock == "event" else max(record.at, wall_now)
                self._fire(now, True, emitted, dues)
                out.ticks += 1
            else:
                if self.clock == "event":
                    self._fire(record.at, False, emitted, dues)
                else:
                    self._fire(wall_now, True, emitted, dues)
                ticket_id = record.ticket_id
                outcome = handle(self._touch(ticket_id), record, self.policy)
                emitted.extend(outcome.emitted)
                if outcome.duplicate:
                    out.duplicates += 1
                else:
                    self._store(ticket_id, outcome.state)
                rejected = outcome.rejected
                out.events += 1
        except Exception as error:  # a bug, or a value the core cannot represent
            # (`error`, not `exc`: mypyc gives a name one type per function.)
            self._rollback()
            self.watermark = watermark
            reason = f"internal error: {type(error).__name__}"
            out.dead_letters.append((position, "internal", reason))
            return
        self._commit()
        if rejected is not None:
            out.dead_letters.append((position, "rejected", rejected))
        if emitted:
            output = out.output
            types = out.out_types
            for event in emitted:
                output.append((event["ticket_id"].encode(), orjson.dumps(event), event))
                kind: str = event["type"]
                types[kind] = types.get(kind, 0) + 1
            out.timer_dues.extend(dues)

    def _fire(
        self, now: Micros, inclusive: bool, out: list[dict[str, Any]], dues: list[Micros]
    ) -> None:
        """Advance every ticket of this partition whose next timer is due; in due order."""
        if self.clock == "event" and (self.watermark is None or now > self.watermark):
            self.watermark = now
        index = self.index
        policy = self.policy
        while (head := index.pop_before(now, inclusive)) is not None:
            due, ticket_id = head
            state = self._touch(ticket_id)
            if state is None:  # pragma: no cover - the index only holds stored tickets
                continue
            try:
                outcome = advance(state, due, policy)
            except Exception as error:
                self._quarantine(ticket_id, f"internal error: {type(error).__name__}")
                continue
            self._store(ticket_id, outcome.state)
            for event in outcome.emitted:
                out.append(event)
                if event["type"] in TIMER_TYPES:
                    dues.append(due)

    def _touch(self, ticket_id: str) -> TicketState | None:
        """A ticket's state, decoded, after saving what the current record may change."""
        state = self.states.get(ticket_id)
        if ticket_id not in self._undo:
            if isinstance(state, TicketState):
                self._undo[ticket_id] = state.copy()
            else:
                self._undo[ticket_id] = state
        if isinstance(state, bytes):
            decoded = decode_state(state)
            self.states[ticket_id] = decoded
            return decoded
        return state

    def _store(self, ticket_id: str, state: TicketState | None) -> None:
        if state is None:
            self.index.discard(ticket_id)
            if self.states.pop(ticket_id, None) is None:
                return
        else:
            self.states[ticket_id] = state
            self.index.set(ticket_id, state.next_due)
        self._dirty[ticket_id] = None

    def _quarantine(self, ticket_id: str, reason: str) -> None:
        """A ticket's timer raised: put its state back and disarm it, so others still fire.

        Without this one bad ticket would fail every later record of the partition (its timer
        is due first each time). It stays as it was until its next event (which re-arms it, or
        is dead-lettered if the fault repeats); `faults` tells the shell to log and count it.
        """
        before = self._undo.get(ticket_id)
        if before is None:  # pragma: no cover - only stored tickets have timers
            self.states.pop(ticket_id, None)
        else:
            self.states[ticket_id] = before.copy() if isinstance(before, TicketState) else before
        self.index.discard(ticket_id)
        self.faults.append((ticket_id, reason))

    def _commit(self) -> None:
        """The record succeeded: keep its changes and count open tickets."""
        states = self.states
        for ticket_id, before in self._undo.items():
            self.open_tickets += int(is_open(states.get(ticket_id))) - int(is_open(before))
        self._undo.clear()

    def _rollback(self) -> None:
        """The record failed: put back every ticket it touched, state and timer."""
        states = self.states
        index = self.index
        for ticket_id, before in self._undo.items():
            if before is None:
                states.pop(ticket_id, None)
                index.discard(ticket_id)
            else:
                states[ticket_id] = before
                if isinstance(before, TicketState):
                    index.set(ticket_id, before.next_due)
                else:
                    index.set(ticket_id, next_due_of(before))
        self._undo.clear()
