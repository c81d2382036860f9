"""One owned input partition, without I/O: a batch of records in, what to produce out.

The worker (`streams.engine.app`) hands each fetched batch of a partition to
`PartitionEngine.process_batch` and produces what it returns (SLA events, dead letters, the
changelog records of the tickets the batch changed) in the partition's Kafka transaction.
Keeping this part free of Kafka makes the exact firing rules testable and lets the benchmark
measure the fold alone. Compiled with the SLA core (mypyc).

Ticket states stay decoded in memory (`states`); a state recovered from the changelog stays
as its bytes until a record touches the ticket. Each changed ticket is encoded once per batch,
for the changelog (compacted: only its last state in the batch matters).

Firing rules: event time with a per-partition watermark (see the README, "Event time"); timers
due before the watermark fire. Each ticket's events apply at their own `occurred_at` (a late one
with a correction, see `streams.sla.corrections`).
- `event` clock: the watermark is the latest event time of an accepted event minus
  `max_delay` (`streams.sla.keyed_timers`, as replay); a `clock.tick` at t moves it through t
  (inclusive).
- `wall` clock (timers due at the watermark fire too): the wall time minus `allowed_lateness`
  once the partition is caught up (no record behind the one processed, as the broker says), the
  event-time watermark above (never past the wall mark) while it is consuming a backlog
  (records behind, dated more than `max_delay` ago): a backfill gives what replay gives.
  Input time never runs this clock: a tick only prompts a sweep, an event dated more than
  FUTURE_SKEW ahead of the wall clock is rejected, and one less far ahead applies at the wall
  time, so nothing fires early.
A rejected record moves no clock. The watermark never goes back.

A record is processed all or nothing: if the fold raises on it (a bug, or a value the core
cannot represent), every state, timer and watermark change it made is undone, its output is
dropped and it is dead-lettered with the exception's type as the reason; the next record sees
the partition exactly as before.
"""

from __future__ import annotations

from typing import Final, Literal

import orjson

from events.codec import InvalidEvent, decode_input_record
from events.inbound import ClockTick
from events.instants import SECOND, Micros, format_instant
from events.records import TicketEvent
from events.rollouts import activation_id
from events.sla_records import PolicyActivated, SlaRecord, wire
from streams.sla import state_codec
from streams.sla.fold import handle
from streams.sla.keyed_timers import DEFAULT_MAX_DELAY, KeyedTimers
from streams.sla.outcome import Outcome
from streams.sla.rules import Policy
from streams.sla.state import CLOSED_STATUSES, TicketState

ClockMode = Literal["wall", "event"]

ROLLOUTS_KEY: Final = "\x00policy-rollouts"
"""The changelog key of a partition's activated rollouts (a JSON list of version labels):
a ticket id never holds a control character, so it names no ticket. Written in the
transaction that emits the partition's `policy.activated`, so a restart never repeats it."""

DEFAULT_ALLOWED_LATENESS: Final[Micros] = SECOND // 10
"""The `--allowed-lateness` default: how long after its due time a live timer waits for input
still in flight (a reply sent a moment before the deadline); later input is corrected."""
DEFAULT_STORM_LIMIT: Final = 1000
"""The `--storm-limit` default: timers a partition fires per turn at most before it takes input
again (a turn fires 1,000 timers in tens of milliseconds; see docs/benchmarks.md)."""
FUTURE_SKEW: Final[Micros] = 60 * SECOND
"""Wall clock: how far ahead of the worker's clock an event may be dated (upstream clock skew)
and still be applied, at the worker's time; events dated further ahead are rejected."""

TIMER_TYPES: Final = frozenset(
    {"sla.warning", "sla.breached", "ticket.escalated", "customer.notification_required"}
)
"""Outbound event types a timer emits (their lateness is measured on the wall clock)."""


def is_open(state: TicketState | bytes | None) -> bool:
    if state is None:
        return False
    if isinstance(state, bytes):
        return state_codec.is_open_raw(state)
    return state.status not in CLOSED_STATUSES


