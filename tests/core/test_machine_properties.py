"""Laws of the SLA fold over arbitrary histories (hypothesis)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.codec import ticket_event_from_obj
from events.inbound import TICKET_EVENT_TYPES
from events.instants import MINUTE, format_instant
from events.outbound import sla_event_adapter
from events.records import TicketEvent
from events.samples import generate_history
from events.sla_records import wire
from streams.sla.fold import advance, handle
from streams.sla.policy import load_policy
from streams.sla.replay import Replayer
from streams.sla.state import TicketState

POLICY = load_policy()
START = 1_795_816_800_000_000  # 2026-11-27T22:00:00Z, a Friday evening in Toronto


def per_ticket(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for record in records:
        grouped[record["ticket_id"]].append(record["event_id"])
    return dict(grouped)


def history(seed: int, tickets: int) -> list[TicketEvent]:
    return [ticket_event_from_obj(obj) for obj in generate_history(tickets, seed=seed)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), tickets=st.integers(1, 25), data=st.data())
def test_output_does_not_depend_on_how_often_the_clock_is_advanced(
    seed: int, tickets: int, data: st.DataObject
) -> None:
    """A stream processor sweeps timers at arbitrary moments; each ticket's output is the same."""
    events = history(seed, tickets)
    plain = Replayer(POLICY)
    swept = Replayer(POLICY)
    out_plain: list[dict[str, Any]] = []
    out_swept: list[dict[str, Any]] = []
    for ev in events:
        out_plain += plain.feed(ev)[0]
        if data.draw(st.booleans()):
            # a sweep somewhere between the previous event and this one (never past it)
            now = data.draw(st.integers(swept.clock or ev.at, ev.at)) if swept.clock else ev.at
            out_swept += swept.advance(now, inclusive=now < ev.at)
        out_swept += swept.feed(ev)[0]
    end = events[-1].at + 30 * 24 * 60 * MINUTE
    out_plain += plain.advance(end)
    out_swept += swept.advance(end)
    assert per_ticket(out_plain) == per_ticket(out_swept)
    assert per_ticket(out_plain) == per_ticket(never_swept(events, end))
    ids = [r["event_id"] for r in out_plain]
    assert len(ids) == len(set(ids)), "a timer fired twice"
    for records in per_ticket_records(out_plain).values():
        ats = [r["at"] for r in records]
        assert ats == sorted(ats), "a ticket's events went back in time"
    for record in out_plain:
        sla_event_adapter.validate_python(wire(record))


def never_swept(events: list[TicketEvent], end: int) -> list[dict[str, Any]]:
    """Each ticket folded on its own, timers fired only by its own events and one final sweep."""
    states: dict[str, TicketState] = {}
    out: list[dict[str, Any]] = []
    for ev in events:
        outcome = handle(states.get(ev.ticket_id), ev, POLICY)
        out += outcome.emitted
        if outcome.state is None:
            states.pop(ev.ticket_id, None)
        else:
            states[ev.ticket_id] = outcome.state
    for state in states.values():
        out += advance(state, end, POLICY).emitted
    return out


def per_ticket_records(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        grouped[record["ticket_id"]].append(record)
    return grouped


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_replay_is_deterministic_and_globally_time_ordered(seed: int) -> None:
    lines = [orjson.dumps(obj) for obj in generate_history(30, seed=seed)]
    first = list(Replayer(POLICY).run(lines))
    second = list(Replayer(POLICY).run(lines))
    assert first == second
    ats = [r["at"] for r in first]
    assert ats == sorted(ats)


kinds = st.sampled_from([k.removeprefix("ticket.") for k in TICKET_EVENT_TYPES])


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(kinds, st.integers(-120, 3000), st.integers(1, 4), st.booleans()),
        min_size=1,
        max_size=25,
    )
)
def test_any_sequence_of_events_is_applied_or_rejected_never_a_crash(
    steps: list[tuple[str, int, int, bool]],
) -> None:
    """Arbitrary orders, repeats and out-of-order times: each event applies or gets a reason."""
    state: TicketState | None = None
    at = START
    fired: list[str] = []
    for number, (kind, minutes, severity, repeat) in enumerate(steps):
        at += minutes * MINUTE
        body: dict[str, Any] = {
            "event_id": f"e{number - 1 if repeat and number else number}",
            "ticket_id": "T",
            "type": f"ticket.{kind}",
            "occurred_at": format_instant(at),
            "severity": severity,
            "reason": "third_party",  # for issue 24's types (other types ignore them)
            "actor": "agent-1",
            "metric": "resolution",
        }
        outcome = handle(state, ticket_event_from_obj(body), POLICY)
        assert outcome.rejected is None or outcome.rejected.strip()
        if outcome.rejected is None:
            state = outcome.state
        fired += [r["event_id"] for r in outcome.emitted]
        if state is not None:
            assert state.timers == sorted(state.timers, key=lambda t: (t.due_at, t.rank))
    assert len(fired) == len(set(fired))
