"""How a ticket state keeps its applied events (issue #9's history, kept compact for #8's speed
and memory): what it must still do after a trip through the changelog's JSON, and for states
written by earlier versions (history as one list per event with a digest list beside it).
"""

from __future__ import annotations

from typing import Any

import orjson

from events.codec import decode_ticket_event, ticket_event_from_obj
from events.instants import SUPPORTED_RANGE, parse_rfc3339
from events.samples import generate_history, with_routing
from events.sla_records import wire
from streams.sla import state_codec
from streams.sla.fold import CONFLICT, handle
from streams.sla.policy import load_policy
from streams.sla.state import TicketState

POLICY = load_policy()
VENDOR = load_policy("deploy/examples/vendor-policy.toml")

PREVIOUS_FORM = (
    b'{"ticket_id":"T-1","severity":2,"reported_at":1796115600000000,'
    b'"last_event_at":1796137200000000,"policy_version":"sha256:6372b21f93c6",'
    b'"status":"resolved","customer_id":"C-1","cycle":0,"responded_at":null,'
    b'"first_response_stopped_at":1796137200000000,'
    b'"resolution_spans":[[1796115600000000,1796137200000000]],"pauses":[],'
    b'"escalation_active":false,"fired":["resolution:met:0"],"seen":["e1","e2","e3"],'
    b'"timers":[],"group":"l1","assignee":"agent-1",'
    b'"digests":[1557368539,1280821673,3268963176],"policy_name":"","channel":null,'
    b'"tags":[],"attributes":{},"history":[[1796115600000000,"ticket.opened",2,null,null,'
    b'{"customer_id":"C-1","channel":null,"tags":null,"attributes":null,"has_group":false}],'
    b'[1796115900000000,"ticket.assigned",null,"agent-1","l1",null],'
    b'[1796137200000000,"ticket.resolved",null,null,null,'
    b'{"attributes":null,"has_group":false}]],"timers_through":null,"revisions":{}}'
)
"""A state as the code of 2026-11-30 (de31418) wrote it to the changelog: opened Tuesday
2026-12-01 09:00Z at severity 2, assigned 09:05Z, resolved 15:00Z, never responded."""

STEPS_FORM = (
    b'{"ticket_id":"T-1","severity":2,"reported_at":1796115600000000,'
    b'"last_event_at":1796137200000000,"policy_version":"sha256:6372b21f93c6",'
    b'"status":"resolved","customer_id":"C-1","cycle":0,"responded_at":null,'
    b'"first_response_stopped_at":1796137200000000,'
    b'"resolution_spans":[[1796115600000000,1796137200000000]],"pauses":[],'
    b'"escalation_active":false,"fired":["resolution:met:0"],"seen":["e1","e2","e3"],'
    b'"timers":[],"group":"l1","assignee":"agent-1","digests":null,"policy_name":"",'
    b'"channel":null,"tags":[],"attributes":{},"steps":[1796115600000000,"ticket.opened",'
    b'[2,"C-1",null,null,null,null,null,false,0],1796115900000000,"ticket.assigned",'
    b'[null,null,"agent-1","l1",null,null,null,true,0],1796137200000000,"ticket.resolved",null],'
    b'"timers_through":null,"revisions":{},"reply_round":0,"reply_since":null,'
    b'"update_round":0,"update_since":null}'
)
"""The same state as ba65811 wrote it, with the history as flat `steps` (the changelog form,
unchanged since: only the history's form in memory became packed bytes)."""


def event(event_id: str, kind: str, at: str, **fields: Any) -> Any:
    return decode_ticket_event(
        orjson.dumps(
            {
                "event_id": event_id,
                "ticket_id": "T-1",
                "type": f"ticket.{kind}",
                "occurred_at": f"2026-12-01T{at}:00Z",
                **fields,
            }
        )
    )


OPENED = event("e1", "opened", "09:00", severity=2, customer_id="C-1")
ASSIGNED = event("e2", "assigned", "09:05", assignee="agent-1", group="l1")
RESOLVED = event("e3", "resolved", "15:00")