class BatchResult:
    """What the shell must produce for one batch of one partition (all in one transaction).

    `output` holds (ticket id key, SLA event JSON, the event) in emission order;
    `dead_letters` holds (position of the record in the batch, stage `decode`/`rejected`/
    `internal`, reason);
    `changelog` holds (ticket id key, encoded state or None for a deleted ticket);
    `expired` holds (ticket id key, original bytes, reason, input offset or -1) of parked
    events the watermark passed (dead letters of records of earlier batches).
    """

    __slots__ = (
        "beyond_horizon",
        "changelog",
        "dead_letters",
        "duplicates",
        "events",
        "expired",
        "faults",
        "held",
        "invalid",
        "kept",
        "late",
        "out_types",
        "output",
        "retracted",
        "ticks",
        "timer_dues",
    )

    def __init__(self) -> None:
        self.output: list[tuple[bytes, bytes, dict[str, object]]] = []
        self.dead_letters: list[tuple[int, str, str]] = []
        self.changelog: list[tuple[bytes, bytes | None]] = []
        self.expired: list[tuple[bytes, bytes, str, int]] = []
        self.held = 0
        """Events parked on arrival, waiting for an earlier event of their ticket."""
        self.events = 0
        self.ticks = 0
        self.invalid = 0
        self.duplicates = 0
        self.out_types: dict[str, int] = {}
        """SLA events produced, by type."""
        self.timer_dues: list[Micros] = []
        """Due time of each live timer-driven SLA event produced (for lateness): wall clock,
        partition caught up, due since it caught up (a backlog's timers are not late)."""
        self.late = 0
        """Events dated before the watermark when they came (duplicates not counted)."""
        self.retracted = 0
        """`sla.retracted` corrections produced."""
        self.beyond_horizon = 0
        """Late events rejected as older than the correction horizon."""
        self.faults: list[tuple[str, str]] = []
        """(ticket id, reason) of each ticket whose timer raised and was disarmed."""
        self.kept: list[tuple[str, str, str]] = []
        """(ticket id, version, reason) of each ticket a rollout did not move (see
        `streams.sla.versions`): the shell counts them and logs once per version."""


Emitted = list[SlaRecord | PolicyActivated]
"""What one input record makes, in order: SLA events and rollout audit records."""


