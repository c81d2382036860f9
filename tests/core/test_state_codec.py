"""The state codec's upcasters (issue #21 item 4): each turns an object stored by one version
into the next version's shape, so every stored form still reads as the state it meant.

The forms are the ticket of `test_state_storage`: opened Tuesday 2026-12-01 09:00Z at severity
2 for customer C-1, assigned to agent-1 in l1 at 09:05Z, resolved at 15:00Z.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from events.records import TicketEvent
from streams.sla import state_codec
from streams.sla.state_codec import (
    FORMAT_VERSION,
    stored_version,
    upcast_1_to_2,
    upcast_2_to_3,
    upcast_3_to_4,
    upcast_4_to_5,
)
from tests.core.test_state_storage import PREVIOUS_FORM, STEPS_FORM, fresh
from tests.golden.regenerate import HERE, STATE_CASES

OPENED_AT, ASSIGNED_AT, RESOLVED_AT = 1796115600000000, 1796115900000000, 1796137200000000
RESUME = '{"event_id":"e9","ticket_id":"T-1","type":"ticket.resumed"}'


def version_1() -> dict[str, Any]:
    """As written before digests (ad0d0e8) and routing metadata: no digests, history, group
    or assignee."""
    obj = orjson.loads(PREVIOUS_FORM)
    for field in ("digests", "history", "group", "assignee"):
        del obj[field]
    return obj


ROUNDS = ("reply_round", "reply_since", "update_round", "update_since")


def version_3() -> dict[str, Any]:
    """STEPS_FORM as a735ef7 wrote it: each detail 8 fields (no pinned digest yet), no
    next-response or update rounds."""
    obj = orjson.loads(STEPS_FORM)
    flat = obj["steps"]
    flat[2], flat[5] = flat[2][:8], flat[5][:8]
    for field in ROUNDS:
        del obj[field]
    return obj


def version_4() -> dict[str, Any]:
    """The current form with a parked resume as 8d7720d wrote it: 4 fields, no origin."""
    obj = orjson.loads(STEPS_FORM)
    obj["parked"] = [[RESOLVED_AT + 60_000_000, "e9", RESUME, "cannot resume an open ticket"]]
    return obj


def test_each_stored_form_is_told_by_its_shape() -> None:
    v2 = orjson.loads(PREVIOUS_FORM)
    shapes = [version_1(), v2, version_3(), version_4(), orjson.loads(STEPS_FORM)]
    assert [stored_version(obj) for obj in shapes] == [1, 2, 3, 4, 5] == [*range(1, 6)]
    assert FORMAT_VERSION == 6
    for output, _ in STATE_CASES:  # a state without holders or cycles: version 5's shape
        for line in (HERE / output).read_bytes().splitlines():
            assert stored_version(orjson.loads(line)) == 5
    assert stored_version({**v2, "format": 6}) == 6
    with pytest.raises(ValueError, match="field 'format': unknown state format 7"):
        stored_version({**v2, "format": 7})


def test_upcast_1_to_2_gives_every_seen_event_an_unknown_digest() -> None:
    obj = version_1()
    assert upcast_1_to_2(copy.deepcopy(obj)) == {
        **obj,
        "digests": [0, 0, 0],
        "group": None,
        "assignee": None,
    }
    state = state_codec.from_obj(obj)
    assert (state.digests, state.history, state.group, state.assignee) == (
        [0, 0, 0],
        b"",
        None,
        None,
    )
    assert [state.known_digest(index) for index in range(3)] == [0, 0, 0]
    assert (state.seen, state.status, state.fired) == (
        ["e1", "e2", "e3"],
        "resolved",
        ["resolution:met:0"],
    )


def test_upcast_2_to_3_flattens_the_history_and_defaults_the_policy_and_event_time_fields() -> None:
    obj = orjson.loads(PREVIOUS_FORM)
    v3 = upcast_2_to_3(copy.deepcopy(obj))
    assert "history" not in v3
    assert v3["steps"] == [
        OPENED_AT,
        "ticket.opened",
        [2, "C-1", None, None, None, None, None, False],
        ASSIGNED_AT,
        "ticket.assigned",
        [None, None, "agent-1", "l1", None, None, None, True],
        RESOLVED_AT,
        "ticket.resolved",
        None,
    ]
    assert (v3["policy_name"], v3["timers_through"]) == ("", None)
    assert not set(ROUNDS) & set(v3)  # version 3 was first written without them
    assert v3["digests"] == [1557368539, 1280821673, 3268963176]
    state = state_codec.from_obj(obj)
    assert state.digests is None  # the stored digests are the history's own
    assert state_codec.to_obj(state) == state_codec.to_obj(fresh())


def test_upcast_3_to_4_gives_each_detail_no_pinned_digest() -> None:
    v4 = upcast_3_to_4(version_3())
    steps_form = orjson.loads(STEPS_FORM)
    assert v4 == {k: v for k, v in steps_form.items() if k not in ROUNDS}
    assert orjson.dumps(state_codec.to_obj(state_codec.from_obj(version_3()))) == STEPS_FORM


def test_upcast_4_to_5_gives_a_parked_event_an_unknown_origin_and_no_rounds() -> None:
    as_cf3afe3_wrote_it = upcast_3_to_4(version_3())
    assert upcast_4_to_5(as_cf3afe3_wrote_it) == orjson.loads(STEPS_FORM)  # rounds 0, none
    v5 = upcast_4_to_5(version_4())
    assert v5["parked"] == [
        [RESOLVED_AT + 60_000_000, "e9", RESUME, "cannot resume an open ticket", -1]
    ]
    state = state_codec.from_obj(version_4())
    assert state.parked == [
        (RESOLVED_AT + 60_000_000, "e9", RESUME, "cannot resume an open ticket", -1)
    ]
    assert state.next_due == RESOLVED_AT + 60_000_000
    raw = state_codec.encode(state)
    assert raw.startswith(b'{"next_due":1796137260000000,"status":"resolved",')
    assert state_codec.next_due_of(raw) == RESOLVED_AT + 60_000_000
    assert not state_codec.is_open_raw(raw)


def test_a_history_codes_each_type_by_its_place_in_the_contract() -> None:
    """The packed history's type codes are fixed (no registry filled in order of first use):
    `ticket.opened` is 0 in any process, `ticket.customer_replied` 11, and a type the contract
    does not have is refused, naming the field."""
    state = fresh()
    assert [state.history[i] & 0x7F for i in range(0, len(state.history), 9)] == [0, 8, 5]
    replied = TicketEvent("ticket.customer_replied", "e4", "T-1", RESOLVED_AT)
    state.record(replied, RESOLVED_AT)
    assert state.history[-9] & 0x7F == 11
    with pytest.raises(ValueError, match="field 'type': not a ticket event type"):
        state.record(TicketEvent("ticket.archived", "e5", "T-1", RESOLVED_AT), RESOLVED_AT)
