"""How a `TicketState` is stored (the engine's changelog, the projections' `state_json`), and
how every form ever stored is read back.

A stored state is a JSON object. Its format version is implied by its shape (the forms below
were written without a version key, and today's form must stay byte-identical, as the golden
files pin it); a later format adds a `"format"` key, and `stored_version` reads it first. Old
forms are read by upcasting, as the `eventsourcing` library does: one function per old version
turns an object of that version into the next version's shape, applied in a chain until the
object has the current shape (FORMAT_VERSION), which alone is turned into a state.

The versions (all written on 2026-11-30 unless said otherwise):
1. before event digests (ad0d0e8): no `digests`, no history; early ones without `group`.
2. digests per seen event (ad0d0e8), then the history as one list per event (`history`);
   early ones without `policy_name`, the event-time fields and others (de31418's has them).
3. the history as flat `steps`, three slots an event, each detail 8 fields (a735ef7).
4. details of 9 fields, the last a redated event's digest (cf3afe3); parked events of 4
   fields (2026-12-07, 8d7720d). Versions 2 to 4 were first written without the
   next-response and update rounds (df2f5c5 added them).
5. parked events of 5 fields, the last their input origin (2d65d99): the current form; since
   2026-12-07 (issue #25) with `acks`, the acknowledged escalation levels, when there are any
   (absent otherwise, so every state without one is byte-identical to before); since
   issue 24 with `routes` (a ticket's group and attributes over time, under a policy whose
   calendars or targets depend on them), `stops` (manual stops of the clock) and
   `breach_reasons`, each absent when empty, in the same way (in version 6 too).
6. with `holders` (who held the ticket since when, for time attribution) and `cycles` (the
   OLAs' group ownership cycles), issue #23: written with `"format": 6` when the state has
   either; a state with neither is written in version 5's shape, byte-identical to before,
   and read as version 5 (`upcast_5_to_6` gives it none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from events.instants import Micros
from events.records import TicketEvent
from streams.sla.state import (
    CLOSED_STATUSES,
    Cycle,
    Parked,
    Step,
    TicketState,
    Timer,
    detail_of,
    packed,
    unpacked,
)
from streams.sla.timer_key import parse

FORMAT_VERSION: Final = 6
"""The version `to_obj` writes (see the module docstring for each version's shape)."""

_NEXT_DUE: Final = b'{"next_due":'


def encode(state: TicketState) -> bytes:
    """A state as JSON bytes for the changelog: `to_obj` with `next_due` and `status` first.

    They come first so recovery can re-arm the timer index and count open tickets by slicing a
    few bytes instead of parsing every state (`next_due_of`, `is_open_raw`). The copy matters:
    orjson 3.x may return bytes objects with kilobytes of spare capacity, and recovery keeps
    one per ticket until a record touches it.
    """
    obj = to_obj(state)
    head: dict[str, Any] = {"next_due": state.next_due, "status": obj.pop("status")}
    head.update(obj)
    return memoryview(orjson.dumps(head)).tobytes()


def decode(raw: bytes) -> TicketState:
    """The state in changelog bytes of any version (`encode`'s, or `to_obj`'s as JSON).

    Raises orjson.JSONDecodeError for bytes that are not JSON, KeyError or ValueError for an
    object that is no stored state.
    """
    return from_obj(orjson.loads(raw))


def to_obj(state: TicketState) -> dict[str, Any]:
    """The state as a JSON-ready object of the current version (instants in microseconds)."""
    obj: dict[str, Any] = {
        "ticket_id": state.ticket_id,
        "severity": state.severity,
        "reported_at": state.reported_at,
        "last_event_at": state.last_event_at,
        "policy_version": state.policy_version,
        "status": state.status,
        "customer_id": state.customer_id,
        "cycle": state.cycle,
        "responded_at": state.responded_at,
        "first_response_stopped_at": state.first_response_stopped_at,
        "resolution_spans": state.resolution_spans,
        "pauses": state.pauses,
        "escalation_active": state.escalation_active,
        "fired": state.fired,
        "seen": state.seen,
        "timers": [[t.due_at, t.metric, t.key.text, list(t.rank)] for t in state.timers],
        "group": state.group,
        "assignee": state.assignee,
        "digests": state.digests,  # null: taken from the steps
        "policy_name": state.policy_name,
        "channel": state.channel,
        "tags": state.tags,
        "attributes": state.attributes,
        "steps": _steps(state),
        "timers_through": state.timers_through,
        "revisions": state.revisions or {},
        "reply_round": state.reply_round,
        "reply_since": state.reply_since,
        "update_round": state.update_round,
        "update_since": state.update_since,
    }
    if state.parked:  # absent when none: states without parked events are as before
        obj["parked"] = [list(entry) for entry in state.parked]
    if state.acks:  # absent when none, likewise (acknowledgements came after version 5)
        obj["acks"] = [list(ack) for ack in state.acks]
    if state.holders is not None or state.cycles is not None:  # version 6's own fields
        obj["format"] = FORMAT_VERSION
        obj["holders"] = None if state.holders is None else [list(h) for h in state.holders]
        obj["cycles"] = None if state.cycles is None else [list(c) for c in state.cycles]
    if state.routes:  # absent when none, likewise (issue 24)
        obj["routes"] = [list(route) for route in state.routes]
    if state.stops:
        obj["stops"] = [list(stop) for stop in state.stops]
    if state.breach_reasons:
        obj["breach_reasons"] = [list(reason) for reason in state.breach_reasons]
    return obj


def from_obj(obj: dict[str, Any]) -> TicketState:
    """The state in a stored object of any version, upcast to the current one first (the
    object may be changed in place). Raises KeyError for a field the object lacks."""
    version = stored_version(obj)
    while version < FORMAT_VERSION:
        obj = UPCASTERS[version](obj)
        version += 1
    return _from_current(obj)


def stored_version(obj: dict[str, Any]) -> int:
    """The format version of a stored object: its `format`, else the earliest version its
    shape fits (a shape two versions share reads the same either way)."""
    if "format" in obj:
        version: int = obj["format"]
        if not 1 <= version <= FORMAT_VERSION:
            raise ValueError(f"field 'format': unknown state format {version}")
        return version
    if "digests" not in obj:
        return 1
    if "steps" not in obj:
        return 2
    flat: list[Any] = obj["steps"]
    if any(d is not None and len(d) == 8 for d in flat[2::3]):
        return 3
    if any(len(entry) == 4 for entry in obj.get("parked") or ()):
        return 4
    return 5


def upcast_1_to_2(obj: dict[str, Any]) -> dict[str, Any]:
    """Digests came: a state from before has none known (0 each, so a repeated id is taken
    for a redelivery), and may predate the routing metadata."""
    obj["digests"] = [0] * len(obj["seen"])
    obj.setdefault("group", None)
    obj.setdefault("assignee", None)
    return obj


def upcast_2_to_3(obj: dict[str, Any]) -> dict[str, Any]:
    """The history became flat `steps` (one list per event before: occurred_at, type,
    severity, assignee, group, the other routing fields or None); the fields added while
    version 2 was written take their defaults."""
    steps: list[Any] = []
    for at, kind, severity, assignee, group, extras in obj.pop("history", ()):
        fields: dict[str, Any] = {} if extras is None else extras
        event = TicketEvent(
            kind,
            "",
            "",
            at,
            severity,
            fields.get("customer_id"),
            assignee,
            group,
            fields.get("channel"),
            fields.get("tags"),
            fields.get("attributes"),
            fields.get("has_group", True),
        )
        detail = detail_of(event)
        steps.extend((at, kind, None if detail is None else list(detail[:8])))
    obj["steps"] = steps
    for field, default in _ADDED_IN_2:
        obj.setdefault(field, default)
    return obj


_ADDED_IN_2: Final[list[tuple[str, Any]]] = [
    ("policy_name", ""),
    ("channel", None),
    ("tags", None),
    ("attributes", None),
    ("timers_through", None),
    ("revisions", None),
]
"""Fields version 2 was written without at first, with the value their absence meant."""


def upcast_3_to_4(obj: dict[str, Any]) -> dict[str, Any]:
    """A detail gained its 9th field, a redated event's digest as received (0: none)."""
    flat: list[Any] = obj["steps"]
    for index in range(2, len(flat), 3):
        detail = flat[index]
        if detail is not None and len(detail) == 8:
            flat[index] = [*detail, 0]
    return obj


def upcast_4_to_5(obj: dict[str, Any]) -> dict[str, Any]:
    """A parked event gained its 5th field, its input origin (-1: unknown); the next-response
    and update rounds, written since df2f5c5 (versions 2 to 4 were written without), start
    at none."""
    parked = obj.get("parked")
    if parked:
        obj["parked"] = [[*entry, -1] if len(entry) == 4 else entry for entry in parked]
    for field, default in _ROUNDS:
        obj.setdefault(field, default)
    return obj


_ROUNDS: Final[list[tuple[str, Any]]] = [
    ("reply_round", 0),
    ("reply_since", None),
    ("update_round", 0),
    ("update_since", None),
]


def upcast_5_to_6(obj: dict[str, Any]) -> dict[str, Any]:
    """Time attribution and OLAs came: a state from before has no holders and no cycles (it
    was timed by a policy without them)."""
    obj.setdefault("holders", None)
    obj.setdefault("cycles", None)
    return obj


UPCASTERS: Final[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    1: upcast_1_to_2,
    2: upcast_2_to_3,
    3: upcast_3_to_4,
    4: upcast_4_to_5,
    5: upcast_5_to_6,
}
"""Version -> the step that turns an object of that version into the next one's shape."""


def _from_current(obj: dict[str, Any]) -> TicketState:
    """The state in an object of the current version."""
    stored = obj["digests"]
    state = TicketState(
        ticket_id=obj["ticket_id"],
        severity=obj["severity"],
        reported_at=obj["reported_at"],
        last_event_at=obj["last_event_at"],
        policy_version=obj["policy_version"],
        status=obj["status"],
        customer_id=obj["customer_id"],
        cycle=obj["cycle"],
        responded_at=obj["responded_at"],
        first_response_stopped_at=obj["first_response_stopped_at"],
        resolution_spans=[(s, e) for s, e in obj["resolution_spans"]],
        pauses=[(s, e) for s, e in obj["pauses"]],
        escalation_active=obj["escalation_active"],
        fired=list(obj["fired"]),
        seen=list(obj["seen"]),
        timers=[Timer(d, (rk[0], rk[1]), m, parse(m, r)) for d, m, r, rk in obj["timers"]],
        group=obj["group"],
        assignee=obj["assignee"],
        digests=None if stored is None else list(stored),
        policy_name=obj["policy_name"],
        channel=obj["channel"],
        tags=list(obj["tags"]) if obj["tags"] else None,  # none: the shared NO_TAGS
        attributes=dict(obj["attributes"]) if obj["attributes"] else None,
        timers_through=obj["timers_through"],
        revisions=dict(obj["revisions"]) if obj["revisions"] else None,
        reply_round=obj["reply_round"],
        reply_since=obj["reply_since"],
        update_round=obj["update_round"],
        update_since=obj["update_since"],
        parked=[_parked(entry) for entry in obj["parked"]] if obj.get("parked") else None,
        acks=[(a[0], a[1], a[2]) for a in obj["acks"]] if obj.get("acks") else None,
        holders=None if obj["holders"] is None else [(h[0], h[1], h[2]) for h in obj["holders"]],
        cycles=None if obj["cycles"] is None else [_cycle(c) for c in obj["cycles"]],
        routes=[(r[0], r[1], dict(r[2])) for r in obj["routes"]] if obj.get("routes") else None,
        stops=[(s[0], s[1], s[2], s[3]) for s in obj["stops"]] if obj.get("stops") else None,
        breach_reasons=[(b[0], b[1], b[2], b[3], b[4]) for b in obj["breach_reasons"]]
        if obj.get("breach_reasons")
        else None,
    )
    state.history, state.history_details = _history(obj["steps"])
    digests = state.digests
    if digests is not None and state.has_history():
        derived = [event.digest() for event in state.applied_events()]
        if derived == digests:  # else a redated event's digest: the list is kept
            state.digests = None
    return state


def _steps(state: TicketState) -> list[Any]:
    """The history as `to_obj` writes it: flat, (occurred_at, type, detail or None) per event."""
    flat: list[Any] = []
    for step in unpacked(state.history, state.history_details):
        flat.extend(step)
    return flat


def _history(flat: list[Any]) -> tuple[bytes, tuple[Any, ...]]:
    """The packed history (`TicketState.history`, `history_details`) of stored `steps`."""
    steps: list[Step] = []
    for index in range(0, len(flat) - 2, 3):  # three slots an event: time, type, detail
        detail = flat[index + 2]
        steps.append((flat[index], flat[index + 1], None if detail is None else tuple(detail)))
    return packed(steps)


def _cycle(entry: list[Any]) -> Cycle:
    """A stored ownership cycle (a JSON array of 5)."""
    return (entry[0], entry[1], entry[2], entry[3], entry[4])


def _parked(entry: list[Any]) -> Parked:
    """A stored parked event (a JSON array of 5)."""
    return (entry[0], entry[1], entry[2], entry[3], entry[4])


def _after_next_due(raw: bytes) -> int:
    """Index just after the `next_due` value, or -1 if the record is not in that shape."""
    if not raw.startswith(_NEXT_DUE):
        return -1
    return raw.find(b",", len(_NEXT_DUE))


def next_due_of(raw: bytes) -> Micros | None:
    """The `next_due` of encoded state bytes, cheaply (falls back to a full decode)."""
    end = _after_next_due(raw)
    if end > 0:
        text = raw[len(_NEXT_DUE) : end]
        if text == b"null":
            return None
        try:
            return int(text)
        except ValueError:
            pass
    return decode(raw).next_due


def is_open_raw(raw: bytes) -> bool:
    """Whether encoded state bytes are an open ticket (not resolved or closed), cheaply."""
    end = _after_next_due(raw)
    if end > 0 and raw.startswith(b'"status":"', end + 1):
        start = end + 11
        stop = raw.find(b'"', start)
        return raw[start:stop].decode() not in CLOSED_STATUSES
    return decode(raw).status not in CLOSED_STATUSES