def fresh() -> TicketState:
    state = None
    for ev in (OPENED, ASSIGNED, RESOLVED):
        state = handle(state, ev, POLICY).state
    assert state is not None
    return state


def through_json(state: TicketState) -> TicketState:
    return state_codec.from_obj(orjson.loads(orjson.dumps(state_codec.to_obj(state))))


def test_a_state_in_the_previous_form_is_read_as_the_same_state() -> None:
    old = state_codec.from_obj(orjson.loads(PREVIOUS_FORM))
    assert state_codec.to_obj(old) == state_codec.to_obj(fresh())
    assert [e.digest() for e in old.applied_events()] == [1557368539, 1280821673, 3268963176]


def test_a_state_as_ba65811_wrote_it_reads_and_writes_back_byte_for_byte() -> None:
    assert orjson.dumps(state_codec.to_obj(fresh())) == STEPS_FORM
    restored = state_codec.from_obj(orjson.loads(STEPS_FORM))
    assert orjson.dumps(state_codec.to_obj(restored)) == STEPS_FORM
    assert [(e.type, e.at, e.assignee) for e in restored.applied_events()] == [
        ("ticket.opened", OPENED.at, None),
        ("ticket.assigned", ASSIGNED.at, "agent-1"),
        ("ticket.resolved", RESOLVED.at, None),
    ]


def test_a_history_keeps_event_times_to_the_microsecond_at_both_ends_of_the_range() -> None:
    """The packed history holds `time * 256 + type code` in nine bytes: the first and last
    supported instants (0 and beyond 2**62 once shifted) come back exact, with their types and
    details, in memory and through the changelog form."""
    first, last = (parse_rfc3339(end) for end in SUPPORTED_RANGE.split(" to "))
    times = [first, first + 1, 1796115600000001, last - 1, last]
    state = TicketState("T-1", 2, first, first, POLICY.version)
    kinds = ["opened", "paused", "assigned", "resumed", "responded"]
    for number, (kind, at) in enumerate(zip(kinds, times, strict=True)):
        ev = ticket_event_from_obj(
            {
                "event_id": f"e{number}",
                "ticket_id": "T-1",
                "type": f"ticket.{kind}",
                "occurred_at": "2026-12-01T09:00:00Z",
                **({"severity": 4} if kind == "opened" else {}),
                **({"assignee": f"agent-{number}"} if kind == "assigned" else {}),
            }
        )
        state.record(ev, at)
        state.seen.append(ev.event_id)
    for kept in (state, through_json(state), state.copy()):
        assert [
            (e.event_id, e.type, e.at, e.severity, e.assignee) for e in kept.applied_events()
        ] == [
            ("e0", "ticket.opened", first, 4, None),
            ("e1", "ticket.paused", first + 1, None, None),
            ("e2", "ticket.assigned", 1796115600000001, None, "agent-2"),
            ("e3", "ticket.resumed", last - 1, None, None),
            ("e4", "ticket.responded", last, None, None),
        ]


def test_a_state_in_the_previous_form_corrects_a_late_reply_and_checks_reused_ids() -> None:
    late_reply = event("e4", "responded", "10:00")
    for state in (state_codec.from_obj(orjson.loads(PREVIOUS_FORM)), fresh()):
        corrected = handle(state, late_reply, POLICY)
        assert corrected.late and corrected.rejected is None
        assert [(r["type"], r["metric"], r["at"]) for r in map(wire, corrected.emitted)] == [
            ("sla.met", "first_response", "2026-12-01T10:00:00Z")
        ]
        assert handle(state, ASSIGNED, POLICY).duplicate
        reused = event("e2", "assigned", "09:05", assignee="agent-2", group="l1")
        assert handle(state, reused, POLICY).rejected == CONFLICT
        after = corrected.state
        assert after is not None
        assert handle(after, late_reply, POLICY).duplicate
        assert handle(through_json(after), late_reply, POLICY).duplicate
        moved = event("e4", "responded", "10:01")
        assert handle(through_json(after), moved, POLICY).rejected == CONFLICT


