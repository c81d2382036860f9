"""Per-ticket SLA state: everything the fold needs, in plain values that serialise to JSON.

Clocks are not stored as counters but as the spans of time they ran: the time a metric has
consumed on any clock can then be measured again after a severity or policy change, and a
pause simply cuts a span. A ticket has a handful of spans, so this stays small.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from events.inbound import TICKET_EVENT_TYPES
from events.instants import Micros
from events.records import TicketEvent
from streams.sla.timer_key import TimerKey

Span = tuple[Micros, Micros | None]
"""[start, end) of an interval; `end` None while it is still running."""
Ack = tuple[int, Micros, bool]
"""An acknowledged escalation level: (level, when it was acknowledged, whether the ticket has
progressed since: an agent's response; see docs/actions.md)."""
ACKNOWLEDGED: Final = "ticket.escalation_acknowledged"
Holder = tuple[Micros, str | None, str | None]
"""Who held the ticket from an instant on: (since, group, assignee), for time attribution."""
Cycle = tuple[str, int, str, Micros, Micros | None]
"""A group ownership cycle of an OLA: (the OLA's name, its number among the OLA's cycles of
the ticket, 1-based, the group holding the ticket, start, end; None while it runs)."""
CLOCK_TYPES: Final = frozenset({"ticket.sla_stopped", "ticket.sla_started", "ticket.breach_reason"})
"""Issue 24's events: their history detail keeps the reason, actor and metric in the slots
of channel, assignee and group (`detail_of`)."""
Route = tuple[Micros, str | None, dict[str, str]]
"""From when a ticket had a group and attributes (`TicketState.routes`)."""
Stop = tuple[Micros, Micros | None, str, str]
"""A manual stop of the clock: (start, end or None while it holds, reason code, actor)."""
BreachReason = tuple[str, int, str, str, Micros]
"""Why a metric breached: (metric, round or 0, reason code, actor, when it was given)."""
Parked = tuple[Micros, str, str, str, int]
"""A parked event: (its time, event id, its original JSON text, why it cannot apply yet, where
it came from: the input offset or line number the shell gave, -1 if none)."""

UNOPENED: Final = "unopened"
"""The status of a placeholder state: events of a ticket whose `ticket.opened` has not come
yet, parked and nothing else (see `fold.handle`)."""
CLOSED_STATUSES: Final = frozenset({"resolved", "closed", UNOPENED})
"""Statuses of a ticket that is not open (what the engine counts as open tickets)."""

Detail = tuple[
    int | None,
    str | None,
    str | None,
    str | None,
    str | None,
    list[str] | None,
    dict[str, str] | None,
    bool,
    int,
]
"""What an applied event said besides its id, type and time: (severity, customer_id, assignee,
group, channel, tags, attributes, has_group, pinned_digest); None in the history when it said
nothing more (most events: a reply, a pause, a resolution). An acknowledgement has no
severity: its first field is the level it acknowledged (`TicketEvent.level`)."""
DETAIL_SIZE: Final = 9
"""Fields of a Detail, as `TicketState.history_details` holds them one after the other."""

STEP: Final = 9
"""Bytes per applied event in `TicketState.history`: `time * 256 + code`, signed little-endian,
where time is in microseconds and code is the type's index in `TICKET_EVENT_TYPES` plus
`_HAS_DETAIL` (built with `int.to_bytes`, which mypyc compiles to one call)."""
_HAS_DETAIL: Final = 0x80
Step = tuple[Micros, str, tuple[Any, ...] | None]
"""An applied event as `packed` takes it and `unpacked` gives it: (time, type, its Detail's
DETAIL_SIZE fields or None)."""
_KIND_CODES: Final[dict[str, int]] = {kind: code for code, kind in enumerate(TICKET_EVENT_TYPES)}
"""Each event type's number in a history: its place in the contract's list, fixed (the codes
never leave the process: the stored form names the type)."""

NO_TAGS: Final[list[str]] = []
NO_ATTRIBUTES: Final[dict[str, str]] = {}
"""The tags and attributes of the many tickets without any: one shared empty list and dict
(never changed in place: an event replaces a ticket's tags and attributes as a whole)."""


class Timer(NamedTuple):
    """A pending timer: fires at `due_at` unless cancelled or recomputed first.

    A tuple so that timers sort by due time, then rank (metric, then threshold or level).
    """

    due_at: Micros
    rank: tuple[int, float]
    metric: str
    key: TimerKey
    """Which timer (`key.metric` is `metric`; `key.fired` goes to `TicketState.fired`)."""


class TicketState:
    """One ticket's SLA state (a plain class with an explicit `__init__` so mypyc compiles it)."""

    __slots__ = (
        "acks",
        "assignee",
        "attributes",
        "breach_reasons",
        "channel",
        "customer_id",
        "cycle",
        "cycles",
        "digests",
        "escalation_active",
        "fired",
        "first_response_stopped_at",
        "group",
        "history",
        "history_details",
        "holders",
        "last_event_at",
        "parked",
        "pauses",
        "policy_name",
        "policy_version",
        "reply_round",
        "reply_since",
        "reported_at",
        "resolution_spans",
        "responded_at",
        "revisions",
        "routes",
        "seen",
        "severity",
        "status",
        "stops",
        "tags",
        "ticket_id",
        "timers",
        "timers_through",
        "update_round",
        "update_since",
    )

    def __init__(
        self,
        ticket_id: str,
        severity: int,
        reported_at: Micros,
        last_event_at: Micros,
        policy_version: str,
        status: str = "open",
        customer_id: str | None = None,
        cycle: int = 0,
        responded_at: Micros | None = None,
        first_response_stopped_at: Micros | None = None,
        resolution_spans: list[Span] | None = None,
        pauses: list[Span] | None = None,
        escalation_active: bool = True,
        fired: list[str] | None = None,
        seen: list[str] | None = None,
        timers: list[Timer] | None = None,
        group: str | None = None,
        assignee: str | None = None,
        digests: list[int] | None = None,
        policy_name: str = "",
        channel: str | None = None,
        tags: list[str] | None = None,
        attributes: dict[str, str] | None = None,
        history: bytes = b"",
        history_details: tuple[Any, ...] = (),
        timers_through: Micros | None = None,
        revisions: dict[str, int] | None = None,
        reply_round: int = 0,
        reply_since: Micros | None = None,
        update_round: int = 0,
        update_since: Micros | None = None,
        parked: list[Parked] | None = None,
        acks: list[Ack] | None = None,
        holders: list[Holder] | None = None,
        cycles: list[Cycle] | None = None,
        routes: list[Route] | None = None,
        stops: list[Stop] | None = None,
        breach_reasons: list[BreachReason] | None = None,
    ) -> None:
        self.ticket_id = ticket_id
        self.severity = severity
        self.reported_at = reported_at
        self.last_event_at = last_event_at
        self.policy_version = policy_version
        self.status = status
        """`open`, `paused`, `resolved` or `closed` (kept only to recognise redeliveries)."""
        self.customer_id = customer_id
        self.cycle = cycle
        """Resolution cycle: 0 until the first reopen, +1 per reopen."""
        self.responded_at = responded_at
        self.first_response_stopped_at = first_response_stopped_at
        self.resolution_spans: list[Span] = [] if resolution_spans is None else resolution_spans
        self.pauses: list[Span] = [] if pauses is None else pauses
        self.escalation_active = escalation_active
        self.fired: list[str] = [] if fired is None else fired
        self.seen: list[str] = [] if seen is None else seen
        self.digests = digests
        """`events.records.TicketEvent.digest` of each `seen` event, kept only for a state
        restored without a full history (0: unknown, a state older than digests); None: taken
        from the history when an id comes again (`known_digest`). A redelivery repeats the
        digest, an id reused for other content does not."""
        self.timers: list[Timer] = [] if timers is None else timers
        self.group = group
        self.assignee = assignee
        """Routing metadata as last assigned (`ticket.assigned`), copied into SLA events."""
        self.policy_name = policy_name
        """The policy of the file the ticket runs under ("" when the file holds one policy)."""
        self.channel = channel
        self.tags: list[str] = NO_TAGS if tags is None else tags
        self.attributes: dict[str, str] = NO_ATTRIBUTES if attributes is None else attributes
        """What the policy is chosen on, with `customer_id` and `group` (`ticket.updated`).
        Replaced, never changed in place: states and copies share them (most tickets have
        none, see NO_TAGS)."""
        self.history = history
        """The applied events in event-time order, parallel to `seen`, packed: STEP bytes each
        (time, type code), so an event costs nine bytes and no object of its own. What the
        events said besides is in `history_details`, flat: the DETAIL_SIZE fields of a
        `Detail` for each event coded with `_HAS_DETAIL`, one after the other. A late event is
        folded in at its own time by replaying them (see `corrections`); a redelivered id is
        checked against its event's digest. Both are immutable, so copies share them."""
        self.history_details = history_details
        self.timers_through = timers_through
        """The latest due time of a fired timer: an event at or before it comes too late to
        have prevented that timer, and is applied with a correction."""
        self.revisions = revisions or None
        """Base SLA event id -> times it was retracted, so a re-issued event gets a new id
        (None until a first correction: most tickets never have one)."""
        self.reply_round = reply_round
        """Next-response rounds started: +1 per customer reply that found the ticket answered."""
        self.reply_since = reply_since
        """When the open next-response round started (the oldest unanswered customer reply);
        None when the last public message was the agent's (or the ticket is resolved)."""
        self.update_round = update_round
        """Periodic-update rounds started: +1 per agent update (and per reopen)."""
        self.update_since = update_since
        """When the current update period started (the latest agent update or reopen); None
        before the first response and while resolved."""
        self.parked = parked or None
        """Events that came before an earlier event of the ticket they need (a resume before
        its pause), in event-time order, each waiting for the watermark to pass its time
        (see `fold.handle`); None when there are none (almost always)."""
        self.acks = acks or None
        """The escalation levels acknowledged in this cycle (`ticket.escalation_acknowledged`),
        in level order; None when none is (almost always)."""
        self.holders = holders
        """Who held the ticket since when, in time order (`Holder`), kept only under a policy
        with time attribution (None otherwise)."""
        self.cycles = cycles
        """The OLAs' group ownership cycles in start order (`Cycle`); None when the ticket has
        had none (always, under a policy without OLAs)."""
        self.routes = routes or None
        """The ticket's group and attributes from each change on, from its open, kept only
        under a policy whose calendars or targets depend on them (`ticket_calendars`)."""
        self.stops = stops or None
        """Manual stops of the clock (`ticket.sla_stopped`), in time order; None: none."""
        self.breach_reasons = breach_reasons or None
        """Reasons given for breaches (`ticket.breach_reason`); None: none."""

    def __repr__(self) -> str:
        from streams.sla.state_codec import to_obj  # the codec imports this module

        return f"TicketState({to_obj(self)!r})"

    def copy(self) -> TicketState:
        """An independent copy (the fold changes states in place; the engine undoes a failed
        record with the copy it took before). Every field of `__init__` is copied here."""
        return TicketState(
            ticket_id=self.ticket_id,
            severity=self.severity,
            reported_at=self.reported_at,
            last_event_at=self.last_event_at,
            policy_version=self.policy_version,
            status=self.status,
            customer_id=self.customer_id,
            cycle=self.cycle,
            responded_at=self.responded_at,
            first_response_stopped_at=self.first_response_stopped_at,
            resolution_spans=list(self.resolution_spans),
            pauses=list(self.pauses),
            escalation_active=self.escalation_active,
            fired=list(self.fired),
            seen=list(self.seen),
            timers=list(self.timers),
            group=self.group,
            assignee=self.assignee,
            digests=None if self.digests is None else list(self.digests),
            policy_name=self.policy_name,
            channel=self.channel,
            tags=self.tags,  # replaced, never changed in place: shared
            attributes=self.attributes,
            history=self.history,  # immutable: shared
            history_details=self.history_details,
            timers_through=self.timers_through,
            revisions=None if self.revisions is None else dict(self.revisions),
            reply_round=self.reply_round,
            reply_since=self.reply_since,
            update_round=self.update_round,
            update_since=self.update_since,
            parked=None if self.parked is None else list(self.parked),
            acks=None if self.acks is None else list(self.acks),
            holders=None if self.holders is None else list(self.holders),
            cycles=None if self.cycles is None else list(self.cycles),
            routes=None if self.routes is None else list(self.routes),
            stops=None if self.stops is None else list(self.stops),
            breach_reasons=None if self.breach_reasons is None else list(self.breach_reasons),
        )

    @property
    def next_due(self) -> Micros | None:
        """When this ticket's earliest pending timer fires (or its earliest parked event
        expires), for the timer index."""
        due = self.timers[0].due_at if self.timers else None
        parked = self.parked
        if parked and (due is None or parked[0][0] < due):
            return parked[0][0]
        return due

    def has_history(self) -> bool:
        """Whether every seen event is in the history (not so in states older than it)."""
        return len(self.history) == STEP * len(self.seen)

    def record(self, event: TicketEvent, at: Micros) -> None:
        """Append an applied event to the history, as applied at `at` (its event time)."""
        code = _kind_code(event.type)
        detail = detail_of(event)
        if detail is not None:
            code |= _HAS_DETAIL
            self.history_details += detail
        self.history = self.history + _step(at, code)

    def applied_events(self) -> list[TicketEvent]:
        """The history's applied events in event-time order, for a replay."""
        return _events(self.history, self.history_details, self.seen, self.ticket_id)

    def known_digest(self, index: int) -> int:
        """The digest of the `index`-th seen event (0: unknown, a state older than digests)."""
        if self.digests is not None:
            return self.digests[index]
        return self.applied_events()[index].digest() if self.has_history() else 0


def _step(at: Micros, code: int) -> bytes:
    """One applied event as the history packs it (see STEP)."""
    return (at * 256 + code).to_bytes(STEP, "little", signed=True)


def unpacked(history: bytes, details: tuple[Any, ...]) -> list[Step]:
    """(time, type, detail or None) of each event of a packed history (`packed` reversed)."""
    steps: list[Step] = []
    position = 0
    for start in range(0, len(history), STEP):
        value = int.from_bytes(history[start : start + STEP], "little", signed=True)
        code = value & 0xFF
        detail = None
        if code & _HAS_DETAIL:
            detail = details[position : position + DETAIL_SIZE]
            position += DETAIL_SIZE
        steps.append((value >> 8, TICKET_EVENT_TYPES[code & ~_HAS_DETAIL], detail))
    return steps


def _kind_code(kind: str) -> int:
    """The event type's number in histories. Raises ValueError for a type not in the contract."""
    code = _KIND_CODES.get(kind)
    if code is None:
        raise ValueError("field 'type': not a ticket event type of the contract")
    return code


def detail_of(event: TicketEvent) -> tuple[Any, ...] | None:
    """The event's `Detail`, or None when it says nothing besides its type and time (typed as
    a plain tuple: the history stores it flat, and mypyc need not check and unbox it)."""
    if event.type in CLOCK_TYPES:  # reason, actor, metric in the channel, assignee, group slots
        return (
            None,
            None,
            event.actor,
            event.metric,
            event.reason,
            None,
            None,
            False,
            event.pinned_digest,
        )
    severity = event.level if event.type == ACKNOWLEDGED else event.severity
    if (
        severity is None
        and event.customer_id is None
        and event.assignee is None
        and event.group is None
        and event.channel is None
        and event.tags is None
        and event.attributes is None
        and not event.has_group
        and not event.pinned_digest
    ):
        return None
    return (
        severity,
        event.customer_id,
        event.assignee,
        event.group,
        event.channel,
        event.tags,
        event.attributes,
        event.has_group,
        event.pinned_digest,
    )


def _events(
    history: bytes, details: tuple[Any, ...], ids: list[str], ticket_id: str
) -> list[TicketEvent]:
    """The events of a packed history, with their ids (`ids`, parallel to it)."""
    events: list[TicketEvent] = []
    for index, (at, kind, detail) in enumerate(unpacked(history, details)):
        if detail is None:
            events.append(TicketEvent(kind, ids[index], ticket_id, at, has_group=False))
            continue
        severity, customer_id, assignee, group, channel, tags, attributes, has_group, pinned = (
            detail
        )
        if kind in CLOCK_TYPES:
            clocked = TicketEvent(
                kind,
                ids[index],
                ticket_id,
                at,
                has_group=False,
                reason=channel,
                actor=assignee,
                metric=group,
            )
            clocked.pinned_digest = pinned
            events.append(clocked)
            continue
        acknowledged = kind == ACKNOWLEDGED
        event = TicketEvent(
            kind,
            ids[index],
            ticket_id,
            at,
            None if acknowledged else severity,
            customer_id,
            assignee,
            group,
            channel,
            tags,
            attributes,
            has_group,
            severity if acknowledged else None,
        )
        event.pinned_digest = pinned  # a redated event's digest as received (see `redated`)
        events.append(event)
    return events


def packed(
    steps: list[Step],
) -> tuple[bytes, tuple[Any, ...]]:
    """A history (`TicketState.history`, `history_details`) from (time, type, detail) steps."""
    chunks: list[bytes] = []
    details: list[Any] = []
    for at, kind, detail in steps:
        code = _kind_code(kind)
        if detail is not None:
            code |= _HAS_DETAIL
            details.extend(detail)
        chunks.append(_step(at, code))
    return b"".join(chunks), tuple(details)
