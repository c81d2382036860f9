"""Issue #19 item 3 as a property: for random valid per-ticket histories, any arrival order
whose displacement stays within the lateness bound (no line comes after a line dated more than
`max_delay` after it) gives the SLA output of the time-ordered input (replay; the engine's
fold is checked the same way in tests/engine/test_parked_events.py).

Compared on net content (`net`): a late line within the bound whose ticket already emitted
something (an assignment after a resolve's `sla.met`) is corrected with a retraction and a
revision under a revised id, so ids and retractions are not what is compared; every other
field of every standing record is."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from events.instants import MINUTE, format_instant, parse_instant
from streams.sla.replay import Replayer
from tests.core.test_own_lines_out_of_order import POLICY

START = parse_instant("2026-12-07T14:00:00Z")  # Monday 09:00 in Toronto
UNTIL = parse_instant("2026-12-18T00:00:00Z")
MAX_DELAY = 30 * MINUTE

# Each step is a run of lifecycle events valid in this order from an open ticket.
STEPS: dict[str, list[str]] = {
    "reply": ["responded"],
    "pause": ["paused", "resumed"],
    "resolve": ["resolved", "reopened"],
    "customer": ["customer_replied"],
    "assign": ["assigned"],
}


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One to three tickets, each opened and then a few steps; event times distinct (a tie
    between two events of a ticket has no one time order)."""
    events: list[dict[str, Any]] = []
    used: set[int] = set()
    for number in range(draw(st.integers(1, 3))):
        ticket = f"T{number}"
        at = START + draw(st.integers(0, 120)) * MINUTE + number
        kinds = ["opened"]
        for step in draw(st.lists(st.sampled_from(sorted(STEPS)), max_size=5)):
            kinds += STEPS[step]
        if draw(st.booleans()):
            kinds.append("resolved" if kinds[-1] != "resolved" else "reopened")
        for index, kind in enumerate(kinds):
            while at in used:
                at += 1
            used.add(at)
            event: dict[str, Any] = {
                "event_id": f"{ticket}-{index}",
                "ticket_id": ticket,
                "type": f"ticket.{kind}",
                "occurred_at": format_instant(at),
            }
            if kind == "opened":
                event["severity"] = 2
            if kind == "assigned":
                event["assignee"] = "a"
            events.append(event)
            at += draw(st.integers(1, 90)) * MINUTE
    events.sort(key=lambda e: parse_instant(e["occurred_at"]))
    return events


@st.composite
def within_bound(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    """(time-ordered lines, the same lines in an arrival order displaced within MAX_DELAY):
    sorted by time plus a drawn delay in [0, MAX_DELAY], so a line comes after another only
    if that one is dated at most MAX_DELAY after it."""
    events = draw(histories())
    delays = draw(
        st.lists(st.integers(0, MAX_DELAY // MINUTE), min_size=len(events), max_size=len(events))
    )
    arrival = sorted(
        range(len(events)),
        key=lambda i: (parse_instant(events[i]["occurred_at"]) + delays[i] * MINUTE, i),
    )
    lines = [orjson.dumps(e) for e in events]
    return lines, [lines[i] for i in arrival]


def net(records: list[dict[str, Any]]) -> list[str]:
    """The standing SLA records (retracted ones and retractions dropped), without event ids,
    as sorted JSON: what a consumer that applies retractions holds."""
    retracted = {r["retracts"] for r in records if r["type"] == "sla.retracted"}
    standing = [
        {k: v for k, v in r.items() if k != "event_id"}
        for r in records
        if r["type"] != "sla.retracted" and r["event_id"] not in retracted
    ]
    return sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS).decode() for r in standing)


@settings(max_examples=300, deadline=None)
@given(within_bound())
def test_a_permutation_within_the_bound_gives_the_time_ordered_output(
    case: tuple[list[bytes], list[bytes]],
) -> None:
    in_order, arrived = case
    reasons: list[tuple[int, str]] = []
    expected = list(Replayer(POLICY, MAX_DELAY).run(in_order, UNTIL))
    replayer = Replayer(POLICY, MAX_DELAY)
    got = list(replayer.run(arrived, UNTIL, lambda n, r: reasons.append((n, r))))
    assert reasons == []
    assert net(got) == net(expected)
    assert replayer.counts.rejected == 0