def test_every_kind_of_event_is_kept_exactly_through_the_changelog_form() -> None:
    """Redelivering any applied event after a changelog round trip is a duplicate, and the
    same id with any field changed is rejected: the kept history gives back each event's
    content (routing fields, tags, attributes, a group given or not) exactly."""
    history = with_routing(generate_history(300, seed=4), seed=4)
    states: dict[str, TicketState] = {}
    applied: dict[str, list[Any]] = {}
    for obj in history:
        ev = ticket_event_from_obj(obj)
        outcome = handle(states.get(ev.ticket_id), ev, VENDOR)
        if outcome.state is not None and outcome.rejected is None and not outcome.duplicate:
            states[ev.ticket_id] = outcome.state
            applied.setdefault(ev.ticket_id, []).append(obj)
    kinds = set()
    for ticket_id, state in states.items():
        restored = through_json(state)
        assert state_codec.to_obj(restored) == state_codec.to_obj(state)
        for obj in applied[ticket_id]:
            kinds.add(obj["type"])
            again = ticket_event_from_obj(obj)
            assert handle(restored, again, VENDOR).duplicate, obj
            other = ticket_event_from_obj({**obj, "occurred_at": "2026-11-20T00:00:00Z"})
            assert handle(restored, other, VENDOR).rejected == CONFLICT, obj
        assert [e.digest() for e in restored.applied_events()] == [
            ticket_event_from_obj(obj).digest() for obj in applied[ticket_id]
        ]
    assert {"ticket.opened", "ticket.assigned", "ticket.updated", "ticket.paused"} <= kinds


def test_a_state_without_digests_still_takes_a_repeated_id_for_a_redelivery() -> None:
    old = orjson.loads(PREVIOUS_FORM)
    del old["digests"], old["history"]
    restored = state_codec.from_obj(old)
    reused = event("e2", "assigned", "09:05", assignee="agent-2", group="l1")
    assert handle(restored, reused, POLICY).duplicate


def test_an_event_applied_redated_keeps_the_digest_it_came_with() -> None:
    """A wall-clock worker applies an event dated ahead of its clock at its own now
    (`TicketEvent.redated`); its redelivery, redated to another now, is still a duplicate after
    a changelog round trip, in the new form and in the previous one."""
    ahead = event("e2", "assigned", "09:06", assignee="agent-1", group="l1")
    state = handle(handle(None, OPENED, POLICY).state, ahead.redated(ASSIGNED.at), POLICY).state
    assert state is not None
    again = ahead.redated(ASSIGNED.at + 1_000_000)
    for restored in (through_json(state), state):
        assert handle(restored, again, POLICY).duplicate
        assert handle(restored, ASSIGNED, POLICY).rejected == CONFLICT
    old = orjson.loads(PREVIOUS_FORM)
    old["digests"][1] = ahead.digest()  # as the previous code stored the redated event
    restored = state_codec.from_obj(old)
    assert handle(restored, again, POLICY).duplicate
    assert handle(restored, ASSIGNED, POLICY).rejected == CONFLICT
    assert handle(through_json(restored), again, POLICY).duplicate


def test_tickets_without_tags_share_nothing_that_another_ticket_changes() -> None:
    """Tickets without tags or attributes share one empty list and dict (memory, see
    `state.NO_TAGS`): an update that gives one ticket tags and attributes, and the copy the
    engine takes before it, leave another ticket (and a state read back from JSON) without."""
    one = handle(None, event("a1", "opened", "09:00", severity=2), VENDOR).state
    two = handle(None, event("b1", "opened", "09:00", severity=2), VENDOR).state
    assert one is not None and two is not None
    before = one.copy()
    updated = event("a2", "updated", "09:05", tags=["vip"], attributes={"tier": "gold"})
    one = handle(one, updated, VENDOR).state
    assert one is not None
    assert (one.tags, one.attributes, one.policy_name) == (["vip"], {"tier": "gold"}, "premium")
    assert (two.tags, two.attributes, two.policy_name) == ([], {}, "standard")
    assert (before.tags, before.attributes) == ([], {})
    again = state_codec.from_obj(orjson.loads(orjson.dumps(state_codec.to_obj(two))))
    assert (again.tags, again.attributes) == ([], {})