class PartitionEngine(KeyedTimers[Emitted]):
    """States, timer index and clock of one owned partition of the input topic (`KeyedTimers`,
    as replay), with what the shell needs: each record all or nothing, the changed tickets for
    the changelog, the wall clock."""

    def __init__(
        self,
        partition: int,
        policy: Policy,
        clock: ClockMode,
        max_delay: Micros = DEFAULT_MAX_DELAY,
        allowed_lateness: Micros = DEFAULT_ALLOWED_LATENESS,
        storm_limit: int = 0,
    ) -> None:
        super().__init__(policy, max_delay, track_changes=True, storm_limit=storm_limit)
        self.partition = partition
        self.clock: ClockMode = clock
        self.allowed_lateness = allowed_lateness
        self.live_since: Micros | None = None
        """Wall clock: the wall time the partition last caught up; None while behind."""
        self.open_tickets = 0
        """Tickets in `states` that are neither resolved nor closed."""
        self._undo: dict[str, TicketState | bytes | None] = {}
        """The current record's first-touch snapshot of each ticket it changes."""
        self._dues: list[Micros] = []
        """Due times of the current record's live timer output (see `BatchResult.timer_dues`)."""
        self.faults: list[tuple[str, str]] = []
        """Tickets quarantined by the current batch (see `_quarantine`)."""
        self._expired: list[tuple[bytes, bytes, str, int]] = []
        """Parked events the current record's sweeps rejected (see `BatchResult.expired`)."""
        self.activated: list[str] = []
        """Versions whose rollout this partition has activated (`policy.activated` sent)."""
        self._activated_changed = False
        self._kept: list[tuple[str, str, str]] = []

    # -- recovery

    def load(self, ticket_id: str, raw: bytes | None) -> None:
        """Apply one changelog record (recovery): keep the bytes, arm the ticket's timer."""
        if ticket_id == ROLLOUTS_KEY:
            self.activated = [] if raw is None else [str(v) for v in orjson.loads(raw)]
            return
        previous = self.states.pop(ticket_id, None)
        if previous is not None and is_open(previous):
            self.open_tickets -= 1
        self.restore(ticket_id, raw)
        if raw is not None and state_codec.is_open_raw(raw):
            self.open_tickets += 1

    def set_policy(self, policy: Policy) -> None:
        """Run under `policy` (the newest version of its book) from now on, and arm every open
        ticket at its next switch (an `open-tickets` rollout's instant), so the sweep moves it
        then even if none of its timers is due: call after recovery and for each new rollout."""
        self.policy = policy
        book = policy.book
        if book is None:
            return
        pending = [
            r.instant
            for r in book.rollouts
            if r.mode == "open-tickets" and r.version not in self.activated
        ]
        if not pending:
            return
        first = min(pending)
        index = self.index
        for ticket_id, state in self.states.items():
            if isinstance(state, TicketState):
                index.set(ticket_id, book.due(state))
            elif state_codec.is_open_raw(state):
                due = state_codec.next_due_of(state)
                index.set(ticket_id, first if due is None or first < due else due)

    # -- processing

    def process_batch(
        self,
        values: list[bytes | None],
        wall_now: Micros,
        behind: int = 0,
        offsets: list[int] | None = None,
    ) -> BatchResult:
        """Process a partition's records in offset order; see `BatchResult` for the output.

        `behind`: records on the partition after the batch's last one (its lag, from the
        broker's high watermark); a record with none behind it is caught up. `offsets`: the
        records' input offsets, kept with an event that is parked (for its dead letter).
        """
        result = BatchResult()
        self.new_turn()
        last = len(values) - 1
        for position, raw in enumerate(values):
            offset = offsets[position] if offsets is not None else -1
            self._process(position, raw, wall_now, behind + last - position, result, offset)
        return self._finish(result)

    def fire_due(self, wall_now: Micros) -> BatchResult:
        """Fire what is due with no input record: the worker calls this at `next_fire`, on a
        caught-up partition (wall clock: nothing behind the last record processed), and
        produces the result in the partition's transaction, as for a batch.

        Wall clock: the timers due before the wall mark (the wall time minus the allowed
        lateness) fire, as a record processed now would fire them; event clock: only what a
        sweep cut short by the storm limit still owes (`pending`)."""
        result = BatchResult()
        self.new_turn()
        self._step(0, None, wall_now, 0, result, -1, b"")
        return self._finish(result)

    def next_fire(self) -> Micros | None:
        """The wall time (microseconds) at which `fire_due` has something to fire, or None: on
        the wall clock the earliest timer plus the allowed lateness; on the event clock now
        (0) while a sweep cut short by the storm limit is pending, else never (input moves
        that clock)."""
        if self.clock == "event":
            return 0 if self.pending is not None else None
        head = self.index.peek()
        if head is None:
            return None
        return head[0] + self.allowed_lateness

    def _finish(self, result: BatchResult) -> BatchResult:
        """The changed tickets' states for the changelog, and what the turn collected."""
        changelog = result.changelog
        states = self.states
        changed = self.changed
        assert changed is not None  # tracked (`track_changes`)
        for ticket_id in changed:
            state = states.get(ticket_id)
            if state is None:
                changelog.append((ticket_id.encode(), None))
            elif isinstance(state, TicketState):
                changelog.append((ticket_id.encode(), state_codec.encode(state)))
        changed.clear()
        if self._activated_changed:
            changelog.append((ROLLOUTS_KEY.encode(), orjson.dumps(self.activated)))
            self._activated_changed = False
        result.faults, self.faults = self.faults, []
        result.kept, self._kept = self._kept, []
        return result

    def _process(
        self,
        position: int,
        raw: bytes | None,
        wall_now: Micros,
        lag: int,
        out: BatchResult,
        offset: int = -1,
    ) -> None:
        try:
            if raw is None:
                raise InvalidEvent("empty record (no value)")
            record = decode_input_record(raw)
        except InvalidEvent as exc:
            out.invalid += 1
            out.dead_letters.append((position, "decode", str(exc)))
            return
        self._step(position, record, wall_now, lag, out, offset, raw)

    def _step(
        self,
        position: int,
        record: TicketEvent | ClockTick | None,
        wall_now: Micros,
        lag: int,
        out: BatchResult,
        offset: int,
        raw: bytes,
    ) -> None:
        """One decoded record (None: a timer call, `fire_due`), all or nothing."""
        emitted: Emitted = []
        dues = self._dues
        dues.clear()
        watermark, latest, live_since = self.watermark, self.latest, self.live_since
        pending, budget = self.pending, self.budget
        activated, kept = len(self.activated), len(self._kept)
        wall = self.clock == "wall"
        if wall:
            self._track_lag(wall_now, lag, record.at if isinstance(record, TicketEvent) else None)
        rejected: str | None = None
        try:
            if not isinstance(record, TicketEvent):
                # a tick (event clock: input complete through its time; wall: only a prompt),
                # or a timer call (what a record now would fire; event clock: what a sweep cut
                # short by the storm limit still owes)
                if wall:
                    self.sweep(self._wall_mark(wall_now), True, emitted)
                elif record is not None:
                    self.sweep(record.at, True, emitted)
                elif self.pending is not None:
                    self.sweep(self.pending[0], self.pending[1], emitted)
                if record is not None:
                    out.ticks += 1
            else:
                at = record.at
                out.events += 1
                if wall and at > wall_now + FUTURE_SKEW:
                    rejected = (
                        f"field 'occurred_at': {format_instant(at)} is ahead of the worker's "
                        f"clock ({format_instant(wall_now)}) by more than "
                        f"{FUTURE_SKEW // SECOND} s"
                    )
                else:
                    if wall and at > wall_now:  # upstream clock skew: take it as now
                        record = record.redated(wall_now)
                    if wall:
                        self.sweep(self._wall_mark(wall_now), True, emitted)
                    rejected, moved = self._apply(record, emitted, out, raw, offset)
                    if moved is not None:
                        self._accepted(moved, wall_now, emitted)
        except Exception as error:  # a bug, or a value the core cannot represent
            # (`error`, not `exc`: mypyc gives a name one type per function.)
            self._rollback()
            self._expired.clear()
            self.watermark, self.latest, self.live_since = watermark, latest, live_since
            self.pending, self.budget = pending, budget
            del self.activated[activated:]
            del self._kept[kept:]
            reason = f"internal error: {type(error).__name__}"
            out.dead_letters.append((position, "internal", reason))
            return
        self._commit()
        if self._expired:
            out.expired.extend(self._expired)
            self._expired.clear()
        if rejected is not None:
            out.dead_letters.append((position, "rejected", rejected))
        if emitted:
            output = out.output
            types = out.out_types
            for event in emitted:
                kind = event["type"]
                if event["type"] == "policy.activated":
                    key = f"policy/{event['version']}"
                    text: dict[str, object] = {**event}
                else:
                    key = event["ticket_id"]
                    text = wire(event)
                output.append((key.encode(), orjson.dumps(text), text))
                types[kind] = types.get(kind, 0) + 1
            out.timer_dues.extend(dues)

    def _apply(
        self,
        record: TicketEvent,
        emitted: Emitted,
        out: BatchResult,
        raw: bytes,
        offset: int,
    ) -> tuple[str | None, Micros | None]:
        """Fold one ticket event; returns (why it was rejected or None, the event time it
        moves the clock to or None). A parked event (it waits for an earlier event of its
        ticket, see `machine.handle`) moves no clock; parked events it lets apply move it to
        their time, as in `streams.sla.replay`."""
        ticket_id = record.ticket_id
        outcome = handle(self.touch(ticket_id), record, self.policy, raw, offset)
        emitted.extend(outcome.emitted)
        for version, reason in outcome.kept:
            self._kept.append((ticket_id, version, reason))
        if outcome.duplicate:
            out.duplicates += 1
            return None, record.at
        self.store(ticket_id, outcome.state)
        if outcome.parked:
            out.held += 1
            return None, None
        if self.is_late(record.at, outcome):
            out.late += 1
        if outcome.beyond_horizon:
            out.beyond_horizon += 1
        if outcome.late:
            out.retracted += sum(1 for e in outcome.emitted if e["type"] == "sla.retracted")
        if outcome.rejected is not None:
            return outcome.rejected, None
        moved = record.at
        for at in outcome.unparked:
            if at > moved:
                moved = at
        return None, moved

    def _accepted(self, at: Micros, wall_now: Micros, out: Emitted) -> None:
        """An accepted event moves the event time; then what the watermark passed fires (on
        the event clock, also when this event did not move it)."""
        mark = self.event_mark(at)
        if self.clock == "wall":
            self.sweep(self._wall_mark(wall_now), True, out)
        else:
            self.sweep(mark, False, out)

    def _track_lag(self, wall_now: Micros, lag: int, at: Micros | None) -> None:
        """Caught up (no record behind) or consuming a backlog (records behind, and this one
        dated more than `max_delay` ago); live traffic with a few records queued under load,
        or a tick, changes nothing."""
        if lag <= 0:
            if self.live_since is None:
                self.live_since = wall_now
        elif at is not None and at < wall_now - self.max_delay:
            self.live_since = None

    def _wall_mark(self, wall_now: Micros) -> Micros:
        """The wall clock's watermark candidate: see the module docstring."""
        mark = wall_now - self.allowed_lateness
        if self.live_since is not None:
            return mark
        if self.latest is None:
            return self.watermark if self.watermark is not None else 0
        return min(mark, self.latest - self.max_delay)

    def on_timer(self, due: Micros, ticket_id: str, outcome: Outcome, out: Emitted) -> None:
        """A fired timer's output goes to `out`, its expired parked events to the dead letters;
        the due time of its live output is kept for lateness."""
        for text, reason, origin in outcome.expired:
            self._expired.append((ticket_id.encode(), text.encode(), reason, origin))
        for version, reason in outcome.kept:
            self._kept.append((ticket_id, version, reason))
        live = self.live_since
        for event in outcome.emitted:
            out.append(event)
            if live is not None and due >= live and event["type"] in TIMER_TYPES:
                self._dues.append(due)

    def on_watermark(self, watermark: Micros, inclusive: bool, out: Emitted) -> None:
        """After a sweep: the rollouts whose instant the watermark passed."""
        if self.policy.book is not None:
            self._activate(watermark, inclusive, out)

    def _activate(self, watermark: Micros, inclusive: bool, out: Emitted) -> None:
        """Emit `policy.activated` for each rollout whose instant the watermark has passed
        (its tickets have all been moved by the sweep), once per partition: the versions
        activated go to the changelog in the same transaction."""
        book = self.policy.book
        assert book is not None
        for rollout in book.rollouts:
            instant = rollout.instant
            if rollout.version in self.activated:
                continue
            if instant > watermark or (instant == watermark and not inclusive):
                return
            moved = kept = 0
            for state in self.states.values():
                if isinstance(state, bytes):
                    if not state_codec.is_open_raw(state):
                        continue
                    state = state_codec.decode(state)
                if state.status in CLOSED_STATUSES or state.reported_at >= instant:
                    continue
                if state.policy_version == rollout.version and rollout.mode == "open-tickets":
                    moved += 1
                else:
                    kept += 1
            version = book.version(rollout.version)
            out.append(
                {
                    "type": "policy.activated",
                    "event_id": activation_id(rollout.version, rollout.digest, self.partition),
                    "name": "" if version is None else version.name,
                    "version": rollout.version,
                    "digest": rollout.digest,
                    "mode": rollout.mode,
                    "at": format_instant(instant),
                    "partition": self.partition,
                    "tickets_moved": moved,
                    "tickets_kept": kept,
                }
            )
            self.activated.append(rollout.version)
            self._activated_changed = True

    def on_timer_fault(self, ticket_id: str, error: Exception) -> None:
        self._quarantine(ticket_id, f"internal error: {type(error).__name__}")

    def touch(self, ticket_id: str) -> TicketState | None:
        """A ticket's state, decoded, after saving what the current record may change."""
        undo = self._undo
        if ticket_id not in undo:
            state = self.states.get(ticket_id)
            undo[ticket_id] = state.copy() if isinstance(state, TicketState) else state
        return self.get(ticket_id)

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
        for ticket_id, before in self._undo.items():
            self.restore(ticket_id, before)
        self._undo.clear()
