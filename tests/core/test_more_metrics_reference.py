"""next_response rounds, warnings by lead time and repeating escalations on the calendar shapes
of issue #8, against the minute-set reference (tests/test_clocks_reference.py): deadlines are
counted there minute by minute over a plain set of open UTC minutes, with none of the
production code's span or clock arithmetic."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import assume, given
from hypothesis import strategies as st

from events.records import TicketEvent
from streams.sla.fold import advance, handle
from streams.sla.rules import EscalationRule, MetricRule, Policy, SeverityRules
from streams.sla.state import TicketState
from tests.calendar_shapes import build, shapes
from tests.test_clocks_reference import (
    MINUTE,
    REFERENCE,
    MinuteSetCalendar,
    minute_instants,
    to_datetime,
)


def _reach(open_minutes: set[int], start: int, amount: int, cut: range) -> int | None:
    """The minute after the `amount`-th open minute from `start` that is not in `cut` (a
    pause), or None if the window runs out first."""
    if amount == 0:
        return start
    last = max(open_minutes, default=start)
    minute = start
    while minute <= last:
        if minute in open_minutes and minute not in cut:
            amount -= 1
            if amount == 0:
                return minute + 1
        minute += 1
    return None


@REFERENCE
@given(st.data())
def test_rounds_leads_and_repeats_match_the_minute_set_reference(data: st.DataObject) -> None:
    opened = data.draw(minute_instants) // MINUTE
    shape = data.draw(shapes(near=to_datetime(opened * MINUTE).date()))
    calendar = build(shape)
    local_day = to_datetime(opened * MINUTE).astimezone(ZoneInfo(shape[0])).date()
    ref = MinuteSetCalendar(shape, local_day - timedelta(days=3), local_day + timedelta(days=14))
    target = data.draw(st.integers(2, 8 * 60))
    lead = data.draw(st.integers(1, target - 1))
    after, every = data.draw(st.integers(1, 6 * 60)), data.draw(st.integers(1, 4 * 60))
    replied = opened + data.draw(st.integers(0, 24 * 60))
    paused = replied + data.draw(st.integers(0, 10 * 60))
    resumed = paused + data.draw(st.integers(1, 10 * 60))
    rules = SeverityRules(
        None,
        None,
        (EscalationRule(1, after * MINUTE, "business", "lead", "default", every * MINUTE, 3),),
        next_response=MetricRule(
            "next_response", target * MINUTE, "business", True, (), "default", (lead * MINUTE,)
        ),
    )
    policy = Policy("reference", "v", calendar, {3: rules})
    events = [
        ("ticket.opened", opened),
        ("ticket.responded", opened),
        ("ticket.customer_replied", replied),
        ("ticket.paused", paused),
        ("ticket.resumed", resumed),
    ]
    # the reference: counted over the open minutes, the round without the paused ones
    pause = range(paused, resumed)
    lead_due = _reach(ref.open, replied, target - lead, pause)
    breach_due = _reach(ref.open, replied, target, pause)
    repeats = [_reach(ref.open, opened, after + n * every, range(0)) for n in range(4)]
    horizon = opened + 12 * 24 * 60
    expected = [d for d in (lead_due, breach_due, *repeats) if d is not None]
    assume(len(expected) == 6 and max(expected) <= horizon)

    state: TicketState | None = None
    out: list[dict[str, Any]] = []
    for number, (kind, minute) in enumerate(events):
        event = TicketEvent(kind, f"e{number}", "R", minute * MINUTE, 3 if number == 0 else None)
        outcome = handle(state, event, policy)
        assert outcome.rejected is None, outcome.rejected
        state = outcome.state
        out += outcome.emitted
    assert state is not None
    out += advance(state, horizon * MINUTE, policy).emitted

    def due(minute: int | None) -> int:
        assert minute is not None
        return minute * MINUTE

    got = {
        (r["metric"], r["type"], r.get("repeat"), r.get("before_seconds")): r["due_at"] for r in out
    }
    assert got[("next_response", "sla.warning", None, lead * 60.0)] == due(lead_due)
    assert got[("next_response", "sla.breached", None, None)] == due(breach_due)
    for n, minute in enumerate(repeats):
        assert got[("escalation", "ticket.escalated", n or None, None)] == due(minute)
    assert ("escalation", "ticket.escalated", 4, None) not in got  # max_repeats = 3
